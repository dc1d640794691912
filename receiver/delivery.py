"""Delivery: every pending (event, handler) pair reaches its handler at least once (spec §5).

Each handler has its own *lane*: a bounded queue and `concurrency` workers. Lanes share
nothing, so a slow or failing handler never delays another; a failed attempt is written
back to the inbox with the time it is due again (see `receiver.backoff`) and the worker
moves on at once: no worker ever waits out a backoff.

A handler that overrides `handle_batch` gets first attempts in batches: a worker takes the
first queued delivery and the first attempts queued behind it (up to the handler's
`max_batch`) into one call. Retries always go one per call, so a batch that failed because
of one event is retried event by event and only that one keeps failing.

Where deliveries come from:

- `notify(event)`: the view hands over an event it has just made durable. Its deliveries
  were inserted already leased to this dispatcher (`Inbox.attach`), so the first attempt
  runs at once, in-process, on the parsed `Event`, and no other worker can claim them.
- the poller: every `poll_interval` seconds (sooner when a lane drains) it claims due
  deliveries from the inbox: retries, replays, anything left from before a restart, and
  events ingested by another process (`dtpush serve --no-workers` + `dtpush worker`).
  A claim leases the rows for `lease_seconds`; events are re-parsed from the stored body.

A starting engine gives back at once the leases of owners that were processes of this host
and no longer run (a `serve` killed with SIGKILL, say); other leases run out by themselves.

A lease outlives any attempt that starts in time: a lane holds at most `2 * concurrency`
waiting deliveries and an attempt is cut at `handler_timeout`, so a delivery starts within
two timeouts of being leased and ends within three; `lease_seconds` is three timeouts plus
ten seconds, and a delivery is not started unless it can end five seconds before its lease
does (otherwise it becomes due again when the lease expires, and whoever claims it then
delivers it).

Recording outcomes: after the handler returns, the success is queued to the inbox and made
durable by its next grouped commit (normally a few milliseconds later); failures and dead
letters likewise. The window: if the process dies after `handler.handle(event)` returned
and before that commit, the inbox still holds the delivery leased to the dead process; it
becomes due when the lease expires (`lease_seconds` after it was leased) and the handler
gets that event once more. A worker takes its next deliveries only after its last successes
are committed, and a lane never has more than `concurrency` deliveries in calls or waiting
for that commit (batches included), so a kill repeats at most `concurrency` deliveries per
handler. Besides calls that were cut (a timeout, or a stop after its grace), that is the
only way a handler sees an event it already took twice; it never happens on a graceful stop
(`stop` flushes), and never affects the other handlers.

Graceful stop: no new work is taken; queued deliveries are left pending; running calls get
`grace` seconds to finish, then are cancelled (and stay pending); every lease is given back
and everything recorded is committed before `stop` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping

from receiver import events
from receiver.backoff import Backoff
from receiver.errors import Unavailable
from receiver.inbox.base import Delivery, Inbox
from receiver.metrics import Metrics
from receiver.registry import Handler

log = logging.getLogger("dtpush.delivery")

_ERROR_CHARS = 300
_NEVER = float("inf")
# Seconds a call must end before its lease does. A fresh delivery's deadline is counted from
# `notify`, a little after the commit that set the lease in the file.
_LEASE_MARGIN = 5.0


def owner_is_gone(owner: str) -> bool:
    """Whether a lease owner (`host:pid:tag`) was a process of this host that no longer runs.

    Owners elsewhere, or whose process still runs (or whose pid was reused), keep their
    leases until they expire: a wrong "gone" could deliver twice at once, a wrong "alive"
    only waits.
    """
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def describe(exc: BaseException, timeout: float) -> str:
    """The short error text kept with a failed delivery: class and message, truncated."""
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"TimeoutError: handler took longer than {timeout:g}s"
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "…"


class _Lane:
    """One handler's waiting deliveries and idle workers.

    `limit` bounds the deliveries taken by workers and not yet recorded (in a call, or
    awaiting the commit of their success); `batch` is the most one call takes (1 for a
    handler without `handle_batch`).
    """

    def __init__(
        self, name: str, handler: Handler, metrics: Metrics, capacity: int, limit: int
    ) -> None:
        self.name = name
        self.handler = handler
        self.capacity = capacity
        self.low_water = capacity // 2
        self.limit = limit
        self.batch = max(1, handler.max_batch) if handler.takes_batches else 1
        self.taken = 0
        self.queue: deque[Delivery] = deque()
        self.idle: list[asyncio.Future[None]] = []
        self.waking = False  # a batch lane has woken a worker that has not run yet
        self.hungry = False  # the poller waits for room in this lane
        self.duration = metrics.handler_duration.labels(name)
        self.failures = metrics.handler_failures.labels(name)

    def room(self) -> int:
        return self.capacity - len(self.queue)

    def offer(self, delivery: Delivery) -> bool:
        if len(self.queue) >= self.capacity:
            return False
        self.queue.append(delivery)
        if self.waking:
            return True  # the worker woken already will take this one too
        while self.idle:
            waiter = self.idle.pop()
            if not waiter.done():
                waiter.set_result(None)
                self.waking = self.batch > 1
                break
        return True

    def take(self) -> list[Delivery]:
        """The next call's deliveries: the first queued one and, for a batch handler, the
        first attempts queued behind it, within `batch` and the room under `limit`."""
        queue = self.queue
        first = queue.popleft()
        if self.batch == 1 or first.attempts:
            return [first]
        most = min(self.batch, self.limit - self.taken)
        taken = [first]
        while queue and len(taken) < most and not queue[0].attempts:
            taken.append(queue.popleft())
        return taken

    def wake_all(self) -> None:
        for waiter in self.idle:
            if not waiter.done():
                waiter.set_result(None)
        self.idle.clear()


class _Worker:
    """One worker task of a lane, and when its running call is to be cut (the watchdog's)."""

    __slots__ = ("cut_at", "task", "timed_out")

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.cut_at = _NEVER
        self.timed_out = False


class Dispatcher:
    """Delivers the inbox's pending deliveries to `handlers` (keyed by handler name)."""

    def __init__(
        self,
        inbox: Inbox,
        handlers: Mapping[str, Handler],
        *,
        metrics: Metrics,
        max_attempts: int = 12,
        handler_timeout: float = 10.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 600.0,
        concurrency: int = 64,
        poll_interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        owner: str | None = None,
    ) -> None:
        self.inbox = inbox
        self.max_attempts = max_attempts
        self.handler_timeout = handler_timeout
        self.backoff = Backoff(backoff_initial, backoff_max)
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.clock = clock
        self.rng = rng
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_seconds = 3 * handler_timeout + 10
        self._lanes = {
            name: _Lane(name, handler, metrics, 2 * concurrency, concurrency)
            for name, handler in handlers.items()
        }
        self._by_type: dict[str, tuple[_Lane, ...]] = {}
        self._workers: list[_Worker] = []
        self._poller: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._running = False

    async def start(self) -> None:
        """Take fresh events from `notify` and claim everything due, until `stop`."""
        loop = asyncio.get_running_loop()
        for owner in await self.inbox.lease_owners():
            if owner_is_gone(owner):  # killed on this host: its leases need not run out
                self.inbox.release_all(owner)
        self.inbox.attach(self.owner, self._lanes, self.lease_seconds)
        self._running = True
        for lane in self._lanes.values():
            for _ in range(self.concurrency):
                worker = _Worker()
                worker.task = loop.create_task(
                    self._work(lane, worker), name=f"dtpush-deliver-{lane.name}"
                )
                self._workers.append(worker)
        self._poller = loop.create_task(self._poll(), name="dtpush-delivery-poller")
        self._watchdog = loop.create_task(self._watch(), name="dtpush-delivery-watchdog")

    def notify(self, event: events.Event) -> None:
        """Deliver a freshly accepted event now (its deliveries are leased to us).

        Nothing to do when the inbox delivers every event by `claim` (`notify_delivers`).
        """
        if not self._running or not self.inbox.notify_delivers:
            return
        lanes = self._by_type.get(event.event_type)
        if lanes is None:
            lanes = tuple(
                lane for lane in self._lanes.values() if lane.handler.wants(event.event_type)
            )
            if len(self._by_type) < 1024:
                self._by_type[event.event_type] = lanes
        deadline = self.clock() + self.lease_seconds
        for lane in lanes:
            delivery = Delivery(event.event_id, lane.name, 0, event.raw, event, deadline)
            if not lane.offer(delivery):
                self.inbox.release(event.event_id, lane.name, owner=self.owner)

    async def stop(self, grace: float) -> None:
        """Stop taking work, let running calls finish within `grace`, give the rest back."""
        if not self._running:
            return
        self._running = False
        self.inbox.detach(self.owner)
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for lane in self._lanes.values():
            lane.queue.clear()
            lane.wake_all()
        tasks = [worker.task for worker in self._workers if worker.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=max(grace, 0.0))
            for task in late:
                task.cancel()
            if late:  # a call that swallows its cancellation is not waited for long
                await asyncio.wait(late, timeout=1.0)
                log.warning("delivery_cut_at_stop", extra={"fields": {"calls": len(late)}})
        self._workers = []
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        self.inbox.release_all(self.owner)
        with contextlib.suppress(Unavailable):
            await self.inbox.flush()

    async def _work(self, lane: _Lane, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        queue = lane.queue
        while self._running:
            lane.waking = False
            while queue and lane.taken < lane.limit:
                deliveries = lane.take()
                if lane.hungry and len(queue) <= lane.low_water:
                    lane.hungry = False
                    self._wake.set()
                lane.taken += len(deliveries)
                try:
                    await self._deliver(lane, worker, deliveries)
                finally:
                    lane.taken -= len(deliveries)
            if not self._running:
                return
            waiter: asyncio.Future[None] = loop.create_future()
            lane.idle.append(waiter)
            await waiter

    async def _deliver(self, lane: _Lane, worker: _Worker, deliveries: list[Delivery]) -> None:
        """One attempt of each delivery, in one call; guarded: every exception of the handler
        becomes a recorded failure of each of them.

        The call is cut after `handler_timeout` by the watchdog (one timer for all workers
        instead of one per call); the cut arrives as a cancellation, turned into TimeoutError.
        """
        started = self.clock()
        # A lease that runs out before the call could end is left alone: it is claimed again.
        latest_end = started + self.handler_timeout + _LEASE_MARGIN
        deliveries = [delivery for delivery in deliveries if delivery.deadline >= latest_end]
        if not deliveries:
            return
        failure: Exception | None = None
        worker.cut_at = started + self.handler_timeout
        try:
            given = [delivery.event or events.parse(delivery.raw) for delivery in deliveries]
            if len(given) == 1:
                await lane.handler.handle(given[0])
            else:
                await lane.handler.handle_batch(given)
        except asyncio.CancelledError:
            if not worker.timed_out:
                raise
            worker.timed_out = False
            if worker.task is not None and worker.task.uncancel() > 0:
                raise  # cancelled by stop() as well
            failure = TimeoutError()
        except Exception as exc:
            failure = exc
        finally:
            worker.cut_at = _NEVER
            if worker.timed_out and worker.task is not None:  # it swallowed the cut
                worker.timed_out = False
                worker.task.uncancel()
        lane.duration.observe(self.clock() - started)
        if failure is None:
            # The worker moves on only once these successes are committed: at most `limit`
            # (`concurrency`) successes per handler are ever uncommitted, which bounds what a
            # kill can repeat. A record lost with its batch (Unavailable) comes again when its
            # lease ends.
            with contextlib.suppress(Unavailable):
                await self.inbox.done_many(
                    [delivery.event_id for delivery in deliveries], lane.name
                )
        else:
            for delivery in deliveries:
                self._failed(lane, delivery, failure)

    async def _watch(self) -> None:
        """Cut every call running longer than `handler_timeout`."""
        interval = min(0.25, self.handler_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            now = self.clock()
            for worker in self._workers:
                if worker.cut_at <= now and not worker.timed_out and worker.task is not None:
                    worker.timed_out = True
                    worker.task.cancel()

    def _failed(self, lane: _Lane, delivery: Delivery, exc: Exception) -> None:
        lane.failures.inc()
        attempts = delivery.attempts + 1
        error = describe(exc, self.handler_timeout)
        fields = {
            "event_id": delivery.event_id,
            "handler": lane.name,
            "attempt": attempts,
            "error": error,
        }
        if attempts >= self.max_attempts:
            self.inbox.dead(
                delivery.event_id, lane.name, owner=self.owner, attempts=attempts, error=error
            )
            log.error("delivery_dead", extra={"fields": fields})
            return
        delay = self.backoff.delay(attempts, self.rng())
        self.inbox.retry(
            delivery.event_id,
            lane.name,
            owner=self.owner,
            attempts=attempts,
            error=error,
            delay=delay,
        )
        log.warning("delivery_failed", extra={"fields": {**fields, "retry_in": round(delay, 3)}})

    async def _poll(self) -> None:
        """Claim due deliveries whenever a lane has room: retries, replays, older work."""
        while True:
            wanted = {name: lane.room() for name, lane in self._lanes.items() if lane.room() > 0}
            claimed: list[Delivery] = []
            if wanted:
                deadline = self.clock() + self.lease_seconds
                try:
                    claimed = await self.inbox.claim(
                        wanted, owner=self.owner, lease_seconds=self.lease_seconds
                    )
                except Unavailable as exc:
                    log.warning("delivery_claim_failed", extra={"fields": {"reason": exc.reason}})
                counts: dict[str, int] = {}
                for delivery in claimed:
                    delivery.deadline = deadline
                    counts[delivery.handler] = counts.get(delivery.handler, 0) + 1
                    if not self._lanes[delivery.handler].offer(delivery):
                        self.inbox.release(delivery.event_id, delivery.handler, owner=self.owner)
                for name, count in counts.items():
                    if count >= wanted[name]:  # there may be more: claim again when it drains
                        self._lanes[name].hungry = True
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
