"""The connector monitor, and `serve --bootstrap`'s connector management (spec §8, §10).

`Monitor.round()` is one poll: the reconcile of `receiver.connector` (so drift made in DT —
URL, secret, event types, labels, display name — is restored with one PATCH, and a deleted
connector is created again), then ``:metrics``; it exports the connector gauges
(``dtpush_connector_up{connector,status}`` 1 on the current status and 0 on the others,
success and error counts, p99 latency, labelled with the connector id) and logs every
status change. A ``SYSTEM_DISABLED`` connector is set ``ACTIVE`` again when re-enabling is
allowed and the receiver is ready, and then what DT dropped meanwhile is backfilled from
when the connector was last seen ``ACTIVE`` (or the newest event in the inbox, when that is
earlier; `receiver.backfill.outage_window`). A ``USER_DISABLED`` connector is left as a person set it: logged and exported.

`Monitor.start()` runs rounds every `interval` seconds in a background task until `stop()`.
A round that cannot reach DT logs one warning and the next round tries again.

`Bootstrap` is what ``serve --bootstrap`` runs once the receiver listens: the reconcile
once (its errors end start-up), the start-up backfill when the inbox's newest event was
received beyond DT's 12 h horizon (`inbox_snapshot`, read before the receiver listened),
and the monitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from receiver.backfill import (
    Backfill,
    logging_progress,
    needs_startup_backfill,
    outage_window,
)
from receiver.config import Settings
from receiver.connector import Desired, Reconciled, reconcile
from receiver.dt import (
    ACTIVE,
    STATUSES,
    SYSTEM_DISABLED,
    USER_DISABLED,
    AmbiguousConnectors,
    Client,
    DataConnector,
    DtApiError,
    Metric,
)
from receiver.errors import Unavailable
from receiver.inbox.base import Inbox
from receiver.metrics import Metrics
from receiver.service import Service

log = logging.getLogger("dtpush.monitor")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Snapshot:
    """What the inbox held before the receiver started listening."""

    newest_received: datetime | None
    last_event_by_device: dict[str, datetime] = field(default_factory=dict)


async def inbox_snapshot(inbox: Inbox) -> Snapshot:
    return Snapshot(await inbox.newest_received_at(), await inbox.last_event_time_by_device())


class Monitor:
    """Polls the managed connector; see the module docstring."""

    def __init__(
        self,
        client: Client,
        desired: Desired,
        *,
        metrics: Metrics,
        ready: Callable[[], bool],
        inbox: Inbox | None = None,
        backfill: Backfill | None = None,
        reenable: bool = True,
        interval: float = 60.0,
        clock: Clock = utc_now,
    ) -> None:
        self.client = client
        self.desired = desired
        self.metrics = metrics
        self.ready = ready
        self.inbox = inbox
        self.backfill = backfill
        self.reenable = reenable
        self.interval = interval
        self.clock = clock
        self.connector_id: str | None = None
        self.status: str | None = None
        self.last_seen_active: datetime | None = None
        self.rounds = 0
        self._waiting_logged = False
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_service(
        cls, client: Client, settings: Settings, service: Service, *, clock: Clock = utc_now
    ) -> Monitor:
        """The monitor of `serve --bootstrap`, observing `service`'s readiness and inbox."""
        backfill = None
        if settings.connector.backfill:
            backfill = Backfill.from_settings(
                client,
                settings,
                accept=service.accept,
                metrics=service.metrics,
                progress=logging_progress(),
            )
        return cls(
            client,
            Desired.from_settings(settings),
            metrics=service.metrics,
            ready=lambda: not service.not_ready_reasons(),
            inbox=service.inbox,
            backfill=backfill,
            reenable=settings.connector.reenable,
            interval=settings.connector.monitor_interval_seconds,
            clock=clock,
        )

    # -- one round -----------------------------------------------------------------------

    async def round(self) -> DataConnector | None:
        """Poll once; the connector as last seen (None when DT could not be read)."""
        self.rounds += 1
        try:
            reconciled = await reconcile(self.client, self.desired)
        except AmbiguousConnectors as exc:
            log.error(
                "connector_ambiguous",
                extra={"fields": {"display_name": exc.display_name, "ids": ",".join(exc.ids)}},
            )
            return None
        except DtApiError as exc:
            log.warning("monitor_round_failed", extra={"fields": {"error": _one_line(exc)}})
            return None
        dc = reconciled.connector
        self._observe(dc)
        try:
            metric = await DataConnector.get_metrics(
                dc.data_connector_id, self.desired.project_id, client=self.client
            )
        except DtApiError as exc:
            log.warning("connector_metrics_failed", extra={"fields": {"error": _one_line(exc)}})
        else:
            self._export_metric(dc.data_connector_id, metric)
        if dc.status == SYSTEM_DISABLED:
            healed = await self._heal(dc)
            if healed is not None:
                dc = healed
        return dc

    def _observe(self, dc: DataConnector) -> None:
        """Track the connector and its status: gauges, change logs, last seen ACTIVE."""
        if self.connector_id not in (None, dc.data_connector_id):
            self._forget(self.connector_id or "")
        self.connector_id = dc.data_connector_id
        for status in {*STATUSES, dc.status}:
            self.metrics.connector_up.labels(dc.data_connector_id, status).set(
                1 if status == dc.status else 0
            )
        if dc.status != self.status:
            fields = {"connector": dc.data_connector_id, "status": dc.status}
            if self.status is not None:
                fields["previous"] = self.status
            if dc.status == ACTIVE:
                log.info("connector_status", extra={"fields": fields})
            elif dc.status == USER_DISABLED:
                log.warning(
                    "connector_status",
                    extra={"fields": {**fields, "note": "disabled by a user; left as it is"}},
                )
            else:
                log.warning("connector_status", extra={"fields": fields})
            self.status = dc.status
        if dc.status == ACTIVE:
            self.last_seen_active = self.clock()
            self._waiting_logged = False

    def _export_metric(self, connector_id: str, metric: Metric) -> None:
        self.metrics.connector_success_count.labels(connector_id).set(metric.success_count)
        self.metrics.connector_error_count.labels(connector_id).set(metric.error_count)
        self.metrics.connector_latency_p99.labels(connector_id).set(metric.latency_seconds)

    def _forget(self, connector_id: str) -> None:
        """Drop the gauges of a connector no longer managed."""
        metrics = self.metrics
        with contextlib.suppress(KeyError):
            for status in STATUSES:
                metrics.connector_up.remove(connector_id, status)
        for gauge in (
            metrics.connector_success_count,
            metrics.connector_error_count,
            metrics.connector_latency_p99,
        ):
            with contextlib.suppress(KeyError):
                gauge.remove(connector_id)

    async def _heal(self, dc: DataConnector) -> DataConnector | None:
        """Re-enable a SYSTEM_DISABLED connector when allowed and ready; then backfill."""
        if not self.reenable or not self.ready():
            if not self._waiting_logged:
                reason = "connector.reenable is false" if not self.reenable else "not ready"
                log.warning(
                    "connector_not_reenabled",
                    extra={"fields": {"connector": dc.data_connector_id, "reason": reason}},
                )
                self._waiting_logged = True
            return None
        # read where the gap starts before DT pushes again
        reference = self.last_seen_active
        last_by_device: dict[str, datetime] = {}
        if self.inbox is not None:
            newest = await self.inbox.newest_received_at()
            if newest is not None and (reference is None or newest < reference):
                reference = newest
            last_by_device = await self.inbox.last_event_time_by_device()
        try:
            enabled = await DataConnector.update_data_connector(
                dc.data_connector_id, self.desired.project_id, status=ACTIVE, client=self.client
            )
        except DtApiError as exc:
            log.warning("connector_reenable_failed", extra={"fields": {"error": _one_line(exc)}})
            return None
        log.info("connector_reenabled", extra={"fields": {"connector": dc.data_connector_id}})
        self._observe(enabled)
        if self.backfill is None:
            return enabled
        if reference is None:
            log.warning(
                "backfill_skipped",
                extra={"fields": {"reason": "no event received and never seen ACTIVE"}},
            )
            return enabled
        since, starts = outage_window(reference, last_by_device)
        await run_backfill(self.backfill, since, self.clock(), starts)
        return enabled

    # -- the background task -------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the background task is on."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="dtpush-connector-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        while not self._stopping.is_set():
            await self.round()
            with contextlib.suppress(TimeoutError):  # not wait_for: see emulator/pusher.py
                async with asyncio.timeout(self.interval):
                    await self._stopping.wait()


