"""The push side of the local DT cloud: every event is posted to the connectors, as DT does.

`Pusher` listens to an `EmulatorState`: each event appended to a device's history
(`on_event`) is queued for every ``ACTIVE`` connector of the device's project whose event
filter lets it through, and a ``:sync`` (`on_sync`) queues the newest event of every type of
every device (their original ``eventId``s) for that connector alone. DT's rules
(DT-PROTOCOL §0, §3):

- One POST per event to ``httpConfig.url``, body and headers from `pushes.py`; the tokens
  are minted at each attempt, so a retry carries the connector's current secret and key.
- Success is any 2xx within `timeout_seconds` (DT: 10 s). Anything else — another status
  (a redirect is not followed), a refused connection, no answer in time — is retried with exponential backoff and jitter
  (`receiver.backoff`), until `max_age_seconds` (DT: 12 h) after the push was queued; then
  it is dropped.
- One queue per connector, sent in order with at most `concurrency` pushes in flight;
  retries and injected delays go back in by due time, so they may be overtaken (DT does not
  promise order).
- Every attempt is recorded for ``:metrics`` (`delivery.ConnectorDelivery`). When a
  connector has failed without any success for `EmulatorState.disable_after_seconds` (DT:
  5 days) it becomes ``SYSTEM_DISABLED``: its queue is dropped, and nothing is queued for it
  while it is not ``ACTIVE`` (DT drops those events; a re-enable does not backfill).

Injected faults (`PushOptions`): `duplicates` (the probability that an event is pushed
twice), `reorder` (the probability that a push is held back `reorder_delay_seconds`, so
later ones overtake it), `delay_seconds` (every push leaves that much after its event),
`rotate_keys_every_seconds` (a new ES256 key every so often; the old ``kid`` stays in the
JWKS for a while).

The time is `clock()` (Unix seconds; a real clock — waits are real sleeps).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from receiver.backoff import Backoff
from receiver.emulator.connectors import ACTIVE, SYSTEM_DISABLED, Connector
from receiver.emulator.delivery import ConnectorDelivery, PendingPush
from receiver.emulator.devices import Device
from receiver.emulator.oidc import issuer_for
from receiver.emulator.pushes import push_body, push_headers
from receiver.emulator.state import EmulatorState
from receiver.testing import new_xid

log = logging.getLogger("receiver.emulator.pusher")

#: How much of a receiver's answer is read (the rest is not waited for).
MAX_ANSWER_BYTES = 65536
#: While keys rotate every N seconds, a retired key stays published max(10 N, 30 s) (≤ 2 h).
MIN_KEY_RETENTION_SECONDS = 30.0


@dataclass(frozen=True)
class PushOptions:
    """How the emulator pushes: DT's timings by default, shorter ones for tests, and faults."""

    timeout_seconds: float = 10.0
    backoff_initial_seconds: float = 1.0
    backoff_max_seconds: float = 300.0
    max_age_seconds: float = 12 * 3600.0
    concurrency: int = 8
    duplicates: float = 0.0
    reorder: float = 0.0
    reorder_delay_seconds: float = 2.0
    delay_seconds: float = 0.0
    rotate_keys_every_seconds: float | None = None
    seed: int | None = None  # for the fault and jitter draws

    def __post_init__(self) -> None:
        for name in ("duplicates", "reorder"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability between 0 and 1")
        if self.timeout_seconds <= 0 or self.max_age_seconds <= 0:
            raise ValueError("timeout_seconds and max_age_seconds must be positive")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.delay_seconds < 0 or self.reorder_delay_seconds < 0:
            raise ValueError("delays cannot be negative")
        if self.rotate_keys_every_seconds is not None and self.rotate_keys_every_seconds <= 0:
            raise ValueError("rotate_keys_every_seconds must be positive")
        Backoff(self.backoff_initial_seconds, self.backoff_max_seconds)  # validates both


@dataclass(frozen=True)
class PushAttempt:
    """One POST and how it went (`status` None: no answer in time, or no connection)."""

    connector_id: str
    event_id: str
    event_type: str
    attempt: int  # 1 for the first
    status: int | None
    ok: bool
    latency: float
    duplicate: bool


AttemptListener = Callable[[PushAttempt], None]


class _Lane:
    """The sending side of one connector's queue."""

    def __init__(self, connector_id: str) -> None:
        self.connector_id = connector_id
        self.wake = asyncio.Event()
        self.inflight: set[asyncio.Task[None]] = set()
        self.task: asyncio.Task[None] | None = None


class Pusher:
    """Pushes the events of `state` to its connectors until `stop()`.

    With no `session`, it opens one in `start()` and closes it in `stop()`. `issuer` is
    the asymmetric tokens' ``iss``; by default the emulator's own (`oidc.issuer_for` of
    `state.base_url`).
    """

    def __init__(
        self,
        state: EmulatorState,
        *,
        options: PushOptions | None = None,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        issuer: str | None = None,
    ) -> None:
        self.state = state
        self.options = options or PushOptions()
        self.on_attempt: list[AttemptListener] = []
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._issuer = issuer
        self._rng = random.Random(self.options.seed)
        self._backoff = Backoff(
            self.options.backoff_initial_seconds, self.options.backoff_max_seconds
        )
        self._timeout = aiohttp.ClientTimeout(total=self.options.timeout_seconds)
        self._lanes: dict[str, _Lane] = {}
        self._rotation: asyncio.Task[None] | None = None
        self._running = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._running:
            return
        if self._issuer is None and self.state.base_url is None:
            raise RuntimeError("Pusher needs an issuer or a state with its base_url set")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        every = self.options.rotate_keys_every_seconds
        if every is not None:
            keys = self.state.signing_keys
            keys.retain_seconds = min(
                keys.retain_seconds, max(10 * every, MIN_KEY_RETENTION_SECONDS)
            )
            self._rotation = asyncio.create_task(self._rotate_keys(every))
        self.state.on_event.append(self.submit)
        self.state.on_sync.append(self.sync)
        self._running = True
        for connector_id, delivery in list(self.state.deliveries.items()):
            if delivery.queued:  # left by a previous run: carry on with them
                self._lane(connector_id)

    async def stop(self) -> None:
        """Stop pushing: queued pushes stay queued in the state, in-flight ones are cut."""
        if not self._running:
            return
        self._running = False
        self.state.on_event.remove(self.submit)
        self.state.on_sync.remove(self.sync)
        tasks: list[asyncio.Task[None]] = []
        for lane in self._lanes.values():
            tasks.extend(lane.inflight)
            if lane.task is not None:
                tasks.append(lane.task)
        if self._rotation is not None:
            tasks.append(self._rotation)
            self._rotation = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._lanes.clear()
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def issuer(self) -> str:
        if self._issuer is not None:
            return self._issuer
        return issuer_for(self.state.base_url or "")

    # -- what gets queued ------------------------------------------------------------------

    def submit(self, device: Device, event: dict[str, Any]) -> None:
        """Queue `event` of `device` for every ACTIVE connector that forwards its type."""
        if not self._running:
            return
        now = self._clock()
        for connector in self.state.active_connectors(device.project_id):
            if connector.forwards(event["eventType"]):
                self._queue(connector, device, event, now)

    def sync(self, connector: Connector) -> None:
        """Queue the newest event of every type of every device for `connector` (if ACTIVE)."""
        current = self._connector(connector.id)
        if not self._running or current is None or current.status != ACTIVE:
            return
        now = self._clock()
        for device in self.state.project(current.project_id).devices.values():
            for event in device.latest_events():
                if current.forwards(event["eventType"]):
                    self._queue(current, device, event, now)

    def outstanding(self, connector_id: str | None = None) -> int:
        """Pushes queued or in flight (for one connector, or all)."""
        ids = [connector_id] if connector_id is not None else list(self.state.deliveries)
        total = 0
        for cid in ids:
            delivery = self.state.deliveries.get(cid)
            lane = self._lanes.get(cid)
            total += (delivery.queued if delivery else 0) + (len(lane.inflight) if lane else 0)
        return total

    def _queue(
        self, connector: Connector, device: Device, event: dict[str, Any], now: float
    ) -> None:
        options = self.options
        push = PendingPush(event, push_body(device, event, connector), first_queued_at=now)
        delay = options.delay_seconds
        if options.reorder and self._rng.random() < options.reorder:
            delay += options.reorder_delay_seconds
        copies = [push]
        if options.duplicates and self._rng.random() < options.duplicates:
            copies.append(replace(push, duplicate=True))
        delivery = self.state.delivery_for(connector.id)
        for copy in copies:
            delivery.enqueue(copy, at=now + delay if delay > 0 else None)
        self._lane(connector.id).wake.set()

    # -- sending ---------------------------------------------------------------------------

    def _lane(self, connector_id: str) -> _Lane:
        lane = self._lanes.get(connector_id)
        if lane is None:
            lane = self._lanes[connector_id] = _Lane(connector_id)
            lane.task = asyncio.create_task(self._run(lane))
        return lane

    def _connector(self, connector_id: str) -> Connector | None:
        for project in self.state.projects.values():
            connector = project.connectors.get(connector_id)
            if connector is not None:
                return connector
        return None

    async def _run(self, lane: _Lane) -> None:
        concurrency = self.options.concurrency
        while True:
            connector = self._connector(lane.connector_id)
            delivery = self.state.deliveries.get(lane.connector_id)
            if connector is None or delivery is None:
                break
            lane.wake.clear()
            now = self._clock()
            if connector.status == ACTIVE:
                free = concurrency - len(lane.inflight)
                for push in delivery.take_due(now, free) if free > 0 else []:
                    self._spawn(lane, delivery, push)
            timeout: float | None = None  # None: until an enqueue or an attempt ends
            due = delivery.next_due()
            if connector.status == ACTIVE and due is not None and len(lane.inflight) < concurrency:
                timeout = min(max(due - now, 0.0), 1.0)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation
            # that arrives as the wait ends (an attempt cut by `stop` sets `wake`), and
            # `stop` would then wait for this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await lane.wake.wait()
        self._lanes.pop(lane.connector_id, None)

    def _spawn(self, lane: _Lane, delivery: ConnectorDelivery, push: PendingPush) -> None:
        task = asyncio.create_task(self._attempt(lane, delivery, push))
        lane.inflight.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            lane.inflight.discard(finished)
            lane.wake.set()
            if not finished.cancelled() and finished.exception() is not None:
                log.error("emulator_push_crashed", exc_info=finished.exception())

        task.add_done_callback(done)

    async def _attempt(self, lane: _Lane, delivery: ConnectorDelivery, push: PendingPush) -> None:
        connector = self._connector(lane.connector_id)
        if connector is None or connector.status != ACTIVE or not delivery.current(push):
            return
        latency, status = await self._post(connector, push.body)
        end = self._clock()
        ok = status is not None and 200 <= status < 300
        for listener in list(self.on_attempt):
            listener(
                PushAttempt(
                    connector.id,
                    push.event_id,
                    str(push.event["eventType"]),
                    push.attempts + 1,
                    status,
                    ok,
                    latency,
                    push.duplicate,
                )
            )
        delivery.record_attempt(end, ok=ok, latency=latency)
        if ok or not delivery.current(push):
            return
        connector = self._connector(lane.connector_id)
        if connector is None or connector.status != ACTIVE:
            return
        if delivery.should_disable(end, self.state.disable_after_seconds):
            self.state.set_connector_status(connector.project_id, connector.id, SYSTEM_DISABLED)
            log.warning(
                "emulator_connector_system_disabled",
                extra={
                    "fields": {"connector": connector.id, "failing_since": delivery.failing_since}
                },
            )
            return
        attempts = push.attempts + 1
        retry_at = end + self._backoff.delay(attempts, self._rng.random())
        if retry_at - push.first_queued_at > self.options.max_age_seconds:
            delivery.dropped += 1
            return
        delivery.enqueue(replace(push, attempts=attempts), at=retry_at)

    async def _post(self, connector: Connector, body: bytes) -> tuple[float, int | None]:
        """(round-trip seconds, HTTP status or None) of one POST of `body`."""
        session = self._session
        if session is None:
            raise RuntimeError("Pusher used before start()")
        project = self.state.projects[connector.project_id]
        headers = push_headers(
            body,
            connector,
            key=self.state.signing_keys.current,
            issuer=self.issuer,
            organization_id=project.organization_id,
            now=self._clock(),
            new_id=new_xid,
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with session.post(
                connector.http_config.url,
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                read = 0
                async for chunk in response.content.iter_any():  # the answer is not used
                    read += len(chunk)
                    if read > MAX_ANSWER_BYTES:
                        break
                return loop.time() - started, response.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            return loop.time() - started, None

    async def _rotate_keys(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            key = self.state.rotate_key(self._clock())
            log.info("emulator_signing_key_rotated", extra={"fields": {"kid": key.kid}})
