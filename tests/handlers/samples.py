"""Sample events for handler tests: the DT fixtures of every type, parsed as the receiver does."""

from __future__ import annotations

from datetime import datetime
from importlib.resources import files
from typing import Any

import orjson

from receiver.events import Event, parse

_DATA = files("receiver") / "testing_data"

#: Every event type with a fixture, in file-name order.
SAMPLE_TYPES: tuple[str, ...] = tuple(
    sorted(p.name.removesuffix(".json") for p in _DATA.iterdir() if p.name.endswith(".json"))
)


def body(event_type: str) -> bytes:
    """The exact bytes of the fixture push of `event_type`."""
    return (_DATA / f"{event_type}.json").read_bytes()


def sample(event_type: str) -> Event:
    """The fixture push of `event_type`, parsed."""
    return parse(body(event_type))


def variant(
    event_type: str,
    *,
    event_id: str,
    device_id: str | None = None,
    timestamp: datetime | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    """The fixture of `event_type` with another id, and optionally device, time or data."""
    doc = orjson.loads(body(event_type))
    doc["event"]["eventId"] = event_id
    if device_id is not None:
        doc["metadata"]["deviceId"] = device_id
        project = doc["metadata"]["projectId"]
        doc["event"]["targetName"] = f"projects/{project}/devices/{device_id}"
    if timestamp is not None:
        doc["event"]["timestamp"] = timestamp.isoformat()
    if data is not None:
        doc["event"]["data"] = data
    return parse(orjson.dumps(doc))