async def run_backfill(
    backfill: Backfill,
    since: datetime,
    until: datetime,
    since_by_device: dict[str, datetime] | None = None,
) -> None:
    """Run a triggered backfill; failures are logged (the next trigger or a person retries)."""
    try:
        await backfill.run(since, until, since_by_device=since_by_device)
    except (DtApiError, Unavailable) as exc:
        log.warning("backfill_failed", extra={"fields": {"error": _one_line(exc)}})


class Bootstrap:
    """`serve --bootstrap` once the receiver listens: ensure, start-up backfill, monitor."""

    def __init__(
        self,
        client: Client,
        settings: Settings,
        service: Service,
        *,
        snapshot: Snapshot | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.settings = settings
        self.snapshot = snapshot
        self.clock = clock
        self.monitor = Monitor.for_service(client, settings, service, clock=clock)
        self.startup_backfill: asyncio.Task[None] | None = None

    async def start(self) -> Reconciled:
        """Reconcile once (raises the client's errors, nothing started then), then start the
        start-up backfill when needed and the monitor."""
        monitor = self.monitor
        reconciled = await reconcile(monitor.client, monitor.desired)
        log.info("connector_ensured", extra={"fields": {"result": reconciled.describe()}})
        monitor._observe(reconciled.connector)
        snapshot = self.snapshot
        now = self.clock()
        if (
            monitor.backfill is not None
            and snapshot is not None
            and snapshot.newest_received is not None
            and needs_startup_backfill(snapshot.newest_received, now)
        ):
            since, starts = outage_window(snapshot.newest_received, snapshot.last_event_by_device)
            log.info("backfill_triggered", extra={"fields": {"reason": "receiver was down > 12 h"}})
            self.startup_backfill = asyncio.create_task(
                run_backfill(monitor.backfill, since, now, starts),
                name="dtpush-startup-backfill",
            )
        monitor.start()
        return reconciled

    async def stop(self) -> None:
        await self.monitor.stop()
        task, self.startup_backfill = self.startup_backfill, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


__all__ = ["Bootstrap", "Monitor", "Snapshot", "inbox_snapshot", "run_backfill", "utc_now"]
