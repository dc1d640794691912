"""DT's event-type names, as the official SDK spells them (``disruptive.events.TOUCH`` ...).

Use them in a connector's ``event_types`` or an event-history query; DT adds types over time,
so any other string is passed through unchanged.
"""

from __future__ import annotations

TOUCH = "touch"
TEMPERATURE = "temperature"
OBJECT_PRESENT = "objectPresent"
HUMIDITY = "humidity"
OBJECT_PRESENT_COUNT = "objectPresentCount"
TOUCH_COUNT = "touchCount"
WATER_PRESENT = "waterPresent"
NETWORK_STATUS = "networkStatus"
BATTERY_STATUS = "batteryStatus"
LABELS_CHANGED = "labelsChanged"
CONNECTION_STATUS = "connectionStatus"
ETHERNET_STATUS = "ethernetStatus"
CELLULAR_STATUS = "cellularStatus"
CO2 = "co2"
PRESSURE = "pressure"
MOTION = "motion"
DESK_OCCUPANCY = "deskOccupancy"
CONTACT = "contact"
PROBE_WIRE_STATUS = "probeWireStatus"

#: Every event type of SDK 1.7.3, in its order.
EVENT_TYPES: tuple[str, ...] = (
    TOUCH,
    TEMPERATURE,
    OBJECT_PRESENT,
    HUMIDITY,
    OBJECT_PRESENT_COUNT,
    TOUCH_COUNT,
    WATER_PRESENT,
    NETWORK_STATUS,
    BATTERY_STATUS,
    LABELS_CHANGED,
    CONNECTION_STATUS,
    ETHERNET_STATUS,
    CELLULAR_STATUS,
    CO2,
    PRESSURE,
    MOTION,
    DESK_OCCUPANCY,
    CONTACT,
    PROBE_WIRE_STATUS,
)
