"""The Data Connector resource, as in the official SDK's ``disruptive.DataConnector``, async.

::

    connectors = await DataConnector.list_data_connectors(project_id, client=client)
    dc = await DataConnector.create_data_connector(
        project_id,
        DataConnector.HttpPushConfig(url="https://example.com/events", signature_secret=s),
        display_name="dtpush",
        client=client,
    )

Every classmethod takes the SDK's keyword options ``auth``, ``base_url``,
``request_timeout``, ``request_attempts`` (plus ``session``), or one long-lived ``client``
(see `receiver.dt.options`). The request bodies are built by pure functions
(`create_body`, `update_body`) that tests and the reconcile plan can call directly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import quote

from receiver.dt.client import Client, outcome_unknown
from receiver.dt.errors import (
    AmbiguousConnectors,
    ConfigurationError,
    DtApiError,
    UnexpectedResponse,
)
from receiver.dt.options import client_for

logger = logging.getLogger("receiver.dt")

HTTP_PUSH = "HTTP_PUSH"
ACTIVE = "ACTIVE"
USER_DISABLED = "USER_DISABLED"
SYSTEM_DISABLED = "SYSTEM_DISABLED"
STATUSES: tuple[str, ...] = (ACTIVE, USER_DISABLED, SYSTEM_DISABLED)
MASK = "***"


@dataclass
class HttpPushConfig:
    """The configuration of an ``HTTP_PUSH`` connector (``httpConfig``).

    Fields left None are not sent (an update then leaves them as they are). `repr` masks the
    secret and the header values.
    """

    url: str | None = None
    signature_secret: str | None = None
    headers: dict[str, str] | None = None

    data_connector_type = HTTP_PUSH

    def __repr__(self) -> str:
        secret = None if self.signature_secret is None else MASK
        headers = None if self.headers is None else dict.fromkeys(self.headers, MASK)
        return f"HttpPushConfig(url={self.url!r}, signature_secret={secret!r}, headers={headers!r})"

    def to_dict(self) -> dict[str, Any]:
        """The ``httpConfig`` object with the fields that are set."""
        config: dict[str, Any] = {}
        if self.url is not None:
            config["url"] = self.url
        if self.signature_secret is not None:
            config["signatureSecret"] = self.signature_secret
        if self.headers is not None:
            config["headers"] = dict(self.headers)
        return config


@dataclass(frozen=True)
class Metric:
    """A connector's push metrics over DT's last 3 hours (``:metrics``)."""

    success_count: int
    error_count: int
    latency: str  # DT's duration string, e.g. "0.25s" (the 99th percentile)
    latency_seconds: float
    raw: Mapping[str, Any]

    @classmethod
    def from_raw(cls, raw: Any) -> Metric:
        metrics = raw.get("metrics") if isinstance(raw, Mapping) else None
        if not isinstance(metrics, Mapping):
            raise UnexpectedResponse("metrics answer has no metrics object", status=200)
        latency = metrics.get("latency99p", "0s")
        if not isinstance(latency, str):
            raise UnexpectedResponse("metrics answer has a bad latency99p", status=200)
        return cls(
            success_count=_count(metrics.get("successCount", 0)),
            error_count=_count(metrics.get("errorCount", 0)),
            latency=latency,
            latency_seconds=duration_seconds(latency),
            raw=raw,
        )


class DataConnector:
    """A Data Connector as DT returns it; `raw` is the API object unchanged."""

    HTTP_PUSH = HTTP_PUSH
    DATA_CONNECTOR_TYPES: tuple[str, ...] = (HTTP_PUSH,)
    ACTIVE = ACTIVE
    USER_DISABLED = USER_DISABLED
    SYSTEM_DISABLED = SYSTEM_DISABLED
    STATUSES = STATUSES
    HttpPushConfig: TypeAlias = HttpPushConfig

    def __init__(self, data_connector: Mapping[str, Any]) -> None:
        if not isinstance(data_connector, Mapping):
            raise UnexpectedResponse("data connector is not a json object", status=200)
        name = data_connector.get("name")
        parts = name.split("/") if isinstance(name, str) else []
        if len(parts) != 4 or parts[0] != "projects" or parts[2] != "dataconnectors":
            raise UnexpectedResponse("data connector has no valid name", status=200)
        connector_type = data_connector.get("type")
        if not isinstance(connector_type, str):
            raise UnexpectedResponse("data connector has no type", status=200)
        self.raw: Mapping[str, Any] = data_connector
        self.data_connector_id: str = parts[3]
        self.project_id: str = parts[1]
        self.display_name: str = _text(data_connector.get("displayName"))
        self.data_connector_type: str = connector_type
        self.status: str = _text(data_connector.get("status"))
        self.event_types: list[str] = _strings(data_connector.get("events"))
        self.labels: list[str] = _strings(data_connector.get("labels"))
        self.config: HttpPushConfig | None = None
        http = data_connector.get("httpConfig")
        if connector_type == HTTP_PUSH and isinstance(http, Mapping):
            headers = http.get("headers")
            self.config = HttpPushConfig(
                url=_text(http.get("url")),
                signature_secret=_text(http.get("signatureSecret")),
                headers=(
                    {str(k): str(v) for k, v in headers.items()}
                    if isinstance(headers, Mapping)
                    else {}
                ),
            )
        elif connector_type != HTTP_PUSH:
            logger.debug(
                "dt_connector_config_unsupported", extra={"fields": {"type": connector_type}}
            )

    def __repr__(self) -> str:
        return (
            f"DataConnector(data_connector_id={self.data_connector_id!r}, "
            f"project_id={self.project_id!r}, display_name={self.display_name!r}, "
            f"data_connector_type={self.data_connector_type!r}, status={self.status!r}, "
            f"config={self.config!r}, event_types={self.event_types!r}, labels={self.labels!r})"
        )

    # -- the SDK's classmethods ---------------------------------------------------------

    @classmethod
    async def get_data_connector(
        cls, data_connector_id: str, project_id: str, **kwargs: Any
    ) -> DataConnector:
        async with client_for(kwargs) as client:
            return cls(await client.request("GET", _item(project_id, data_connector_id)))

    @classmethod
    async def list_data_connectors(cls, project_id: str, **kwargs: Any) -> list[DataConnector]:
        """Every connector of the project (all pages)."""
        async with client_for(kwargs) as client:
            return await _list(cls, client, project_id)

    @classmethod
    async def create_data_connector(
        cls,
        project_id: str,
        config: HttpPushConfig,
        display_name: str = "",
        status: str = ACTIVE,
        event_types: Sequence[str] = (),
        labels: Sequence[str] = (),
        **kwargs: Any,
    ) -> DataConnector:
        """Create a connector. It is never re-sent once it may have reached DT: a lost answer
        raises (`outcome_unknown(exc)` is then true); `create_or_adopt` resolves that."""
        body = create_body(config, display_name, status, event_types, labels)
        async with client_for(kwargs) as client:
            return await _create(cls, client, project_id, body)

    @classmethod
    async def create_or_adopt(
        cls,
        project_id: str,
        config: HttpPushConfig,
        display_name: str = "",
        status: str = ACTIVE,
        event_types: Sequence[str] = (),
        labels: Sequence[str] = (),
        **kwargs: Any,
    ) -> DataConnector:
        """Create a connector; if the answer is lost, adopt the one the create left behind.

        The adopted connector is the one listed with the same display name and URL. When the
        listing shows none, the original error is raised (nothing was created, or DT has not
        finished: list again later, never create blindly); several raise
        `AmbiguousConnectors`.
        """
        body = create_body(config, display_name, status, event_types, labels)
        async with client_for(kwargs) as client:
            try:
                return await _create(cls, client, project_id, body)
            except DtApiError as exc:
                if not outcome_unknown(exc):
                    raise
                lost = exc
            logger.warning("dt_create_answer_lost", extra={"fields": {"project_id": project_id}})
            found = [
                dc
                for dc in await _list(cls, client, project_id)
                if dc.display_name == display_name
                and dc.config is not None
                and dc.config.url == config.url
            ]
        if len(found) > 1:
            raise AmbiguousConnectors(display_name, [dc.data_connector_id for dc in found])
        if not found:
            raise lost
        logger.info("dt_connector_adopted", extra={"fields": {"id": found[0].data_connector_id}})
        return found[0]

    @classmethod
    async def update_data_connector(
        cls,
        data_connector_id: str,
        project_id: str,
        config: HttpPushConfig | None = None,
        display_name: str | None = None,
        status: str | None = None,
        event_types: Sequence[str] | None = None,
        labels: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> DataConnector:
        """Change only the given fields; ``update_mask`` names each one."""
        body, mask = update_body(config, display_name, status, event_types, labels)
        async with client_for(kwargs) as client:
            answer = await client.request(
                "PATCH",
                _item(project_id, data_connector_id),
                params=[("update_mask", ",".join(mask))],
                json=body,
            )
            return cls(answer)

    @classmethod
    async def delete_data_connector(
        cls, data_connector_id: str, project_id: str, **kwargs: Any
    ) -> None:
        """Delete a connector (a 404 after a lost answer counts as deleted)."""
        async with client_for(kwargs) as client:
            await client.request(
                "DELETE", _item(project_id, data_connector_id), gone_ok_on_resend=True
            )

    @classmethod
    async def sync_data_connector(
        cls, data_connector_id: str, project_id: str, **kwargs: Any
    ) -> None:
        """Ask DT to re-push the latest event of every type of every device in the project."""
        async with client_for(kwargs) as client:
            await client.request("POST", _item(project_id, data_connector_id) + ":sync")

    @classmethod
    async def get_metrics(cls, data_connector_id: str, project_id: str, **kwargs: Any) -> Metric:
        """The connector's metrics over the last 3 hours."""
        async with client_for(kwargs) as client:
            answer = await client.request("GET", _item(project_id, data_connector_id) + ":metrics")
            return Metric.from_raw(answer)


