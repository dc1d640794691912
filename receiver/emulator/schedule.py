"""What the virtual sensors do, and when: DT's rhythm as a pure, seeded plan.

`SensorPlan` yields `Tick`s in *virtual* seconds since the start, drawn from one random
source (the same seed gives the same sequence). Sensors beat every ~15 min (±3), each beat
sending one ``networkStatus`` per Cloud Connector in range plus the data of sampling
sensors (temperature, humidity, co2 + pressure, the two counters); proximity, water,
motion, desk and contact sensors send a state event when their state flips, with a
``networkStatus`` per Cloud Connector, as DT's triggered events do; any sensor is touched
now and then (``touch``, plus a reading for temperature and humidity sensors);
``batteryStatus`` comes occasionally, ``probeWireStatus`` rarely, a ``labelsChanged`` now
and then on some sensor (never its ``name``); Cloud Connectors report
``connectionStatus``, ``ethernetStatus`` and ``cellularStatus``. How often is `Rhythm`.
A reading's data is built when it is emitted, from the event's real time.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from receiver.emulator import catalog
from receiver.emulator.devices import Device

#: A reading's data, given the event's time as DT writes it.
DataBuilder = Callable[[str], dict[str, Any]]


@dataclass(frozen=True)
class Rhythm:
    """Mean seconds between occurrences, in virtual time (DT's rhythm by default)."""

    heartbeat: float = 900.0
    heartbeat_jitter: float = 180.0
    touch: float = 6 * 3600.0  # any sensor touched by someone
    button: float = 900.0  # the touch sensor, pressed
    presses: float = 300.0  # touch counter presses / proximity counter passages (counted)
    proximity: float = 1800.0  # state flips, by sensor type
    water: float = 12 * 3600.0
    motion: float = 300.0
    desk: float = 2400.0
    contact: float = 1800.0
    battery: float = 12 * 3600.0
    probe_wire: float = 48 * 3600.0
    labels: float = 8 * 3600.0  # per project
    ccon_status: float = 3600.0

    @classmethod
    def lively(cls) -> Rhythm:
        """Rare events made common, so a short demo or test sees all 19 types soon."""
        return cls(
            touch=1800.0,
            water=3600.0,
            battery=3600.0,
            probe_wire=3600.0,
            labels=1800.0,
            ccon_status=1800.0,
        )


#: Which Poisson process flips which sensor type's state, and the event type it sends.
_FLIPS: dict[str, tuple[str, str, str, str]] = {
    # device type: (rhythm field, event type, resting state, other state)
    "proximity": ("proximity", "objectPresent", "NOT_PRESENT", "PRESENT"),
    "waterDetector": ("water", "waterPresent", "NOT_PRESENT", "PRESENT"),
    "motion": ("motion", "motion", "NO_MOTION_DETECTED", "MOTION_DETECTED"),
    "deskOccupancy": ("desk", "deskOccupancy", "NOT_OCCUPIED", "OCCUPIED"),
    "contact": ("contact", "contact", "CLOSED", "OPEN"),
}
_PROBE_STATES = ("TWO_WIRE", "THREE_WIRE", "FOUR_WIRE")
_ROOMS = ("office", "meeting-1", "meeting-2", "kitchen", "reception", "basement")


@dataclass(frozen=True)
class Reading:
    """One event a device sends: its type and how to build its data at a given time."""

    device_id: str
    event_type: str
    data: DataBuilder


@dataclass(frozen=True)
class Tick:
    """What happens at virtual second `at`: one or more readings (a triggered event and
    its network statuses go together)."""

    at: float
    readings: tuple[Reading, ...]


class SensorPlan:
    """The events of `devices` over virtual time, drawn from `rng` (pure, deterministic)."""

    def __init__(
        self, devices: Sequence[Device], *, rng: random.Random, rhythm: Rhythm | None = None
    ) -> None:
        self.rng = rng
        self.rhythm = rhythm or Rhythm()
        self.ccons = [d for d in devices if d.type == catalog.CLOUD_CONNECTOR]
        self.sensors = [d for d in devices if d.type != catalog.CLOUD_CONNECTOR]
        self.devices = {d.id: d for d in devices}
        self._heap: list[tuple[float, int, str, str]] = []
        self._order = itertools.count()
        self._in_range: dict[str, list[str]] = {}
        self._values: dict[str, Any] = {}
        for sensor in self.sensors:
            ccons = [c.id for c in self.ccons if c is self.ccons[0] or rng.random() < 0.6]
            self._in_range[sensor.id] = ccons
            self._schedule(sensor.id, "heartbeat", rng.uniform(0, self.rhythm.heartbeat))
            self._poisson(sensor.id, "touch", self._touch_mean(sensor))
            self._poisson(sensor.id, "battery", self.rhythm.battery)
            if sensor.type in _FLIPS:
                self._poisson(sensor.id, "flip", getattr(self.rhythm, _FLIPS[sensor.type][0]))
            if sensor.type in ("touchCounter", "proximityCounter"):
                self._poisson(sensor.id, "press", self.rhythm.presses)
            if sensor.type == "temperature":
                self._poisson(sensor.id, "probe", self.rhythm.probe_wire)
        for ccon in self.ccons:
            self._poisson(ccon.id, "ccon", self.rhythm.ccon_status)
        if devices:
            self._poisson("", "labels", self.rhythm.labels)

    def _touch_mean(self, sensor: Device) -> float:
        return self.rhythm.button if sensor.type == "touch" else self.rhythm.touch

    def _schedule(self, device_id: str, kind: str, at: float) -> None:
        heapq.heappush(self._heap, (at, next(self._order), device_id, kind))

    def _poisson(self, device_id: str, kind: str, mean: float, after: float = 0.0) -> None:
        self._schedule(device_id, kind, after + self.rng.expovariate(1.0 / mean))

    def __iter__(self) -> SensorPlan:
        return self

    def __next__(self) -> Tick:
        """The next tick that has readings (ticks without any are skipped)."""
        while self._heap:
            at, _, device_id, kind = heapq.heappop(self._heap)
            readings = self._occur(at, device_id, kind)
            if readings:
                return Tick(at, tuple(readings))
        raise StopIteration

    # -- what each occurrence produces ---------------------------------------------------

    def _occur(self, at: float, device_id: str, kind: str) -> list[Reading]:
        rhythm = self.rhythm
        if kind == "heartbeat":
            jitter = self.rng.uniform(-rhythm.heartbeat_jitter, rhythm.heartbeat_jitter)
            self._schedule(device_id, kind, at + rhythm.heartbeat + jitter)
            sensor = self.devices[device_id]
            return [*self._sampled(sensor), *self._network(sensor)]
        if kind == "labels":
            self._poisson("", kind, rhythm.labels, at)
            return self._labels()
        device = self.devices[device_id]
        if kind == "touch":
            self._poisson(device_id, kind, self._touch_mean(device), at)
            touch = Reading(device_id, "touch", catalog.touch)
            extra = self._sampled(device) if device.type in ("temperature", "humidity") else []
            return [touch, *extra, *self._network(device)]
        if kind == "flip":
            mean_field, event_type, resting, other = _FLIPS[device.type]
            self._poisson(device_id, kind, getattr(rhythm, mean_field), at)
            key = f"state:{device_id}"
            state = other if self._values.get(key, resting) == resting else resting
            self._values[key] = state
            return [self._state(device, event_type, state), *self._network(device)]
        if kind == "press":
            self._poisson(device_id, kind, rhythm.presses, at)
            key = f"count:{device_id}"
            self._values[key] = self._values.get(key, 0) + self.rng.randint(1, 3)
            return []
        if kind == "battery":
            self._poisson(device_id, kind, rhythm.battery, at)
            key = f"battery:{device_id}"
            percentage = max(self._values.get(key, 100) - self.rng.randint(0, 1), 1)
            self._values[key] = percentage
            return [
                Reading(device_id, "batteryStatus", lambda t: catalog.battery_status(t, percentage))
            ]
        if kind == "probe":
            self._poisson(device_id, kind, rhythm.probe_wire, at)
            return [self._state(device, "probeWireStatus", self.rng.choice(_PROBE_STATES))]
        # kind == "ccon"
        self._poisson(device_id, kind, rhythm.ccon_status, at)
        return self._ccon(device)

    def _state(self, device: Device, event_type: str, state: str) -> Reading:
        if event_type == "deskOccupancy":
            return Reading(device.id, event_type, lambda t: catalog.desk_occupancy(t, state))
        return Reading(device.id, event_type, lambda t: catalog.state_event(event_type, t, state))

    def _sampled(self, sensor: Device) -> list[Reading]:
        """The data a sampling sensor sends on a heartbeat (nothing for the others)."""
        rng, values, key = self.rng, self._values, sensor.id
        kind = sensor.type
        if kind == "temperature":
            celsius = values[key] = round(values.get(key, 4.0) + rng.uniform(-0.3, 0.3), 2)
            return [Reading(key, "temperature", lambda t: catalog.temperature(t, celsius))]
        if kind == "humidity":
            celsius = values[key] = round(values.get(key, 21.5) + rng.uniform(-0.2, 0.2), 2)
            relative = rng.randint(30, 45)
            return [Reading(key, "humidity", lambda t: catalog.humidity(t, celsius, relative))]
        if kind == "co2":
            ppm, pascal = rng.randint(420, 900), rng.randint(99000, 101500)
            return [
                Reading(key, "co2", lambda t: catalog.co2(t, ppm)),
                Reading(key, "pressure", lambda t: catalog.pressure(t, pascal)),
            ]
        if kind in ("touchCounter", "proximityCounter"):
            event_type = "touchCount" if kind == "touchCounter" else "objectPresentCount"
            total = values.get(f"count:{key}", 0)
            return [Reading(key, event_type, lambda t: catalog.count(event_type, t, total))]
        return []

    def _network(self, sensor: Device) -> list[Reading]:
        """One ``networkStatus`` per Cloud Connector in range of `sensor`."""
        readings = []
        for number, ccon_id in enumerate(self._in_range.get(sensor.id, [])):
            strength = max(5, min(100, 75 - 20 * number + self.rng.randint(-10, 10)))
            rssi = -50 - (100 - strength) // 2
            readings.append(Reading(sensor.id, "networkStatus", _network(ccon_id, strength, rssi)))
        return readings

    def _ccon(self, ccon: Device) -> list[Reading]:
        index = self.ccons.index(ccon)
        key = f"connection:{ccon.id}"
        connection = self._values.get(key, "ETHERNET" if index == 0 else "CELLULAR")
        if self.rng.random() < 0.1:
            connection = "CELLULAR" if connection == "ETHERNET" else "ETHERNET"
        self._values[key] = connection
        mac, ip = f"f0:b5:b7:00:0a:{index + 8:02x}", f"10.0.0.{index + 1}"
        strength = self.rng.randint(40, 95)
        return [
            Reading(
                ccon.id,
                "connectionStatus",
                lambda t: catalog.connection_status(t, connection, ["CELLULAR", "ETHERNET"]),
            ),
            Reading(ccon.id, "ethernetStatus", lambda t: catalog.ethernet_status(t, mac, ip)),
            Reading(ccon.id, "cellularStatus", lambda t: catalog.cellular_status(t, strength)),
        ]

    def _labels(self) -> list[Reading]:
        """Someone edits a device's labels: a note added, a room changed or a note removed."""
        device = self.rng.choice(self.sensors or list(self.devices.values()))
        labels = self._values.setdefault(f"labels:{device.id}", dict(device.labels))
        choice = self.rng.random()
        added: dict[str, str] = {}
        modified: dict[str, str] = {}
        removed: list[str] = []
        if "note" in labels and choice < 0.4:
            removed.append("note")
            del labels["note"]
        elif choice < 0.7:
            room = self.rng.choice(_ROOMS)
            (modified if "room" in labels else added)["room"] = room
            labels["room"] = room
        else:
            note = f"checked {self.rng.randint(1, 99)}"
            (modified if "note" in labels else added)["note"] = note
            labels["note"] = note
        data = catalog.labels_changed(added, modified, removed)
        return [Reading(device.id, "labelsChanged", lambda _t: data)]


def _network(ccon_id: str, strength: int, rssi: int) -> DataBuilder:
    return lambda at: catalog.network_status(at, ccon_id, strength, rssi)


def events_per_second(
    devices: Sequence[Device], rhythm: Rhythm | None = None, *, hours: float = 48.0
) -> float:
    """About how many events per (virtual) second a plan of `devices` makes at speed 1."""
    plan = SensorPlan(devices, rng=random.Random(0), rhythm=rhythm)
    horizon = hours * 3600
    count = 0
    for tick in plan:
        if tick.at > horizon:
            break
        count += len(tick.readings)
    return count / horizon
