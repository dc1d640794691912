"""Typed `Event.data` for every event type DT documents, and their decoders.

Attribute names follow DT's official Python SDK (`disruptive.events`), so code written against
it reads the same here: `Temperature.celsius`, `Humidity.relative_humidity`,
`NetworkStatus.cloud_connectors`, `LabelsChanged.added`, ... Every class is a frozen, slotted
dataclass; lists are tuples; numbers keep the type DT sent (`27` stays an int, `22.45` a float).
Each has `update_time` (the data's `updateTime`, or the event's timestamp when DT sent none),
also readable as `timestamp`, the SDK's name for it; a sample without `sampleTime` gets the
event's timestamp too.

A decoder takes the type's data object, the event's timestamp (text and parsed) and returns the
typed data, or raises `BadShape` when a required field is missing or any field has the wrong
type; `receiver.events.parse` then keeps the raw dict. Lists DT may leave out (`samples`,
`cloudConnectors`, `errors`, `remarks`, `available`, `removed`, `added`, `modified`) default
to empty, `isBackfilled` to False, `transmissionMode` to None; extra fields are ignored.
This module is pure; import the classes from `receiver.events`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class BadShape(ValueError):
    """A known event type whose data lacks a documented field or has a mistyped one."""


def rfc3339(text: str) -> datetime | None:
    """An RFC 3339 date-time with a time zone (`Z` or an offset), or None.

    Fractional seconds beyond microseconds (DT may send nanoseconds) are truncated.
    """
    if (
        len(text) < 20
        or text[4] != "-"
        or text[7] != "-"
        or text[10] not in "Tt "
        or text[13] != ":"
        or text[16] != ":"
    ):
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        try:  # RFC 3339 allows a lower-case "t" and "z"; fromisoformat does not
            value = datetime.fromisoformat(text.upper())
        except ValueError:
            return None
    return value if value.tzinfo is not None else None


class _Data:
    __slots__ = ()
    update_time: datetime

    @property
    def timestamp(self) -> datetime:
        """The SDK's name for `update_time`."""
        return self.update_time


class _Celsius:
    __slots__ = ()
    celsius: float

    @property
    def fahrenheit(self) -> float:
        return self.celsius * 9 / 5 + 32


@dataclass(frozen=True, slots=True)
class Touch(_Data):
    update_time: datetime


@dataclass(frozen=True, slots=True)
class TemperatureSample(_Celsius):
    celsius: float
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class Temperature(_Data, _Celsius):
    celsius: float
    samples: tuple[TemperatureSample, ...]
    is_backfilled: bool
    update_time: datetime


@dataclass(frozen=True, slots=True)
class ObjectPresent(_Data):
    state: str  # PRESENT | NOT_PRESENT
    update_time: datetime


@dataclass(frozen=True, slots=True)
class HumiditySample(_Celsius):
    celsius: float
    relative_humidity: float
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class Humidity(_Data, _Celsius):
    celsius: float
    relative_humidity: float
    samples: tuple[HumiditySample, ...]
    is_backfilled: bool
    update_time: datetime


@dataclass(frozen=True, slots=True)
class ObjectPresentCount(_Data):
    total: int
    update_time: datetime


@dataclass(frozen=True, slots=True)
class TouchCount(_Data):
    total: int
    update_time: datetime


@dataclass(frozen=True, slots=True)
class WaterPresent(_Data):
    state: str  # PRESENT | NOT_PRESENT
    update_time: datetime


@dataclass(frozen=True, slots=True)
class NetworkStatusCloudConnector:
    device_id: str
    signal_strength: int
    rssi: int


@dataclass(frozen=True, slots=True)
class NetworkStatus(_Data):
    signal_strength: int
    rssi: int
    cloud_connectors: tuple[NetworkStatusCloudConnector, ...]
    transmission_mode: str | None  # e.g. LOW_POWER_STANDARD_MODE; None when not sent
    update_time: datetime


@dataclass(frozen=True, slots=True)
class BatteryStatus(_Data):
    percentage: int
    update_time: datetime


