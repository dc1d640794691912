"""Virtual sensors: DT's rhythm as a seeded plan (pure), and played into the emulator's state."""

from __future__ import annotations

import itertools
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from receiver.emulator import EmulatorState
from receiver.emulator.catalog import EMITS, EVENT_TYPES
from receiver.emulator.devices import Device
from receiver.emulator.schedule import Reading, Rhythm, SensorPlan, Tick, events_per_second
from receiver.emulator.sensors import VirtualSensors
from receiver.emulator.timestamps import parse_rfc3339
from tests.emulator.conftest import START
from tests.waiting import until

AT = "2026-05-28T20:26:40.000000Z"
DAY = 24 * 3600.0
STATE_TYPES = ("objectPresent", "waterPresent", "motion", "deskOccupancy", "contact")


def devices(seed: int = 7) -> list[Device]:
    state = EmulatorState.seeded(START, rng=random.Random(seed))
    return list(state.project(state.project_id).devices.values())


def ticks(plan: SensorPlan, until_at: float) -> Iterator[Tick]:
    return itertools.takewhile(lambda tick: tick.at <= until_at, plan)


def readings(plan: SensorPlan, until_at: float) -> list[tuple[float, Reading]]:
    return [(tick.at, reading) for tick in ticks(plan, until_at) for reading in tick.readings]


def built(reading: Reading) -> dict[str, Any]:
    return reading.data(AT)


def test_plan_is_the_same_for_the_same_seed_and_differs_for_another() -> None:
    def run(seed: int) -> list[tuple[float, str, str, dict[str, Any]]]:
        plan = SensorPlan(devices(), rng=random.Random(seed))
        return [(at, r.device_id, r.event_type, built(r)) for at, r in readings(plan, DAY / 4)]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_lively_rhythm_produces_all_19_event_types_within_a_few_hundred_events() -> None:
    plan = SensorPlan(devices(), rng=random.Random(3), rhythm=Rhythm.lively())
    seen: set[str] = set()
    for count, reading in enumerate(r for tick in plan for r in tick.readings):
        seen.add(reading.event_type)
        if seen == set(EVENT_TYPES) or count > 600:
            break

    assert seen == set(EVENT_TYPES)


def test_default_rhythm_also_produces_all_19_types_in_a_few_virtual_days() -> None:
    plan = SensorPlan(devices(), rng=random.Random(3))

    assert {r.event_type for _, r in readings(plan, 7 * DAY)} == set(EVENT_TYPES)


def test_every_sensor_reports_network_status_at_least_every_18_minutes() -> None:
    plan = SensorPlan(devices(), rng=random.Random(4))
    seen: dict[str, list[float]] = defaultdict(list)
    for at, reading in readings(plan, DAY):
        if reading.event_type == "networkStatus":
            seen[reading.device_id].append(at)

    sensors = [d for d in plan.devices.values() if d.type != "ccon"]
    assert set(seen) == {d.id for d in sensors}
    for times in seen.values():
        beats = sorted(set(times))
        gaps = [b - a for a, b in itertools.pairwise(beats)]
        assert beats[0] <= 900 + 180 and max(gaps) <= 900 + 180
        assert len(beats) >= DAY / (900 + 180)


def test_each_network_status_names_one_cloud_connector_of_the_project() -> None:
    plan = SensorPlan(devices(), rng=random.Random(5))
    ccons = {d.id for d in plan.devices.values() if d.type == "ccon"}

    statuses = [built(r) for _, r in readings(plan, DAY / 2) if r.event_type == "networkStatus"]

    assert statuses
    for data in statuses:
        (listed,) = data["networkStatus"]["cloudConnectors"]
        assert listed["id"] in ccons


def test_triggered_state_events_come_with_a_network_status_per_connector_in_range() -> None:
    plan = SensorPlan(devices(), rng=random.Random(6))
    checked = 0
    for tick in ticks(plan, DAY):
        kinds = [r.event_type for r in tick.readings]
        if any(kind in STATE_TYPES for kind in kinds):
            assert len({r.device_id for r in tick.readings}) == 1
            assert 1 <= kinds.count("networkStatus") <= 2
            assert len(kinds) == kinds.count("networkStatus") + 1
            checked += 1

    assert checked > 50


