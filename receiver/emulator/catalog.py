"""DT's vocabulary: device types, event types, which device emits what, and event data.

The data builders return each event type's `data` object exactly as DT pushes it
(DT-PROTOCOL §1.3): keyed by the event type with an ``updateTime`` inside, except
``labelsChanged``. Values come from the arguments, so the seed and the virtual sensors
choose them; times are RFC 3339 strings (`timestamps.format_rfc3339`).
"""

from __future__ import annotations

from typing import Any

#: The 19 event types of the official SDK 1.7.3, spelled as DT spells them.
EVENT_TYPES: tuple[str, ...] = (
    "touch",
    "temperature",
    "objectPresent",
    "humidity",
    "objectPresentCount",
    "touchCount",
    "waterPresent",
    "networkStatus",
    "batteryStatus",
    "labelsChanged",
    "connectionStatus",
    "ethernetStatus",
    "cellularStatus",
    "co2",
    "pressure",
    "motion",
    "deskOccupancy",
    "contact",
    "probeWireStatus",
)

#: Device types (`metadata.deviceType`, a device's `type`).
DEVICE_TYPES: tuple[str, ...] = (
    "temperature",
    "proximity",
    "touch",
    "humidity",
    "proximityCounter",
    "touchCounter",
    "waterDetector",
    "ccon",
    "co2",
    "motion",
    "deskOccupancy",
    "contact",
)

CLOUD_CONNECTOR = "ccon"

_SENSOR_COMMON = ("touch", "networkStatus", "batteryStatus")

#: The event types each device type emits (besides ``labelsChanged``, which any device can).
EMITS: dict[str, tuple[str, ...]] = {
    "temperature": ("temperature", "probeWireStatus", *_SENSOR_COMMON),
    "proximity": ("objectPresent", *_SENSOR_COMMON),
    "touch": _SENSOR_COMMON,
    "humidity": ("humidity", *_SENSOR_COMMON),
    "proximityCounter": ("objectPresentCount", *_SENSOR_COMMON),
    "touchCounter": ("touchCount", *_SENSOR_COMMON),
    "waterDetector": ("waterPresent", *_SENSOR_COMMON),
    "ccon": ("connectionStatus", "ethernetStatus", "cellularStatus"),
    "co2": ("co2", "pressure", *_SENSOR_COMMON),
    "motion": ("motion", *_SENSOR_COMMON),
    "deskOccupancy": ("deskOccupancy", *_SENSOR_COMMON),
    "contact": ("contact", *_SENSOR_COMMON),
}

#: Event types that are not kept in a device's `reported` (they carry no state).
NOT_REPORTED = frozenset({"labelsChanged"})


def touch(at: str) -> dict[str, Any]:
    return {"touch": {"updateTime": at}}


def temperature(
    at: str, celsius: float, samples: list[tuple[float, str]] | None = None
) -> dict[str, Any]:
    """`samples` are (value, sampleTime), newest first; by default the one reading itself."""
    rows = samples if samples is not None else [(celsius, at)]
    return {
        "temperature": {
            "value": celsius,
            "updateTime": at,
            "samples": [{"value": value, "sampleTime": when} for value, when in rows],
            "isBackfilled": False,
        }
    }


def humidity(at: str, celsius: float, relative_humidity: float) -> dict[str, Any]:
    return {
        "humidity": {
            "temperature": celsius,
            "relativeHumidity": relative_humidity,
            "updateTime": at,
            "samples": [
                {"temperature": celsius, "relativeHumidity": relative_humidity, "sampleTime": at}
            ],
            "isBackfilled": False,
        }
    }


def state_event(event_type: str, at: str, state: str) -> dict[str, Any]:
    """objectPresent, waterPresent, motion, contact, probeWireStatus: ``{"state", "updateTime"}``."""
    return {event_type: {"state": state, "updateTime": at}}


def count(event_type: str, at: str, total: int) -> dict[str, Any]:
    """objectPresentCount, touchCount: ``{"total", "updateTime"}``."""
    return {event_type: {"total": total, "updateTime": at}}


def desk_occupancy(at: str, state: str, remarks: list[str] | None = None) -> dict[str, Any]:
    return {"deskOccupancy": {"state": state, "updateTime": at, "remarks": list(remarks or [])}}


def network_status(
    at: str, cloud_connector_id: str, signal_strength: int, rssi: int, *, boost: bool = False
) -> dict[str, Any]:
    """One Cloud Connector per event, as a data connector delivers it."""
    return {
        "networkStatus": {
            "signalStrength": signal_strength,
            "rssi": rssi,
            "updateTime": at,
            "cloudConnectors": [
                {"id": cloud_connector_id, "signalStrength": signal_strength, "rssi": rssi}
            ],
            "transmissionMode": "HIGH_POWER_BOOST_MODE" if boost else "LOW_POWER_STANDARD_MODE",
        }
    }


def battery_status(at: str, percentage: int) -> dict[str, Any]:
    return {"batteryStatus": {"percentage": percentage, "updateTime": at}}


def labels_changed(
    added: dict[str, str], modified: dict[str, str], removed: list[str]
) -> dict[str, Any]:
    """Not keyed and without ``updateTime`` (the one exception)."""
    return {"added": dict(added), "modified": dict(modified), "removed": list(removed)}


def connection_status(at: str, connection: str, available: list[str]) -> dict[str, Any]:
    return {
        "connectionStatus": {
            "connection": connection,
            "available": list(available),
            "updateTime": at,
        }
    }


def ethernet_status(at: str, mac_address: str, ip_address: str) -> dict[str, Any]:
    return {
        "ethernetStatus": {
            "macAddress": mac_address,
            "ipAddress": ip_address,
            "errors": [],
            "updateTime": at,
        }
    }


def cellular_status(at: str, signal_strength: int) -> dict[str, Any]:
    return {"cellularStatus": {"signalStrength": signal_strength, "errors": [], "updateTime": at}}


def co2(at: str, ppm: int) -> dict[str, Any]:
    return {"co2": {"ppm": ppm, "updateTime": at}}


def pressure(at: str, pascal: int) -> dict[str, Any]:
    return {"pressure": {"pascal": pascal, "updateTime": at}}