@dataclass(frozen=True, slots=True)
class LabelsChanged(_Data):
    added: dict[str, str]
    modified: dict[str, str]
    removed: tuple[str, ...]
    update_time: datetime  # the event's timestamp: DT sends no updateTime here


@dataclass(frozen=True, slots=True)
class ConnectionStatus(_Data):
    connection: str  # SDS | ETHERNET | CELLULAR | OFFLINE
    available: tuple[str, ...]
    update_time: datetime


@dataclass(frozen=True, slots=True)
class StatusError:
    """One entry of a Cloud Connector's `errors` list (not modelled by the SDK)."""

    code: int
    message: str


@dataclass(frozen=True, slots=True)
class EthernetStatus(_Data):
    mac_address: str
    ip_address: str
    errors: tuple[StatusError, ...]
    update_time: datetime


@dataclass(frozen=True, slots=True)
class CellularStatus(_Data):
    signal_strength: int
    errors: tuple[StatusError, ...]
    update_time: datetime


@dataclass(frozen=True, slots=True)
class Co2(_Data):
    ppm: float
    update_time: datetime


@dataclass(frozen=True, slots=True)
class Pressure(_Data):
    pascal: float
    update_time: datetime


@dataclass(frozen=True, slots=True)
class Motion(_Data):
    state: str  # MOTION_DETECTED | NO_MOTION_DETECTED
    update_time: datetime


@dataclass(frozen=True, slots=True)
class DeskOccupancy(_Data):
    state: str  # OCCUPIED | NOT_OCCUPIED
    remarks: tuple[str, ...]
    update_time: datetime


@dataclass(frozen=True, slots=True)
class Contact(_Data):
    state: str  # OPEN | CLOSED
    update_time: datetime


@dataclass(frozen=True, slots=True)
class ProbeWireStatus(_Data):
    state: str  # INVALID_WIRE_CONFIGURATION | INVALID_COEFFICIENT_CONFIGURATION | TWO_WIRE | ...
    update_time: datetime


EventData = (
    Touch
    | Temperature
    | ObjectPresent
    | Humidity
    | ObjectPresentCount
    | TouchCount
    | WaterPresent
    | NetworkStatus
    | BatteryStatus
    | LabelsChanged
    | ConnectionStatus
    | EthernetStatus
    | CellularStatus
    | Co2
    | Pressure
    | Motion
    | DeskOccupancy
    | Contact
    | ProbeWireStatus
)

# --- field readers: each returns the value or raises BadShape --------------------------------


def _num(d: dict[str, Any], key: str) -> float:
    value = d.get(key)
    if type(value) is int or type(value) is float:
        return value
    raise BadShape(key)


def _int(d: dict[str, Any], key: str) -> int:
    value = d.get(key)
    if type(value) is int:
        return value
    raise BadShape(key)


def _str(d: dict[str, Any], key: str) -> str:
    value = d.get(key)
    if type(value) is str:
        return value
    raise BadShape(key)


def _list(d: dict[str, Any], key: str, item: type) -> list[Any]:
    """An optional list (absent = empty) whose items are all of type `item`."""
    value = d.get(key)
    if value is None:
        return []
    if type(value) is list:
        for v in value:
            if type(v) is not item:
                raise BadShape(key)
        return value
    raise BadShape(key)


def _str_map(d: dict[str, Any], key: str) -> dict[str, str]:
    value = d.get(key)
    if value is None:
        return {}
    if type(value) is dict and all(type(v) is str for v in value.values()):
        return value
    raise BadShape(key)


def _time(d: dict[str, Any], key: str, stamp: str, timestamp: datetime) -> datetime:
    """`d[key]` as a datetime; the event's timestamp when absent (or the same text)."""
    text = d.get(key)
    if text is None or text == stamp:
        return timestamp
    if type(text) is str:
        value = rfc3339(text)
        if value is not None:
            return value
    raise BadShape(key)


def _backfilled(d: dict[str, Any]) -> bool:
    value = d.get("isBackfilled", False)
    if type(value) is bool:
        return value
    raise BadShape("isBackfilled")


def _errors(d: dict[str, Any]) -> tuple[StatusError, ...]:
    return tuple(StatusError(_int(e, "code"), _str(e, "message")) for e in _list(d, "errors", dict))


