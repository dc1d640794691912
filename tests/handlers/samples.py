"""Sample events for handler tests: `receiver.testing`'s samples, parsed as the receiver does.

`variant` keeps the timestamp's own offset and replaces `data` whole (unlike
`receiver.testing.make_event_body`), to test UTC normalisation and redelivered ids.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from receiver.events import Event, parse
from receiver.testing import sample_bodies, sample_body

#: Every event type with a sample.
SAMPLE_TYPES: tuple[str, ...] = tuple(sample_bodies())


def body(event_type: str) -> bytes:
    """The exact bytes of the sample push of `event_type`."""
    return sample_body(event_type)


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
