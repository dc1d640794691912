"""Backfill: fetch from DT's event history what the connector did not deliver (spec §8).

DT drops what it could not push within 12 hours, and everything while a connector is
``SYSTEM_DISABLED``; its event history keeps 31 days. A backfill lists every device of the
project, fetches each one's events in the window (all pages, the event types the connector
forwards), turns each into the body DT would have pushed — ``{"event", "labels",
"metadata"}``, the labels limited to the connector's label keys, as the device has them
now — and hands it to `accept` (the service's, or the inbox's `put`), whose dedup by
``eventId`` drops what is already held. New events are counted in
``dtpush_backfilled_events_total``.

Triggers (spec §13): after the monitor re-enables a ``SYSTEM_DISABLED`` connector, and at
``serve --bootstrap`` start when the newest event in the inbox was received more than
`HORIZON` ago; `dtpush backfill` by hand. After an outage (`outage_window`) a device's
window starts at the outage's start, or earlier at that device's newest event in the inbox,
less `OVERLAP`, so that events DT had in flight, retried or reordered when delivery stopped
are not left behind; the overlap costs only duplicates, which the inbox drops. An event
older than the inbox's dedup window that was already forgotten is taken as new again.

Pure helpers: `push_body`, `parse_time`, `outage_window`, `needs_startup_backfill`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from receiver.config import Settings
from receiver.dt import Client, Device, EventHistory, NotFound
from receiver.errors import NotAnEvent
from receiver.events import Event, parse
from receiver.metrics import Metrics

log = logging.getLogger("dtpush.backfill")

#: DT redelivers for 12 hours; a receiver down longer than that has lost events.
HORIZON = timedelta(hours=12)
#: How far before an outage's start its window reaches (pushes in flight or being retried).
OVERLAP = timedelta(minutes=15)
#: How many events of one page are put at once (they share the inbox's grouped commits).
PUT_CHUNK = 256

Accept = Callable[[Event], Awaitable[bool]]


@dataclass(frozen=True)
class Progress:
    """Where a running backfill is: devices done of all, events fetched, new ones."""

    devices_done: int
    devices_total: int
    fetched: int
    new: int


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class Result:
    """A finished backfill: devices read, events fetched, new ones, bodies that were not
    events (skipped)."""

    devices: int
    fetched: int
    new: int
    skipped: int = 0


# -- pure --------------------------------------------------------------------------------


def push_body(event: Mapping[str, Any], device: Device, labels: Collection[str]) -> bytes:
    """The push DT would have sent for a history `event` of `device` (compact JSON)."""
    return orjson.dumps(
        {
            "event": event,
            "labels": {key: device.labels[key] for key in labels if key in device.labels},
            "metadata": {
                "deviceId": device.device_id,
                "projectId": device.project_id,
                "deviceType": device.device_type,
                "productNumber": device.product_number,
            },
        }
    )


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, now: datetime) -> datetime:
    """An RFC 3339 time, or a duration back from `now` (``30m``, ``12h``, ``7d``; also
    ``s`` and ``w``), as an aware UTC datetime. `ValueError` saying what is accepted."""
    match = _DURATION.match(text)
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
        return (now - timedelta(seconds=seconds)).astimezone(UTC)
    try:
        when = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ValueError(
            f"{text!r} is neither an RFC 3339 time with an offset "
            "(2024-05-01T12:00:00Z) nor a duration such as 30m, 12h or 7d"
        )
    return when.astimezone(UTC)


def outage_window(
    reference: datetime, last_event_by_device: Mapping[str, datetime]
) -> tuple[datetime, dict[str, datetime]]:
    """Where the window of an outage that began at `reference` starts: for every device
    (`since`), and for the devices whose newest event in the inbox is earlier (`starts`);
    each less `OVERLAP`."""
    since = reference - OVERLAP
    starts = {
        device: when - OVERLAP
        for device, when in last_event_by_device.items()
        if when - OVERLAP < since
    }
    return since, starts


def needs_startup_backfill(newest_received: datetime | None, now: datetime) -> bool:
    """Whether the inbox's newest receive time is beyond DT's redelivery horizon (an empty
    inbox needs nothing: there is no gap to speak of)."""
    return newest_received is not None and now - newest_received > HORIZON


# -- the fetch ---------------------------------------------------------------------------


class Backfill:
    """Fetches a window of the project's history into `accept`."""

    def __init__(
        self,
        client: Client,
        *,
        project_id: str,
        accept: Accept,
        event_types: Sequence[str] = (),
        labels: Collection[str] = (),
        metrics: Metrics | None = None,
        progress: ProgressCallback | None = None,
        page_size: int | None = None,
    ) -> None:
        self.client = client
        self.project_id = project_id
        self.accept = accept
        self.event_types = tuple(event_types)
        self.labels = tuple(labels)
        self.metrics = metrics
        self.progress = progress
        self.page_size = page_size

    @classmethod
    def from_settings(
        cls,
        client: Client,
        settings: Settings,
        *,
        accept: Accept,
        metrics: Metrics | None = None,
        progress: ProgressCallback | None = None,
    ) -> Backfill:
        """The backfill of `connector.project_id`, for the connector's event types and labels."""
        return cls(
            client,
            project_id=settings.connector.project_id or "",
            accept=accept,
            event_types=settings.connector.event_types,
            labels=settings.connector.labels,
            metrics=metrics,
            progress=progress,
        )

    async def run(
        self,
        since: datetime,
        until: datetime,
        *,
        since_by_device: Mapping[str, datetime] | None = None,
    ) -> Result:
        """Fetch every device's events from `since` (or its own start in `since_by_device`)
        to `until`, and accept each one."""
        starts = since_by_device or {}
        devices = await Device.list_devices(self.project_id, client=self.client)
        log.info(
            "backfill_started",
            extra={
                "fields": {
                    "since": _text(since),
                    "until": _text(until),
                    "devices": len(devices),
                }
            },
        )
        fetched = new = skipped = 0
        for done, device in enumerate(devices, start=1):
            start = min(starts.get(device.device_id, since), until)
            try:
                async for page in EventHistory.pages(
                    device.device_id,
                    self.project_id,
                    self.event_types or None,
                    start,
                    until,
                    page_size=self.page_size,
                    client=self.client,
                ):
                    fetched += len(page)
                    added, bad = await self._accept_page(page, device)
                    new += added
                    skipped += bad
            except NotFound:
                log.info("backfill_device_gone", extra={"fields": {"device": device.device_id}})
            if self.progress is not None:
                self.progress(Progress(done, len(devices), fetched, new))
        log.info(
            "backfill_done",
            extra={"fields": {"devices": len(devices), "fetched": fetched, "new": new}},
        )
        return Result(len(devices), fetched, new, skipped)

    async def _accept_page(self, page: list[dict[str, Any]], device: Device) -> tuple[int, int]:
        events: list[Event] = []
        skipped = 0
        for item in page:
            try:
                events.append(parse(push_body(item, device, self.labels)))
            except NotAnEvent as exc:
                skipped += 1
                log.warning(
                    "backfill_event_skipped",
                    extra={"fields": {"device": device.device_id, "reason": exc.reason}},
                )
        new = 0
        for first in range(0, len(events), PUT_CHUNK):
            chunk = events[first : first + PUT_CHUNK]
            results = await asyncio.gather(*(self.accept(event) for event in chunk))
            added = sum(1 for result in results if result)
            new += added
            if self.metrics is not None and added:
                self.metrics.backfilled_events.inc(added)
        return new, skipped


def logging_progress(every: float = 0.1) -> ProgressCallback:
    """A progress callback that logs ``backfill_progress`` about every `every` of the devices."""

    def report(progress: Progress) -> None:
        step = max(1, int(progress.devices_total * every))
        if progress.devices_done % step == 0 or progress.devices_done == progress.devices_total:
            log.info(
                "backfill_progress",
                extra={
                    "fields": {
                        "devices": f"{progress.devices_done}/{progress.devices_total}",
                        "fetched": progress.fetched,
                        "new": progress.new,
                    }
                },
            )

    return report


def _text(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


__all__ = [
    "HORIZON",
    "OVERLAP",
    "Accept",
    "Backfill",
    "Progress",
    "Result",
    "logging_progress",
    "needs_startup_backfill",
    "outage_window",
    "parse_time",
    "push_body",
]