# --- decoders: (data object, event timestamp as sent, event timestamp) -> typed data --------

Decoder = Callable[[dict[str, Any], str, datetime], EventData]


def _temperature(d: dict[str, Any], s: str, t: datetime) -> Temperature:
    samples = [
        TemperatureSample(_num(x, "value"), _time(x, "sampleTime", s, t))
        for x in _list(d, "samples", dict)
    ]
    updated = _time(d, "updateTime", s, t)
    return Temperature(_num(d, "value"), tuple(samples), _backfilled(d), updated)


def _humidity(d: dict[str, Any], s: str, t: datetime) -> Humidity:
    samples = [
        HumiditySample(
            _num(x, "temperature"), _num(x, "relativeHumidity"), _time(x, "sampleTime", s, t)
        )
        for x in _list(d, "samples", dict)
    ]
    updated = _time(d, "updateTime", s, t)
    celsius, humidity = _num(d, "temperature"), _num(d, "relativeHumidity")
    return Humidity(celsius, humidity, tuple(samples), _backfilled(d), updated)


def _network_status(d: dict[str, Any], s: str, t: datetime) -> NetworkStatus:
    connectors = tuple(
        NetworkStatusCloudConnector(_str(c, "id"), _int(c, "signalStrength"), _int(c, "rssi"))
        for c in _list(d, "cloudConnectors", dict)
    )
    mode = d.get("transmissionMode")
    if mode is not None and type(mode) is not str:
        raise BadShape("transmissionMode")
    updated = _time(d, "updateTime", s, t)
    return NetworkStatus(_int(d, "signalStrength"), _int(d, "rssi"), connectors, mode, updated)


def _labels_changed(d: dict[str, Any], s: str, t: datetime) -> LabelsChanged:
    added, modified = _str_map(d, "added"), _str_map(d, "modified")
    removed = tuple(_list(d, "removed", str))
    return LabelsChanged(added, modified, removed, _time(d, "updateTime", s, t))


def _one(cls: Callable[[Any, datetime], EventData], key: str, read: Callable[..., Any]) -> Decoder:
    """A decoder for the data objects with one field besides `updateTime`."""

    def decode(d: dict[str, Any], s: str, t: datetime) -> EventData:
        return cls(read(d, key), _time(d, "updateTime", s, t))

    return decode


DECODERS: dict[str, Decoder] = {
    "touch": lambda d, s, t: Touch(_time(d, "updateTime", s, t)),
    "temperature": _temperature,
    "objectPresent": _one(ObjectPresent, "state", _str),
    "humidity": _humidity,
    "objectPresentCount": _one(ObjectPresentCount, "total", _int),
    "touchCount": _one(TouchCount, "total", _int),
    "waterPresent": _one(WaterPresent, "state", _str),
    "networkStatus": _network_status,
    "batteryStatus": _one(BatteryStatus, "percentage", _int),
    "labelsChanged": _labels_changed,
    "connectionStatus": lambda d, s, t: ConnectionStatus(
        _str(d, "connection"), tuple(_list(d, "available", str)), _time(d, "updateTime", s, t)
    ),
    "ethernetStatus": lambda d, s, t: EthernetStatus(
        _str(d, "macAddress"), _str(d, "ipAddress"), _errors(d), _time(d, "updateTime", s, t)
    ),
    "cellularStatus": lambda d, s, t: CellularStatus(
        _int(d, "signalStrength"), _errors(d), _time(d, "updateTime", s, t)
    ),
    "co2": _one(Co2, "ppm", _num),
    "pressure": _one(Pressure, "pascal", _num),
    "motion": _one(Motion, "state", _str),
    "deskOccupancy": lambda d, s, t: DeskOccupancy(
        _str(d, "state"), tuple(_list(d, "remarks", str)), _time(d, "updateTime", s, t)
    ),
    "contact": _one(Contact, "state", _str),
    "probeWireStatus": _one(ProbeWireStatus, "state", _str),
}

#: The types whose `data` is `{"<eventType>": {...}}`; `labelsChanged` is the exception.
KEYED: frozenset[str] = frozenset(DECODERS) - {"labelsChanged"}
