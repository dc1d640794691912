"""The Data Connector resource: its JSON shape, validation, and PATCH with update masks.

Pure: no I/O, no clock. Input is the decoded JSON body of a request; every problem raises
`ApiError(400, …)` with a message naming the field, as DT's API does.

Rules the emulator applies (DT-PROTOCOL §4.3 and §4.4):

- `type` is required on create and may not change; the emulator serves ``HTTP_PUSH`` only
  (DT's other types are answered with 400 "not supported by the emulator").
- A client may set `status` to ``ACTIVE`` or ``USER_DISABLED`` only.
- `events` lists known event types (``[]`` = all); `labels` lists label keys.
- `httpConfig.url` must be HTTPS (DT: "HTTP is not supported"). So that local receivers can
  be used in demos and tests, plain ``http://`` is accepted for loopback hosts only
  (``127.0.0.1``, ``localhost``, ``::1``).
- Unknown fields are refused; the read-only `name` is accepted and ignored.
- PATCH with ``update_mask``: exactly the listed paths change; a listed path missing from
  the body is reset to its default (then validated). Without a mask the paths are inferred
  from the body, down to the fields inside `httpConfig`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from receiver.emulator.catalog import EVENT_TYPES
from receiver.emulator.errors import bad_request

HTTP_PUSH = "HTTP_PUSH"
OTHER_TYPES = ("AZURE_SERVICE_BUS", "AZURE_EVENT_HUB", "GOOGLE_CLOUD_PUBSUB", "AWS_SQS")
ACTIVE = "ACTIVE"
USER_DISABLED = "USER_DISABLED"
SYSTEM_DISABLED = "SYSTEM_DISABLED"
STATUSES = (ACTIVE, USER_DISABLED, SYSTEM_DISABLED)
CLIENT_STATUSES = (ACTIVE, USER_DISABLED)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_URL_LENGTH = 2048

_FIELDS = frozenset({"name", "displayName", "type", "status", "events", "labels", "httpConfig"})
_HTTP_FIELDS = frozenset({"url", "signatureSecret", "headers"})
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

#: Mask paths the emulator understands, in DT's camelCase, and their snake_case aliases.
MASK_PATHS = (
    "displayName",
    "status",
    "events",
    "labels",
    "httpConfig",
    "httpConfig.url",
    "httpConfig.signatureSecret",
    "httpConfig.headers",
)
_MASK_ALIASES = {
    "display_name": "displayName",
    "http_config": "httpConfig",
    "http_config.url": "httpConfig.url",
    "http_config.signature_secret": "httpConfig.signatureSecret",
    "http_config.headers": "httpConfig.headers",
    "httpConfig.signature_secret": "httpConfig.signatureSecret",
}


@dataclass(frozen=True)
class HttpConfig:
    url: str
    signature_secret: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "signatureSecret": self.signature_secret,
            "headers": dict(self.headers),
        }


@dataclass(frozen=True)
class Connector:
    """One Data Connector of a project (immutable; updates make a new one)."""

    id: str
    project_id: str
    display_name: str
    status: str
    events: tuple[str, ...]
    labels: tuple[str, ...]
    http_config: HttpConfig
    type: str = HTTP_PUSH

    @property
    def name(self) -> str:
        return f"projects/{self.project_id}/dataconnectors/{self.id}"

    def to_json(self) -> dict[str, Any]:
        """DT's JSON for the connector; the signature secret is included, as DT does."""
        return {
            "name": self.name,
            "displayName": self.display_name,
            "type": self.type,
            "status": self.status,
            "events": list(self.events),
            "labels": list(self.labels),
            "httpConfig": self.http_config.to_json(),
        }

    def forwards(self, event_type: str) -> bool:
        """Whether this connector's event filter lets `event_type` through."""
        return not self.events or event_type in self.events


def connector_from_body(body: Any, *, connector_id: str, project_id: str) -> Connector:
    """A new connector from a create request's body."""
    obj = _require_object(body, "body")
    _refuse_unknown(obj, _FIELDS, "")
    if "type" not in obj:
        raise bad_request("type: required")
    _check_type(obj["type"])
    return Connector(
        id=connector_id,
        project_id=project_id,
        display_name=_string(obj.get("displayName", ""), "displayName"),
        status=_client_status(obj.get("status", ACTIVE)),
        events=_event_types(obj.get("events", [])),
        labels=_labels(obj.get("labels", [])),
        http_config=_http_config(obj.get("httpConfig")),
    )


def parse_mask(values: list[str]) -> tuple[str, ...] | None:
    """The update mask of a PATCH (comma lists, possibly repeated); None when absent/empty."""
    paths: list[str] = []
    for value in values:
        for raw in value.split(","):
            path = raw.strip()
            if not path:
                continue
            path = _MASK_ALIASES.get(path, path)
            if path not in MASK_PATHS:
                raise bad_request(f"update_mask: unknown path {path!r}")
            if path not in paths:
                paths.append(path)
    return tuple(paths) or None