# -- request bodies (pure) ---------------------------------------------------------------


def create_body(
    config: HttpPushConfig,
    display_name: str,
    status: str,
    event_types: Sequence[str],
    labels: Sequence[str],
) -> dict[str, Any]:
    """The JSON body of a create, in the SDK's shape."""
    if not isinstance(config, HttpPushConfig):
        raise ConfigurationError("config must be a DataConnector.HttpPushConfig")
    body: dict[str, Any] = {
        "status": status,
        "events": _string_list("event_types", event_types),
        "labels": _string_list("labels", labels),
    }
    if display_name:
        body["displayName"] = display_name
    body["type"] = config.data_connector_type
    body["httpConfig"] = config.to_dict()
    return body


def update_body(
    config: HttpPushConfig | None,
    display_name: str | None,
    status: str | None,
    event_types: Sequence[str] | None,
    labels: Sequence[str] | None,
) -> tuple[dict[str, Any], list[str]]:
    """The JSON body of an update and its ``update_mask`` paths: only what was given."""
    body: dict[str, Any] = {}
    mask: list[str] = []
    if display_name is not None:
        body["displayName"] = display_name
        mask.append("displayName")
    if config is not None:
        if not isinstance(config, HttpPushConfig):
            raise ConfigurationError("config must be a DataConnector.HttpPushConfig")
        http = config.to_dict()
        if http:
            body["httpConfig"] = http
            mask.extend(f"httpConfig.{key}" for key in http)
    if status is not None:
        body["status"] = status
        mask.append("status")
    if event_types is not None:
        body["events"] = _string_list("event_types", event_types)
        mask.append("events")
    if labels is not None:
        body["labels"] = _string_list("labels", labels)
        mask.append("labels")
    if not mask:
        raise ConfigurationError("update_data_connector: nothing to update")
    return body, mask