def test_state_events_flip_between_the_two_states_of_each_sensor() -> None:
    plan = SensorPlan(devices(), rng=random.Random(8))
    by_device: dict[str, list[str]] = defaultdict(list)
    for _, reading in readings(plan, 7 * DAY):
        if reading.event_type in STATE_TYPES:
            data = built(reading)[reading.event_type]
            by_device[reading.device_id].append(data["state"])

    assert len(by_device) == len(STATE_TYPES)
    for states in by_device.values():
        assert len(set(states)) == 2
        assert all(a != b for a, b in itertools.pairwise(states))


def test_counters_never_decrease_and_co2_comes_with_pressure() -> None:
    plan = SensorPlan(devices(), rng=random.Random(9))
    totals: dict[str, list[int]] = defaultdict(list)
    for tick in ticks(plan, DAY):
        kinds = [r.event_type for r in tick.readings]
        assert kinds.count("co2") == kinds.count("pressure")
        for reading in tick.readings:
            if reading.event_type in ("touchCount", "objectPresentCount"):
                totals[reading.event_type].append(built(reading)[reading.event_type]["total"])

    assert set(totals) == {"touchCount", "objectPresentCount"}
    for values in totals.values():
        assert values == sorted(values) and values[-1] > values[0]


def test_each_device_sends_only_the_event_types_of_its_kind() -> None:
    plan = SensorPlan(devices(), rng=random.Random(10))
    for _, reading in readings(plan, 3 * DAY):
        device = plan.devices[reading.device_id]
        assert reading.event_type in (*EMITS[device.type], "labelsChanged")


def test_labels_change_now_and_then_but_never_the_name() -> None:
    plan = SensorPlan(devices(), rng=random.Random(11))
    changes = [built(r) for _, r in readings(plan, 7 * DAY) if r.event_type == "labelsChanged"]

    assert len(changes) >= 5
    for change in changes:
        assert set(change) == {"added", "modified", "removed"}
        assert "name" not in change["added"] and "name" not in change["modified"]
        assert "name" not in change["removed"]


def test_rate_sets_the_speed_from_the_plans_natural_pace() -> None:
    state = EmulatorState.seeded(START, rng=random.Random(7))
    natural = events_per_second(list(state.project(state.project_id).devices.values()))

    sensors = VirtualSensors(state, rate=30.0)

    assert 0.02 < natural < 0.1  # ~3 events per sensor per 15 min heartbeat, and the rest
    assert sensors.speed == pytest.approx(30.0 / natural)


@pytest.mark.parametrize(("rate", "speed"), [(0.0, None), (None, -1.0), (1.0, 1.0)])
def test_virtual_sensors_refuse_a_bad_pace(rate: float | None, speed: float | None) -> None:
    state = EmulatorState.seeded(START, rng=random.Random(7))

    with pytest.raises(ValueError):
        VirtualSensors(state, rate=rate, speed=speed)


async def test_virtual_sensors_append_events_with_real_times_to_device_history() -> None:
    state = EmulatorState.seeded(time.time(), rng=random.Random(7))
    appended: list[tuple[Device, dict[str, Any]]] = []
    state.on_event.append(lambda device, event: appended.append((device, event)))
    before = time.time()
    sensors = VirtualSensors(state, seed=1, speed=20000.0, limit=40)

    await sensors.start()
    await until(lambda: sensors.done, within=10, what="40 events")
    await sensors.stop()

    assert len(appended) == sensors.total == 40
    assert sum(sensors.emitted.values()) == 40
    assert len({event["eventId"] for _, event in appended}) == 40
    for device, event in appended:
        assert event in device.history(before, time.time() + 1)
        assert before <= parse_rfc3339(event["timestamp"]) <= time.time()
        assert event["targetName"] == device.name


async def test_virtual_sensors_stop_cleanly_while_waiting_for_the_next_tick() -> None:
    state = EmulatorState.seeded(time.time(), rng=random.Random(7))
    sensors = VirtualSensors(state, seed=1, speed=1.0)

    await sensors.start()
    await sensors.stop()

    assert sensors.total == 0 and not sensors.done
