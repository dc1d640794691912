"""The reads the bootstrap and backfill need: a project's devices and a device's event history.

Mirrors the official SDK's ``disruptive.Device.list_devices`` / ``get_device`` and
``disruptive.EventHistory.list_events``, asynchronously, taking the same keyword options as
`receiver.dt.connector.DataConnector`. History events are returned as DT sends them (the
``event`` object of a push: ``eventId``, ``targetName``, ``eventType``, ``data``,
``timestamp``), so they can go through the same inbox as pushed ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from receiver.dt.errors import ConfigurationError, UnexpectedResponse
from receiver.dt.options import client_for

TimeArg = str | datetime | None


class Device:
    """A device as DT returns it; `reported` is the raw ``reported`` object (or None)."""

    TEMPERATURE = "temperature"
    PROXIMITY = "proximity"
    TOUCH = "touch"
    HUMIDITY = "humidity"
    PROXIMITY_COUNTER = "proximityCounter"
    TOUCH_COUNTER = "touchCounter"
    WATER_DETECTOR = "waterDetector"
    CLOUD_CONNECTOR = "ccon"
    CO2 = "co2"
    MOTION = "motion"
    DESK_OCCUPANCY = "deskOccupancy"
    CONTACT = "contact"
    DEVICE_TYPES: tuple[str, ...] = (
        TEMPERATURE,
        PROXIMITY,
        TOUCH,
        HUMIDITY,
        PROXIMITY_COUNTER,
        TOUCH_COUNTER,
        WATER_DETECTOR,
        CLOUD_CONNECTOR,
        CO2,
        MOTION,
        DESK_OCCUPANCY,
        CONTACT,
    )

    def __init__(self, device: Mapping[str, Any]) -> None:
        if not isinstance(device, Mapping):
            raise UnexpectedResponse("device is not a json object", status=200)
        name = device.get("name")
        parts = name.split("/") if isinstance(name, str) else []
        if len(parts) != 4 or parts[0] != "projects" or parts[2] != "devices":
            raise UnexpectedResponse("device has no valid name", status=200)
        labels = device.get("labels")
        reported = device.get("reported")
        product_number = device.get("productNumber")
        device_type = device.get("type")
        self.raw: Mapping[str, Any] = device
        self.device_id: str = parts[3]
        self.project_id: str = parts[1]
        self.device_type: str = device_type if isinstance(device_type, str) else ""
        self.labels: dict[str, str] = (
            {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {}
        )
        self.display_name: str | None = self.labels.get("name")
        self.is_emulated: bool = self.device_id.startswith("emu")
        self.product_number: str = product_number if isinstance(product_number, str) else ""
        self.reported: Mapping[str, Any] | None = (
            reported if isinstance(reported, Mapping) else None
        )

    def __repr__(self) -> str:
        return (
            f"Device(device_id={self.device_id!r}, project_id={self.project_id!r}, "
            f"device_type={self.device_type!r})"
        )

    @classmethod
    async def get_device(cls, device_id: str, project_id: str, **kwargs: Any) -> Device:
        async with client_for(kwargs) as client:
            path = f"/projects/{quote(project_id, safe='')}/devices/{quote(device_id, safe='')}"
            return cls(await client.request("GET", path))

    @classmethod
    async def list_devices(
        cls,
        project_id: str,
        device_types: Sequence[str] | None = None,
        label_filters: Mapping[str, str] | None = None,
        *,
        page_size: int | None = None,
        **kwargs: Any,
    ) -> list[Device]:
        """Every device of the project (all pages), optionally of some types / labels."""
        params: list[tuple[str, str]] = _page_size(page_size)
        if device_types is not None:
            params.extend(("device_types", t) for t in _strings("device_types", device_types))
        if label_filters is not None:
            params.extend(("label_filters", f"{k}={v}") for k, v in label_filters.items())
        async with client_for(kwargs) as client:
            raw = await client.paginate(
                f"/projects/{quote(project_id, safe='')}/devices", "devices", params
            )
        return [cls(device) for device in raw]


class EventHistory:
    """Namespace mirroring ``disruptive.EventHistory``."""

    @staticmethod
    async def list_events(
        device_id: str,
        project_id: str,
        event_types: Sequence[str] | None = None,
        start_time: TimeArg = None,
        end_time: TimeArg = None,
        *,
        page_size: int | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """Every event of the device in the time range (all pages), as DT's event objects.

        Without `start_time` DT returns the last 24 hours. Times are RFC 3339 strings or
        timezone-aware datetimes.
        """
        events: list[dict[str, Any]] = []
        async for page in EventHistory.pages(
            device_id,
            project_id,
            event_types,
            start_time,
            end_time,
            page_size=page_size,
            **kwargs,
        ):
            events.extend(page)
        return events

    @staticmethod
    async def pages(
        device_id: str,
        project_id: str,
        event_types: Sequence[str] | None = None,
        start_time: TimeArg = None,
        end_time: TimeArg = None,
        *,
        page_size: int | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The same events, one page at a time (for long backfills)."""
        params = history_params(event_types, start_time, end_time, page_size)
        path = f"/projects/{quote(project_id, safe='')}/devices/{quote(device_id, safe='')}/events"
        async with client_for(kwargs) as client:
            async for page in client.pages(path, "events", params):
                for event in page:
                    if not isinstance(event, dict):
                        raise UnexpectedResponse("history event is not a json object", status=200)
                yield page


def history_params(
    event_types: Sequence[str] | None,
    start_time: TimeArg,
    end_time: TimeArg,
    page_size: int | None,
) -> list[tuple[str, str]]:
    """The query of an event-history request (``eventTypes`` repeated)."""
    params: list[tuple[str, str]] = []
    if event_types is not None:
        params.extend(("eventTypes", t) for t in _strings("event_types", event_types))
    start = rfc3339(start_time)
    if start is not None:
        params.append(("startTime", start))
    end = rfc3339(end_time)
    if end is not None:
        params.append(("endTime", end))
    params.extend(_page_size(page_size))
    return params


def _page_size(page_size: int | None) -> list[tuple[str, str]]:
    if page_size is None:
        return []
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise ConfigurationError("page_size must be a positive integer")
    return [("pageSize", str(page_size))]


def rfc3339(value: TimeArg) -> str | None:
    """An RFC 3339 UTC string for a query (a string is passed through)."""
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ConfigurationError("times must be timezone-aware datetimes")
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _strings(name: str, values: Sequence[str]) -> list[str]:
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise ConfigurationError(f"{name} must be a list of strings")
    return list(values)
