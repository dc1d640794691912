"""Sample events for handler tests: `receiver.testing`'s samples, parsed as the receiver does.

`variant` keeps the timestamp's own offset and replaces `data` whole (unlike
`receiver.testing.make_event_body`), to test UTC normalisation and redelivered ids.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import strategies as st

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


# Event times for the latest-wins properties of the store handlers.
ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5, minutes=30))]
)
BASE = datetime(2024, 5, 29, 10, 34, 3, tzinfo=UTC)
# Mostly a few seconds apart, often on a whole second: where text order and time order part
# if the format were not fixed-width UTC.
NEAR = st.builds(
    lambda seconds, micros, zone: (
        BASE + timedelta(seconds=seconds, microseconds=micros)
    ).astimezone(zone),
    st.integers(min_value=0, max_value=3),
    st.one_of(st.just(0), st.integers(min_value=0, max_value=999_999)),
    ZONES,
)
TIMES = st.one_of(
    NEAR,
    st.datetimes(min_value=datetime(2019, 1, 1), max_value=datetime(2030, 1, 1), timezones=ZONES),
)
KEYS = [(device, type_) for device in ("emu-a", "emu-b") for type_ in ("touch", "temperature")]
