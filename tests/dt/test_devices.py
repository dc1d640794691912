"""Devices and event history: the exact requests DT documents, all pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from receiver.dt import TEMPERATURE, TOUCH, Client, ConfigurationError, Device, EventHistory
from tests.dt.conftest import PROJECT, FakeDt
from tests.dt.recorder import API, Answer


async def test_devices_are_listed_over_every_page(dt: FakeDt, client: Client) -> None:
    path = f"{API}/projects/{PROJECT}/devices"

    def device(i: str, kind: str) -> dict[str, Any]:
        return {
            "name": f"projects/{PROJECT}/devices/{i}",
            "type": kind,
            "labels": {"name": f"sensor {i}"},
            "productNumber": "",
            "reported": {"touch": {"updateTime": "2024-05-01T00:00:00Z"}},
        }

    dt.recorder.on(
        "GET",
        path,
        Answer(json={"devices": [device("emu1", "temperature")], "nextPageToken": "n"}),
        Answer(json={"devices": [device("c1", "ccon")], "nextPageToken": ""}),
    )

    devices = await Device.list_devices(
        PROJECT, device_types=["temperature", "ccon"], client=client
    )

    assert [(d.device_id, d.device_type) for d in devices] == [
        ("emu1", "temperature"),
        ("c1", Device.CLOUD_CONNECTOR),
    ]
    assert devices[0].display_name == "sensor emu1"
    assert devices[0].is_emulated
    assert devices[0].reported == {"touch": {"updateTime": "2024-05-01T00:00:00Z"}}
    first, second = dt.recorder.to("GET", path)
    assert first.query == [("device_types", "temperature"), ("device_types", "ccon")]
    assert second.query == [*first.query, ("pageToken", "n")]


async def test_event_history_queries_types_and_range_and_follows_pages(
    dt: FakeDt, client: Client
) -> None:
    path = f"{API}/projects/{PROJECT}/devices/dev1/events"
    event = {
        "eventId": "e1",
        "targetName": f"projects/{PROJECT}/devices/dev1",
        "eventType": "touch",
        "data": {"touch": {"updateTime": "2024-05-01T00:00:00Z"}},
        "timestamp": "2024-05-01T00:00:00Z",
    }
    dt.recorder.on(
        "GET",
        path,
        Answer(json={"events": [event], "nextPageToken": "t2"}),
        Answer(json={"events": [{**event, "eventId": "e2"}], "nextPageToken": ""}),
    )
    end = datetime(2024, 5, 2, 0, 0, tzinfo=UTC)

    events = await EventHistory.list_events(
        "dev1",
        PROJECT,
        event_types=[TOUCH, TEMPERATURE],
        start_time=end - timedelta(days=1),
        end_time=end,
        page_size=100,
        client=client,
    )

    assert [e["eventId"] for e in events] == ["e1", "e2"]
    assert events[0] == event
    first, second = dt.recorder.to("GET", path)
    assert first.query == [
        ("eventTypes", "touch"),
        ("eventTypes", "temperature"),
        ("startTime", "2024-05-01T00:00:00.000000Z"),
        ("endTime", "2024-05-02T00:00:00.000000Z"),
        ("pageSize", "100"),
    ]
    assert second.query == [*first.query, ("pageToken", "t2")]


async def test_event_history_refuses_naive_times(client: Client) -> None:
    with pytest.raises(ConfigurationError):
        await EventHistory.list_events(
            "dev1", PROJECT, start_time=datetime(2024, 5, 1), client=client
        )