def duration_seconds(value: str) -> float:
    """A protobuf-JSON duration such as ``"0.411s"`` in seconds."""
    text = value.strip()
    try:
        if not text.endswith("s"):
            raise ValueError(value)
        seconds = float(text[:-1])
    except ValueError:
        raise UnexpectedResponse("metrics answer has a bad latency99p", status=200) from None
    if seconds != seconds or seconds < 0:
        raise UnexpectedResponse("metrics answer has a bad latency99p", status=200)
    return seconds


# -- internals ---------------------------------------------------------------------------


def _collection(project_id: str) -> str:
    return f"/projects/{quote(project_id, safe='')}/dataconnectors"


def _item(project_id: str, data_connector_id: str) -> str:
    return f"{_collection(project_id)}/{quote(data_connector_id, safe='')}"


async def _list(cls: type[DataConnector], client: Client, project_id: str) -> list[DataConnector]:
    return [cls(raw) for raw in await client.paginate(_collection(project_id), "dataConnectors")]


async def _create(
    cls: type[DataConnector], client: Client, project_id: str, body: dict[str, Any]
) -> DataConnector:
    return cls(await client.request("POST", _collection(project_id), json=body, resendable=False))


def _string_list(name: str, values: Sequence[str]) -> list[str]:
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise ConfigurationError(f"{name} must be a list of strings")
    return list(values)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _count(value: Any) -> int:
    # proto3 JSON may send 64-bit integers as strings
    if isinstance(value, bool):
        raise UnexpectedResponse("metrics answer has a bad count", status=200)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise UnexpectedResponse("metrics answer has a bad count", status=200)
