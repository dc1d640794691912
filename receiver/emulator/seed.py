"""The seeded project: one virtual device of every DT device type (two Cloud Connectors),
with labels and a day of event history covering all 19 event types.

History follows DT's rhythm loosely: each sensor reports on a heartbeat (every 30 min here)
with its data event and one ``networkStatus`` per Cloud Connector in range, a
``batteryStatus`` every 6 h, touches now and then; Cloud Connectors report their connection,
ethernet and cellular status; one device had its labels changed. Deterministic for a given
random source and `now`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from receiver.emulator import catalog
from receiver.emulator.devices import Device, make_event
from receiver.emulator.ids import IdFactory
from receiver.emulator.timestamps import format_rfc3339

HISTORY_HOURS = 24
HEARTBEAT_SECONDS = 1800
BATTERY_EVERY = 12  # heartbeats

#: (device type, `name` label, other labels) of the seeded sensors.
SENSORS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("temperature", "Fridge 3", {}),
    ("proximity", "Meeting room door", {"room": "meeting-1"}),
    ("touch", "Reception button", {"room": "reception"}),
    ("humidity", "Server room", {"room": "server"}),
    ("proximityCounter", "Entrance counter", {"room": "reception"}),
    ("touchCounter", "Feedback button", {"room": "reception"}),
    ("waterDetector", "Basement floor", {"room": "basement"}),
    ("co2", "Office air", {"room": "office"}),
    ("motion", "Corridor", {}),
    ("deskOccupancy", "Desk 4.12", {"room": "office"}),
    ("contact", "Washroom door", {}),
)
CLOUD_CONNECTORS: tuple[str, ...] = ("Cloud Connector 1", "Cloud Connector 2")

Emit = Callable[[Device, str, dict[str, Any], float], None]


def seed_devices(project_id: str, now: float, ids: IdFactory, rng: random.Random) -> list[Device]:
    """The seeded devices of `project_id`, their history ending just before `now`."""
    start = now - HISTORY_HOURS * 3600
    ccons = [
        Device("emu" + ids.xid(start), project_id, catalog.CLOUD_CONNECTOR, {"name": name})
        for name in CLOUD_CONNECTORS
    ]
    sensors = [
        Device("emu" + ids.xid(start), project_id, device_type, {"name": name, **labels})
        for device_type, name, labels in SENSORS
    ]

    def emit(device: Device, event_type: str, data: dict[str, Any], at: float) -> None:
        event_id = ids.xid(at)
        device.append(
            make_event(event_id, project_id, device.id, event_type, data, format_rfc3339(at))
        )

    for index, ccon in enumerate(ccons):
        _cloud_connector_history(ccon, index, start, now, emit)
    sensor_state = _SensorState(rng)
    beats = int((now - start) // HEARTBEAT_SECONDS)
    for beat in range(beats):
        at_beat = start + beat * HEARTBEAT_SECONDS
        for sensor in sensors:
            at = at_beat + rng.uniform(1.0, 60.0)
            for event_type, data in sensor_state.readings(sensor, beat, format_rfc3339(at)):
                emit(sensor, event_type, data, at)
            for number, ccon in enumerate(ccons):
                strength = max(5, min(100, 70 - 20 * number + rng.randint(-8, 8)))
                rssi = -50 - (100 - strength) // 2
                emit(
                    sensor,
                    "networkStatus",
                    catalog.network_status(format_rfc3339(at), ccon.id, strength, rssi),
                    at,
                )
            if beat % BATTERY_EVERY == 0:
                percentage = 100 - beat // BATTERY_EVERY
                emit(
                    sensor,
                    "batteryStatus",
                    catalog.battery_status(format_rfc3339(at), percentage),
                    at,
                )
    fridge = sensors[0]
    at = start + 0.5 * (now - start)
    emit(fridge, "labelsChanged", catalog.labels_changed({"room": "kitchen"}, {}, []), at)
    emit(
        fridge,
        "probeWireStatus",
        catalog.state_event("probeWireStatus", format_rfc3339(at + 1), "THREE_WIRE"),
        at + 1,
    )
    return [*ccons, *sensors]


def _cloud_connector_history(
    ccon: Device, index: int, start: float, now: float, emit: Emit
) -> None:
    connection = "ETHERNET" if index == 0 else "CELLULAR"
    at = start + 5.0
    while at < now:
        when = format_rfc3339(at)
        emit(
            ccon,
            "connectionStatus",
            catalog.connection_status(when, connection, ["CELLULAR", "ETHERNET"]),
            at,
        )
        emit(
            ccon,
            "ethernetStatus",
            catalog.ethernet_status(when, f"f0:b5:b7:00:0a:0{index + 8}", f"10.0.0.{index + 1}"),
            at,
        )
        emit(ccon, "cellularStatus", catalog.cellular_status(when, 80 - 10 * index), at)
        at += 6 * 3600


class _SensorState:
    """Plausible, slowly changing readings for each sensor type."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.celsius = 4.0
        self.room_celsius = 21.5
        self.objects = 4100
        self.touches = 460
        self.states: dict[str, str] = {}

    def _flip(self, key: str, first: str, second: str, chance: float) -> str:
        current = self.states.get(key, first)
        if self.rng.random() < chance:
            current = second if current == first else first
        self.states[key] = current
        return current

    def readings(self, sensor: Device, beat: int, at: str) -> list[tuple[str, dict[str, Any]]]:
        rng = self.rng
        kind = sensor.type
        if kind == "temperature":
            self.celsius = round(self.celsius + rng.uniform(-0.3, 0.3), 2)
            return [("temperature", catalog.temperature(at, self.celsius))]
        if kind == "humidity":
            self.room_celsius = round(self.room_celsius + rng.uniform(-0.2, 0.2), 2)
            return [("humidity", catalog.humidity(at, self.room_celsius, rng.randint(30, 45)))]
        if kind == "proximity":
            state = self._flip(kind, "PRESENT", "NOT_PRESENT", 0.3)
            return [("objectPresent", catalog.state_event("objectPresent", at, state))]
        if kind == "proximityCounter":
            self.objects += rng.randint(0, 12)
            return [("objectPresentCount", catalog.count("objectPresentCount", at, self.objects))]
        if kind == "touchCounter":
            self.touches += rng.randint(0, 3)
            return [("touchCount", catalog.count("touchCount", at, self.touches))]
        if kind == "waterDetector":
            state = self._flip(kind, "NOT_PRESENT", "PRESENT", 0.05)
            return [("waterPresent", catalog.state_event("waterPresent", at, state))]
        if kind == "co2":
            return [
                ("co2", catalog.co2(at, rng.randint(420, 900))),
                ("pressure", catalog.pressure(at, rng.randint(99000, 101500))),
            ]
        if kind == "motion":
            state = self._flip(kind, "NO_MOTION_DETECTED", "MOTION_DETECTED", 0.4)
            return [("motion", catalog.state_event("motion", at, state))]
        if kind == "deskOccupancy":
            state = self._flip(kind, "NOT_OCCUPIED", "OCCUPIED", 0.3)
            return [("deskOccupancy", catalog.desk_occupancy(at, state))]
        if kind == "contact":
            state = self._flip(kind, "CLOSED", "OPEN", 0.3)
            return [("contact", catalog.state_event("contact", at, state))]
        # touch sensor: a touch every fourth heartbeat
        return [("touch", catalog.touch(at))] if beat % 4 == 0 else []
