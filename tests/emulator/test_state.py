"""The pure core of the emulator: ids, times, pages, delivery bookkeeping, history, seed."""

from __future__ import annotations

import base64
import random

import pytest

from receiver.emulator import EmulatorState
from receiver.emulator.catalog import EMITS, EVENT_TYPES
from receiver.emulator.delivery import ConnectorDelivery
from receiver.emulator.errors import ApiError
from receiver.emulator.ids import IdFactory
from receiver.emulator.pages import decode_token, encode_token, paginate, parse_page_size
from receiver.emulator.timestamps import format_duration, format_rfc3339, parse_rfc3339
from tests.emulator.conftest import START

HTTP = {"type": "HTTP_PUSH", "httpConfig": {"url": "https://example.com/e"}}


def test_xid_is_20_base32hex_chars_with_its_time_inside() -> None:
    ids = IdFactory(random.Random(1))

    first, second = ids.xid(START), ids.xid(START)

    assert len(first) == 20 and first != second
    assert set(first) <= set("0123456789abcdefghijklmnopqrstuv")
    raw = base64.b32hexdecode(first.upper() + "====")
    assert int.from_bytes(raw[:4], "big") == int(START)


def test_ids_are_repeatable_with_a_seeded_random_source() -> None:
    assert IdFactory(random.Random(3)).secret() == IdFactory(random.Random(3)).secret()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (1, "1s"),
        (0.411, "0.411s"),
        (0.25, "0.250s"),
        (0.000250, "0.000250s"),
        (1.5e-9, "0.000000002s"),
    ],
)
def test_duration_is_written_as_protobuf_json(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_rfc3339_round_trips_with_microseconds() -> None:
    text = format_rfc3339(START + 0.076013)

    assert text == "2026-05-28T20:26:40.076013Z"
    assert parse_rfc3339(text) == pytest.approx(START + 0.076013)
    assert parse_rfc3339("2026-05-28T22:26:40+02:00") == START


@pytest.mark.parametrize("text", ["2026-05-28", "2026-05-28T20:26:40", "now", ""])
def test_rfc3339_without_time_or_offset_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(text)


def test_pages_cover_items_once_and_tokens_are_checked() -> None:
    items = list(range(7))

    first, token = paginate(items, 3, None)
    second, token2 = paginate(items, 3, token)
    third, token3 = paginate(items, 3, token2)

    assert first + second + third == items and token3 == ""
    assert decode_token(encode_token(5)) == 5
    with pytest.raises(ApiError):
        decode_token("bm90LW91cnM")  # "not-ours"
    assert parse_page_size("5000") == 1000
    assert parse_page_size("0") == 100


def test_delivery_metrics_p99_and_three_hour_window() -> None:
    delivery = ConnectorDelivery()
    for index in range(100):
        delivery.record_attempt(START + index, ok=True, latency=0.1 + index / 1000)

    metrics = delivery.metrics(START + 200)["metrics"]
    later = delivery.metrics(START + 3 * 3600 + 50)["metrics"]

    assert metrics == {"successCount": 100, "errorCount": 0, "latency99p": "0.198s"}
    assert later["successCount"] == 50  # attempts 50..99 are within [now - 3 h, now]


def test_delivery_failing_long_enough_should_disable_and_success_resets() -> None:
    delivery = ConnectorDelivery()
    delivery.record_attempt(START, ok=False, latency=10)
    delivery.record_attempt(START + 50, ok=False, latency=10)

    assert not delivery.should_disable(START + 99, after_seconds=100)
    assert delivery.should_disable(START + 100, after_seconds=100)
    delivery.record_attempt(START + 101, ok=True, latency=0.1)
    assert not delivery.should_disable(START + 1000, after_seconds=100)


def test_seeded_state_is_deterministic_for_a_seed() -> None:
    one = EmulatorState.seeded(START, rng=random.Random(5))
    two = EmulatorState.seeded(START, rng=random.Random(5))

    assert one.project_id == two.project_id
    assert one.service_account.secret == two.service_account.secret
    assert [d.to_json() for d in one.list_devices(one.project_id)] == [
        d.to_json() for d in two.list_devices(two.project_id)
    ]


def test_seeded_devices_emit_only_their_own_event_types() -> None:
    state = EmulatorState.seeded(START, rng=random.Random(5))

    for device in state.list_devices(state.project_id):
        kinds = {e["eventType"] for e in device.history(0, START)}
        assert kinds <= {*EMITS[device.type], "labelsChanged"}
        assert kinds <= set(EVENT_TYPES)


def test_append_older_event_keeps_newer_reported_value() -> None:
    state = EmulatorState.seeded(START, rng=random.Random(5))
    device = state.list_devices(state.project_id, device_types=["contact"])[0]
    newest = dict(device.reported["contact"])

    state.emit(
        device.id,
        "contact",
        {"contact": {"state": "X", "updateTime": format_rfc3339(START - 48 * 3600)}},
        START - 48 * 3600,
    )

    assert device.reported["contact"] == newest


def test_labels_changed_event_changes_the_device_labels() -> None:
    state = EmulatorState.seeded(START, rng=random.Random(5))
    device = state.list_devices(state.project_id, device_types=["motion"])[0]

    state.emit(
        device.id,
        "labelsChanged",
        {"added": {"floor": "2"}, "modified": {"name": "Hall"}, "removed": []},
        START + 1,
    )

    assert device.labels == {"name": "Hall", "floor": "2"}


def test_append_event_tells_listeners() -> None:
    state = EmulatorState.seeded(START, rng=random.Random(5))
    device = state.list_devices(state.project_id, device_types=["touch"])[0]
    heard: list[str] = []
    state.on_event.append(lambda d, e: heard.append(f"{d.id}/{e['eventType']}"))

    state.emit(device.id, "touch", {"touch": {"updateTime": format_rfc3339(START)}}, START)

    assert heard == [f"{device.id}/touch"]


def test_latest_events_has_one_event_per_type() -> None:
    state = EmulatorState.seeded(START, rng=random.Random(5))
    device = state.list_devices(state.project_id, device_types=["co2"])[0]

    latest = device.latest_events()

    assert sorted(e["eventType"] for e in latest) == sorted(
        ["co2", "pressure", "networkStatus", "batteryStatus"]
    )
    co2 = next(e for e in latest if e["eventType"] == "co2")
    assert co2 == device.history(0, START, ["co2"])[0]


def test_connector_limit_is_configurable() -> None:
    state = EmulatorState.seeded(START, rng=random.Random(5), max_connectors_per_project=1)
    state.create_connector(state.project_id, HTTP, START)

    with pytest.raises(ApiError) as caught:
        state.create_connector(state.project_id, HTTP, START)

    assert caught.value.status == 400


def test_set_connector_status_allows_system_disabled_for_the_push_side() -> None:
    state = EmulatorState.seeded(START, rng=random.Random(5))
    connector = state.create_connector(state.project_id, HTTP, START)

    state.set_connector_status(state.project_id, connector.id, "SYSTEM_DISABLED")

    assert state.get_connector(state.project_id, connector.id).status == "SYSTEM_DISABLED"
    assert state.active_connectors(state.project_id) == []


def test_seeded_cloud_ids_and_credentials_do_not_depend_on_the_start_time() -> None:
    first = EmulatorState.seeded(START, rng=random.Random(42))
    later = EmulatorState.seeded(START + 3600.5, rng=random.Random(42))

    assert first.project_id == later.project_id
    assert first.organization_id == later.organization_id
    assert first.service_account == later.service_account