def infer_mask(body: dict[str, Any]) -> tuple[str, ...]:
    """The paths a PATCH body without a mask sets (leaf fields of `httpConfig`)."""
    paths: list[str] = []
    for key in ("displayName", "status", "events", "labels"):
        if key in body:
            paths.append(key)
    config = body.get("httpConfig")
    if isinstance(config, dict):
        paths.extend(
            f"httpConfig.{key}" for key in ("url", "signatureSecret", "headers") if key in config
        )
    elif "httpConfig" in body:
        paths.append("httpConfig")
    return tuple(paths)


def apply_patch(current: Connector, body: Any, mask: tuple[str, ...] | None) -> Connector:
    """`current` with the fields of a PATCH body that `mask` (or the body itself) names."""
    obj = _require_object(body, "body")
    _refuse_unknown(obj, _FIELDS, "")
    if "type" in obj:
        _check_type(obj["type"])
        if obj["type"] != current.type:
            raise bad_request("type: cannot be changed")
    config_obj = obj.get("httpConfig")
    if config_obj is not None:
        _refuse_unknown(_require_object(config_obj, "httpConfig"), _HTTP_FIELDS, "httpConfig.")
    paths = mask if mask is not None else infer_mask(obj)

    updated = current
    config = current.http_config
    for path in paths:
        if path == "displayName":
            updated = replace(updated, display_name=_string(obj.get("displayName", ""), path))
        elif path == "status":
            if "status" not in obj:
                raise bad_request("status: required")
            updated = replace(updated, status=_client_status(obj["status"]))
        elif path == "events":
            updated = replace(updated, events=_event_types(obj.get("events", [])))
        elif path == "labels":
            updated = replace(updated, labels=_labels(obj.get("labels", [])))
        elif path == "httpConfig":
            config = _http_config(config_obj)
        else:
            key = path.removeprefix("httpConfig.")
            sub = config_obj if isinstance(config_obj, dict) else {}
            if key == "url":
                config = replace(config, url=_url(sub.get("url", "")))
            elif key == "signatureSecret":
                config = replace(config, signature_secret=_string(sub.get(key, ""), path))
            else:
                config = replace(config, headers=_headers(sub.get(key, {})))
    return replace(updated, http_config=config)


# -- field validation ------------------------------------------------------------------


def _require_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request(f"{what}: must be a JSON object")
    return value


def _refuse_unknown(obj: dict[str, Any], known: frozenset[str], prefix: str) -> None:
    for key in obj:
        if key not in known:
            raise bad_request(f"unknown field {prefix}{key!r}")


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise bad_request(f"{what}: must be a string")
    return value


def _check_type(value: Any) -> None:
    if value == HTTP_PUSH:
        return
    if value in OTHER_TYPES:
        raise bad_request(f"type: {value} is not supported by the emulator (only HTTP_PUSH)")
    raise bad_request(f"type: invalid value {value!r}")


def _client_status(value: Any) -> str:
    if value == SYSTEM_DISABLED:
        raise bad_request("status: SYSTEM_DISABLED cannot be set by a client")
    if value not in CLIENT_STATUSES:
        raise bad_request(f"status: invalid value {value!r}")
    return str(value)


def _string_list(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise bad_request(f"{what}: must be a list of strings")
    return value


def _event_types(value: Any) -> tuple[str, ...]:
    items = _string_list(value, "events")
    for item in items:
        if item not in EVENT_TYPES:
            raise bad_request(f"events: unknown event type {item!r}")
    return tuple(dict.fromkeys(items))


def _labels(value: Any) -> tuple[str, ...]:
    items = _string_list(value, "labels")
    if any(not item for item in items):
        raise bad_request("labels: a label key cannot be empty")
    return tuple(dict.fromkeys(items))


def _http_config(value: Any) -> HttpConfig:
    if value is None:
        raise bad_request("httpConfig: required for HTTP_PUSH")
    obj = _require_object(value, "httpConfig")
    _refuse_unknown(obj, _HTTP_FIELDS, "httpConfig.")
    return HttpConfig(
        url=_url(obj.get("url", "")),
        signature_secret=_string(obj.get("signatureSecret", ""), "httpConfig.signatureSecret"),
        headers=_headers(obj.get("headers", {})),
    )


def _url(value: Any) -> str:
    url = _string(value, "httpConfig.url")
    if not url:
        raise bad_request("httpConfig.url: required")
    if len(url) > MAX_URL_LENGTH:
        raise bad_request("httpConfig.url: too long")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise bad_request("httpConfig.url: not a valid URL") from exc
    if not host or any(ch.isspace() for ch in url):
        raise bad_request("httpConfig.url: not a valid URL")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http":
        if host in LOOPBACK_HOSTS:
            return url
        raise bad_request("httpConfig.url: HTTP is not supported, use HTTPS")
    raise bad_request("httpConfig.url: must be an https:// URL")


def _headers(value: Any) -> dict[str, str]:
    obj = _require_object(value, "httpConfig.headers")
    headers: dict[str, str] = {}
    for key, item in obj.items():
        if not _TOKEN.match(key):
            raise bad_request(f"httpConfig.headers: invalid header name {key!r}")
        if not isinstance(item, str) or "\r" in item or "\n" in item:
            raise bad_request(f"httpConfig.headers: invalid value for {key!r}")
        headers[key] = item
    return headers
