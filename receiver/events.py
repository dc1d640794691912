"""DT events: `Event`, typed data per DT event type, and `parse(body) -> Event`.

`parse(body)` turns the verified bytes of a push into an `Event`, or raises
`receiver.errors.NotAnEvent(reason)` (one of `NOT_AN_EVENT_REASONS`) when the body is not JSON,
not an object, or lacks a string `event.eventId`, a string `event.eventType`, an object
`event.data`, or an RFC 3339 `event.timestamp` with a time zone. Optional fields (`labels`,
`metadata`, `targetName`) may be missing and extra fields may be present.

`Event.data` is typed for the 19 types DT documents (`EVENT_TYPES`), with the attribute names
of DT's official Python SDK (`Temperature.celsius`, `Humidity.relative_humidity`, ...).
Numbers stay as DT sent them (`27`, an int, or `22.45`, a float); lists become tuples.
`Event.data` is the push's `event.data` dict, as sent, when:

- the type is unknown (DT adds types; they are delivered, never refused), or
- the type is known but its data does not have the documented shape (a missing or mistyped
  field). Such an event is still a valid event and is delivered, not quarantined; a handler
  can tell by `isinstance(event.data, dict)`. Extra fields inside a known shape are ignored.

A data object without `updateTime` takes the event's `timestamp` as `update_time` (as the SDK
does for `labelsChanged`, which never has one). The SDK's name for it, `timestamp`, is an alias.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from receiver.errors import NotAnEvent

# The typed data classes live in `receiver.eventdata` and are re-exported here.
from receiver.eventdata import (
    DECODERS,
    KEYED,
    BadShape,
    BatteryStatus,
    CellularStatus,
    Co2,
    ConnectionStatus,
    Contact,
    DeskOccupancy,
    EthernetStatus,
    EventData,
    Humidity,
    HumiditySample,
    LabelsChanged,
    Motion,
    NetworkStatus,
    NetworkStatusCloudConnector,
    ObjectPresent,
    ObjectPresentCount,
    Pressure,
    ProbeWireStatus,
    StatusError,
    Temperature,
    TemperatureSample,
    Touch,
    TouchCount,
    WaterPresent,
    rfc3339,
)

__all__ = [
    "EVENT_TYPES",
    "NOT_AN_EVENT_REASONS",
    "BatteryStatus",
    "CellularStatus",
    "Co2",
    "ConnectionStatus",
    "Contact",
    "DeskOccupancy",
    "EthernetStatus",
    "Event",
    "EventData",
    "Humidity",
    "HumiditySample",
    "LabelsChanged",
    "Metadata",
    "Motion",
    "NetworkStatus",
    "NetworkStatusCloudConnector",
    "ObjectPresent",
    "ObjectPresentCount",
    "Pressure",
    "ProbeWireStatus",
    "StatusError",
    "Temperature",
    "TemperatureSample",
    "Touch",
    "TouchCount",
    "WaterPresent",
    "parse",
]

#: The event types DT documents, spelled as DT spells them.
EVENT_TYPES: tuple[str, ...] = tuple(DECODERS)

#: Every `NotAnEvent.reason` that `parse` raises.
NOT_AN_EVENT_REASONS: tuple[str, ...] = (
    "not_json",
    "not_an_object",
    "missing_event",
    "missing_event_id",
    "missing_event_type",
    "missing_data",
    "missing_timestamp",
    "bad_timestamp",
)


@dataclass(frozen=True, slots=True)
class Metadata:
    device_type: str
    product_number: str


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    event_type: str
    device_id: str
    project_id: str
    target_name: str
    timestamp: datetime
    labels: dict[str, str]
    metadata: Metadata | None
    data: Any
    raw: bytes = field(repr=False)

    def raw_data(self) -> dict[str, Any]:
        """The push's `event.data` object exactly as DT sent it (decoded again from `raw`)."""
        data: dict[str, Any] = orjson.loads(self.raw)["event"]["data"]
        return data


def parse(body: bytes) -> Event:
    """Parse the verified bytes of a push; raise `NotAnEvent(reason)` if it is not an event."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise NotAnEvent("not_json") from None
    if type(doc) is not dict:
        raise NotAnEvent("not_an_object")
    event = doc.get("event")
    if type(event) is not dict:
        raise NotAnEvent("missing_event")
    event_id = event.get("eventId")
    if type(event_id) is not str or not event_id:
        raise NotAnEvent("missing_event_id")
    event_type = event.get("eventType")
    if type(event_type) is not str or not event_type:
        raise NotAnEvent("missing_event_type")
    data = event.get("data")
    if type(data) is not dict:
        raise NotAnEvent("missing_data")
    stamp = event.get("timestamp")
    if type(stamp) is not str:
        raise NotAnEvent("missing_timestamp")
    timestamp = rfc3339(stamp)
    if timestamp is None:
        raise NotAnEvent("bad_timestamp")

    target_name = event.get("targetName")
    if type(target_name) is not str:
        target_name = ""
    device_id, project_id, metadata = _origin(doc.get("metadata"), target_name)
    return Event(
        event_id=event_id,
        event_type=event_type,
        device_id=device_id,
        project_id=project_id,
        target_name=target_name,
        timestamp=timestamp,
        labels=_labels(doc.get("labels")),
        metadata=metadata,
        data=_typed(event_type, data, stamp, timestamp),
        raw=body,
    )


def _typed(event_type: str, data: dict[str, Any], stamp: str, timestamp: datetime) -> Any:
    decode = DECODERS.get(event_type)
    if decode is None:
        return data
    inner = data.get(event_type) if event_type in KEYED else data
    if type(inner) is not dict:
        return data
    try:
        return decode(inner, stamp, timestamp)
    except BadShape:
        return data


def _labels(labels: Any) -> dict[str, str]:
    if type(labels) is not dict:
        return {}
    for value in labels.values():
        if type(value) is not str:
            return {k: v for k, v in labels.items() if type(v) is str}
    return labels


def _origin(meta: Any, target_name: str) -> tuple[str, str, Metadata | None]:
    """(device_id, project_id, metadata) from `metadata`, else from `targetName`, else ""."""
    device_id = project_id = ""
    metadata = None
    if type(meta) is dict:
        device_id = meta.get("deviceId", "")
        project_id = meta.get("projectId", "")
        if type(device_id) is not str:
            device_id = ""
        if type(project_id) is not str:
            project_id = ""
        device_type = meta.get("deviceType")
        product_number = meta.get("productNumber")
        if type(device_type) is str and type(product_number) is str:
            metadata = Metadata(device_type, product_number)
    if not (device_id and project_id):
        parts = target_name.split("/")
        if len(parts) == 4 and parts[0] == "projects" and parts[2] == "devices":
            project_id = project_id or parts[1]
            device_id = device_id or parts[3]
    return device_id, project_id, metadata
