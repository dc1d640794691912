"""Devices and event history: the seeded project, DT's shapes, filters, time windows, pages."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from receiver.emulator import EmulatorState
from receiver.emulator.catalog import DEVICE_TYPES, EVENT_TYPES
from receiver.emulator.timestamps import format_rfc3339, parse_rfc3339
from tests.emulator.conftest import Clock


def _devices(state: EmulatorState) -> str:
    return f"/v2/projects/{state.project_id}/devices"


async def _all_devices(
    client: TestClient[Any, Any], path: str, headers: dict[str, str], **params: Any
) -> Any:
    response = await client.get(path, params=params, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def _all_events(
    client: TestClient[Any, Any], path: str, headers: dict[str, str], params: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    token = ""
    while True:
        query = params + ([("pageToken", token)] if token else [])
        response = await client.get(path, params=query, headers=headers)
        assert response.status == 200, await response.text()
        body = await response.json()
        assert set(body) == {"events", "nextPageToken"}
        events.extend(body["events"])
        token = body["nextPageToken"]
        if not token:
            return events


async def test_devices_seeded_project_has_every_device_type_and_two_cloud_connectors(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    body = await _all_devices(client, _devices(state), headers)

    devices = body["devices"]
    assert body["nextPageToken"] == ""
    assert sorted({d["type"] for d in devices}) == sorted(DEVICE_TYPES)
    assert sum(1 for d in devices if d["type"] == "ccon") == 2
    for device in devices:
        device_id = device["name"].rsplit("/", 1)[1]
        assert device["name"] == f"projects/{state.project_id}/devices/{device_id}"
        assert device_id.startswith("emu") and len(device_id) == 23
        assert device["productNumber"] == ""
        assert device["labels"]["name"]
        assert device["reported"]


async def test_devices_reported_holds_latest_data_of_each_type(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    devices = (await _all_devices(client, _devices(state), headers, device_types="temperature"))[
        "devices"
    ]
    (fridge,) = devices
    device_id = fridge["name"].rsplit("/", 1)[1]
    newest = state.get_device(state.project_id, device_id).history(
        0, float("inf"), ["temperature"]
    )[0]

    assert fridge["reported"]["temperature"] == newest["data"]["temperature"]
    assert set(fridge["reported"]) >= {
        "temperature",
        "networkStatus",
        "batteryStatus",
        "probeWireStatus",
    }
    assert "labelsChanged" not in fridge["reported"]


async def test_devices_filters_by_type_label_id_and_query(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    path = _devices(state)
    sensors = await _all_devices(client, path, headers, device_types="co2")
    offices = await _all_devices(client, path, headers, label_filters="room=office")
    keyed = await _all_devices(client, path, headers, label_filters="room")
    first_id = sensors["devices"][0]["name"].rsplit("/", 1)[1]
    by_id = await _all_devices(client, path, headers, device_ids=first_id)
    by_query = await _all_devices(client, path, headers, query="corridor")

    assert [d["type"] for d in sensors["devices"]] == ["co2"]
    assert sorted(d["type"] for d in offices["devices"]) == ["co2", "deskOccupancy"]
    assert (
        len(keyed["devices"]) == 9
    )  # eight seeded with a room, the fridge got one by labelsChanged
    assert all("room" in d["labels"] for d in keyed["devices"])
    assert [d["name"] for d in by_id["devices"]] == [sensors["devices"][0]["name"]]
    assert [d["labels"]["name"] for d in by_query["devices"]] == ["Corridor"]


async def test_devices_order_by_reported_field_descending(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    body = await _all_devices(
        client, _devices(state), headers, order_by="-reported.batteryStatus.percentage"
    )

    values = [d["reported"].get("batteryStatus", {}).get("percentage") for d in body["devices"]]
    present = [v for v in values if v is not None]
    assert present == sorted(present, reverse=True)
    assert values[: len(present)] == present  # devices without the field come last


async def test_devices_unknown_type_answers_400(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    response = await client.get(
        _devices(state), params={"device_types": "toaster"}, headers=headers
    )

    assert response.status == 400
    assert (await response.json())["code"] == 400


async def test_devices_pages_with_page_size(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    first = await _all_devices(client, _devices(state), headers, pageSize=5)
    second = await _all_devices(
        client, _devices(state), headers, pageSize=5, pageToken=first["nextPageToken"]
    )
    whole = await _all_devices(client, _devices(state), headers)

    assert len(first["devices"]) == 5 and first["nextPageToken"]
    assert first["devices"] + second["devices"] == whole["devices"][:10]


async def test_device_get_answers_device_and_wildcard_project_finds_it(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    listed = (await _all_devices(client, _devices(state), headers))["devices"][0]
    device_id = listed["name"].rsplit("/", 1)[1]

    direct = await client.get(f"{_devices(state)}/{device_id}", headers=headers)
    wildcard = await client.get(f"/v2/projects/-/devices/{device_id}", headers=headers)

    assert await direct.json() == listed
    assert await wildcard.json() == listed


async def test_device_unknown_answers_404(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    response = await client.get(f"{_devices(state)}/emunothere0000000000000", headers=headers)
    events = await client.get(f"{_devices(state)}/emunothere0000000000000/events", headers=headers)

    assert response.status == 404
    assert events.status == 404
    assert (await response.json())["help"] == "https://docs.d21s.com/error/#404"


async def test_events_history_covers_all_19_event_types(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    seen: set[str] = set()
    for device in (await _all_devices(client, _devices(state), headers))["devices"]:
        events = await _all_events(client, "/v2/" + device["name"] + "/events", headers, [])
        seen.update(event["eventType"] for event in events)

    assert seen == set(EVENT_TYPES)


async def test_events_default_window_is_last_24_hours_newest_first_in_dt_shape(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str], clock: Clock
) -> None:
    device = (await _all_devices(client, _devices(state), headers, device_types="motion"))[
        "devices"
    ][0]

    events = await _all_events(client, "/v2/" + device["name"] + "/events", headers, [])

    times = [parse_rfc3339(e["timestamp"]) for e in events]
    assert events and times == sorted(times, reverse=True)
    assert all(clock() - 24 * 3600 <= t <= clock() for t in times)
    assert len({e["eventId"] for e in events}) == len(events)
    for event in events:
        assert list(event) == ["eventId", "targetName", "eventType", "data", "timestamp"]
        assert event["targetName"] == device["name"]
        assert len(event["eventId"]) == 20


async def test_events_filter_by_repeated_event_types_and_time_range(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str], clock: Clock
) -> None:
    device = (await _all_devices(client, _devices(state), headers, device_types="co2"))["devices"][
        0
    ]
    start, end = clock() - 6 * 3600, clock() - 3 * 3600
    params = [
        ("eventTypes", "co2"),
        ("eventTypes", "pressure"),
        ("startTime", format_rfc3339(start)),
        ("endTime", format_rfc3339(end)),
        ("pageSize", "4"),
    ]

    events = await _all_events(client, "/v2/" + device["name"] + "/events", headers, params)

    assert {e["eventType"] for e in events} == {"co2", "pressure"}
    assert all(start <= parse_rfc3339(e["timestamp"]) <= end for e in events)
    assert len(events) == 12  # two types, a heartbeat every 30 minutes for 3 hours


async def test_events_appended_event_appears_in_history_and_reported(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str], clock: Clock
) -> None:
    device = state.list_devices(state.project_id, device_types=["contact"])[0]
    clock.advance(10)
    event = state.emit(
        device.id,
        "contact",
        {"contact": {"state": "OPEN", "updateTime": format_rfc3339(clock())}},
        clock(),
    )

    events = await _all_events(client, f"/v2/{device.name}/events", headers, [("pageSize", "1")])
    got = await (await client.get(f"/v2/{device.name}", headers=headers)).json()

    assert events[0] == event
    assert got["reported"]["contact"] == {"state": "OPEN", "updateTime": event["timestamp"]}


@pytest.mark.parametrize(
    "params",
    [
        [("startTime", "yesterday")],
        [("endTime", "2026-05-28")],
        [("startTime", "2026-05-28T10:00:00")],
        [("startTime", "2026-05-28T10:00:00Z"), ("endTime", "2026-05-27T10:00:00Z")],
        [("eventTypes", "teleport")],
        [("pageSize", "many")],
    ],
)
async def test_events_bad_parameters_answer_400(
    client: TestClient[Any, Any],
    state: EmulatorState,
    headers: dict[str, str],
    params: list[tuple[str, str]],
) -> None:
    device = state.list_devices(state.project_id)[0]

    response = await client.get(f"/v2/{device.name}/events", params=params, headers=headers)

    assert response.status == 400
    assert (await response.json())["code"] == 400


async def test_project_get_answers_dt_project_shape(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    response = await client.get(f"/v2/projects/{state.project_id}", headers=headers)

    body = await response.json()
    assert body["name"] == f"projects/{state.project_id}"
    assert body["organization"] == f"organizations/{state.organization_id}"
    assert body["sensorCount"] == 11 and body["cloudConnectorCount"] == 2
