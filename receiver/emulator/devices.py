"""Devices and their event history: DT's device JSON, `reported`, and history queries.

Pure: events are DT's event objects (``eventId``, ``targetName``, ``eventType``, ``data``,
``timestamp``) as plain dicts, kept in time order per device. Appending an event updates
the device's `reported` (when it is at least as new as what is there) and, for
``labelsChanged``, its labels.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from receiver.emulator.catalog import NOT_REPORTED
from receiver.emulator.timestamps import parse_rfc3339

#: How long DT keeps event history (D-intro: 31 days).
HISTORY_RETENTION_SECONDS = 31 * 24 * 3600


def make_event(
    event_id: str,
    project_id: str,
    device_id: str,
    event_type: str,
    data: dict[str, Any],
    timestamp: str,
) -> dict[str, Any]:
    """DT's event object, keys in DT's order."""
    return {
        "eventId": event_id,
        "targetName": f"projects/{project_id}/devices/{device_id}",
        "eventType": event_type,
        "data": data,
        "timestamp": timestamp,
    }


@dataclass
class Device:
    """A virtual sensor or Cloud Connector of a project, with its history."""

    id: str
    project_id: str
    type: str
    labels: dict[str, str]
    product_number: str = ""
    reported: dict[str, Any] = field(default_factory=dict)
    _times: list[float] = field(default_factory=list, repr=False)
    _events: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _reported_at: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return f"projects/{self.project_id}/devices/{self.id}"

    def to_json(self) -> dict[str, Any]:
        """DT's device JSON (`reported` holds the newest data of each event type)."""
        return {
            "name": self.name,
            "type": self.type,
            "labels": dict(self.labels),
            "productNumber": self.product_number,
            "reported": {key: value for key, value in self.reported.items()},
        }

    def metadata(self) -> dict[str, str]:
        """The `metadata` object of a push about this device."""
        return {
            "deviceId": self.id,
            "projectId": self.project_id,
            "deviceType": self.type,
            "productNumber": self.product_number,
        }

    def append(self, event: dict[str, Any]) -> None:
        """Add one event to the history (in time order) and update `reported` and labels."""
        at = parse_rfc3339(event["timestamp"])
        index = bisect.bisect_right(self._times, at)
        self._times.insert(index, at)
        self._events.insert(index, event)
        event_type = event["eventType"]
        if event_type == "labelsChanged":
            self._apply_labels(event["data"])
        elif event_type not in NOT_REPORTED and at >= self._reported_at.get(
            event_type, float("-inf")
        ):
            inner = event["data"].get(event_type) if isinstance(event["data"], dict) else None
            if inner is not None:
                self.reported[event_type] = inner
                self._reported_at[event_type] = at

    def history(
        self, start: float, end: float, event_types: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """Events with start ≤ timestamp ≤ end, newest first, optionally of some types only."""
        wanted = frozenset(event_types) if event_types else None
        lo = bisect.bisect_left(self._times, start)
        hi = bisect.bisect_right(self._times, end)
        return [
            event
            for event in reversed(self._events[lo:hi])
            if wanted is None or event["eventType"] in wanted
        ]

    def latest_events(self) -> list[dict[str, Any]]:
        """The newest event of each type this device has (what `:sync` re-pushes)."""
        newest: dict[str, dict[str, Any]] = {}
        for event in self._events:
            newest[event["eventType"]] = event
        return list(newest.values())

    def prune(self, before: float) -> None:
        """Forget events older than `before` (DT keeps 31 days)."""
        cut = bisect.bisect_left(self._times, before)
        if cut:
            del self._times[:cut]
            del self._events[:cut]

    def __len__(self) -> int:
        return len(self._events)

    def _apply_labels(self, data: dict[str, Any]) -> None:
        for key in data.get("removed", []):
            self.labels.pop(key, None)
        self.labels.update(data.get("added", {}))
        self.labels.update(data.get("modified", {}))


def select_devices(
    devices: Iterable[Device],
    *,
    device_ids: Iterable[str] = (),
    device_types: Iterable[str] = (),
    label_filters: Iterable[str] = (),
    query: str = "",
    order_by: str = "",
) -> list[Device]:
    """The devices a list request asks for (filters as the official SDK sends them).

    `label_filters` are ``key=value`` (that value) or ``key`` / ``key=`` (key present);
    `query` matches ids, types and label values by substring; `order_by` is a dotted path
    into the device JSON (``reported.temperature.value``), ``-`` first for descending,
    devices without that field last.
    """
    ids = frozenset(device_ids)
    types = frozenset(device_types)
    labels = [item.partition("=") for item in label_filters]
    needle = query.lower()
    chosen = [
        device
        for device in devices
        if (not ids or device.id in ids)
        and (not types or device.type in types)
        and all(
            key in device.labels and (not value or device.labels[key] == value)
            for key, _, value in labels
        )
        and (not needle or _matches(device, needle))
    ]
    if order_by:
        descending = order_by.startswith("-")
        path = order_by.lstrip("-").split(".")
        present = [(d, _dig(d.to_json(), path)) for d in chosen]
        with_value = [(d, v) for d, v in present if v is not None]
        with_value.sort(key=lambda pair: _sort_key(pair[1]), reverse=descending)
        chosen = [d for d, _ in with_value] + [d for d, v in present if v is None]
    return chosen


def _matches(device: Device, needle: str) -> bool:
    haystack = [device.id, device.type, *device.labels.keys(), *device.labels.values()]
    return any(needle in text.lower() for text in haystack)


def _dig(obj: Any, path: list[str]) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, int | float):
        return (0, value)
    return (1, str(value))
