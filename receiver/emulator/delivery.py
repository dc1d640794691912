"""Per-connector delivery state: the push queue, attempts, the 3-hour metrics window, failure
tracking.

Pure bookkeeping (time is a parameter). The REST side reads it for ``:metrics`` and
records ``:sync`` calls; the push side (`pusher.Pusher`) queues pushes here, takes the ones
that are due, records every attempt, and asks whether a connector has failed long enough to
be ``SYSTEM_DISABLED``.

The queue has two parts: `pending`, the pushes due now in arrival order (taken first in,
first out), and `deferred`, the pushes waiting for a later time (a retry's backoff, or an
injected delay), kept as a heap by due time. `drop_pending` empties both and bumps
`generation`, so a push that was in flight when its connector was disabled is not
re-queued when its answer comes back.

DT's metrics (DT-PROTOCOL §3): over the last 3 hours, `successCount` = pushes answered 2xx,
`errorCount` = other answers or none, `latency99p` = the 99th percentile of push
round-trip times, as a protobuf Duration string (``"0.411s"``).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from receiver.emulator.timestamps import format_duration

METRICS_WINDOW_SECONDS = 3 * 3600
#: DT's default: a connector failing this long without any success is SYSTEM_DISABLED.
DISABLE_AFTER_SECONDS = 5 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Attempt:
    at: float
    ok: bool
    latency: float


@dataclass(frozen=True)
class PendingPush:
    """One event waiting to be pushed to one connector: the push body is made when queued."""

    event: dict[str, Any]
    body: bytes
    first_queued_at: float
    attempts: int = 0
    next_attempt_at: float = 0.0
    generation: int = 0
    duplicate: bool = False  # an injected second push of the same event

    @property
    def event_id(self) -> str:
        return str(self.event["eventId"])


@dataclass
class ConnectorDelivery:
    """What DT knows about pushing to one connector."""

    attempts: deque[Attempt] = field(default_factory=deque)
    pending: deque[PendingPush] = field(default_factory=deque)
    deferred: list[tuple[float, int, PendingPush]] = field(default_factory=list)
    sync_requests: list[float] = field(default_factory=list)
    last_success_at: float | None = None
    failing_since: float | None = None
    generation: int = 0
    dropped: int = 0  # pushes given up: too old, or dropped when the connector stopped
    _order: itertools.count[int] = field(default_factory=itertools.count, repr=False)

    # -- the queue -------------------------------------------------------------------------

    def enqueue(self, push: PendingPush, *, at: float | None = None) -> None:
        """Queue `push` (of this generation), due now or, when `at` is given, at `at`."""
        push = _stamped(push, self.generation, at)
        if at is None:
            self.pending.append(push)
        else:
            heapq.heappush(self.deferred, (at, next(self._order), push))

    def take_due(self, now: float, limit: int) -> list[PendingPush]:
        """Up to `limit` pushes due at `now`: deferred ones that came due first (by due time),
        then the pending ones in arrival order."""
        taken: list[PendingPush] = []
        while self.deferred and len(taken) < limit and self.deferred[0][0] <= now:
            taken.append(heapq.heappop(self.deferred)[2])
        while self.pending and len(taken) < limit:
            taken.append(self.pending.popleft())
        return taken

    def next_due(self) -> float | None:
        """When the next push is due: None when nothing is queued, 0 when one is due now."""
        if self.pending:
            return 0.0
        return self.deferred[0][0] if self.deferred else None

    @property
    def queued(self) -> int:
        """Pushes waiting (not those in flight)."""
        return len(self.pending) + len(self.deferred)

    def current(self, push: PendingPush) -> bool:
        """Whether `push` was queued since the queue was last dropped."""
        return push.generation == self.generation

    def drop_pending(self) -> int:
        """Forget every queued push (and those in flight); returns how many were queued."""
        count = self.queued
        self.pending.clear()
        self.deferred.clear()
        self.generation += 1
        self.dropped += count
        return count

    # -- attempts, metrics, failure clock --------------------------------------------------

    def record_attempt(self, at: float, *, ok: bool, latency: float) -> None:
        """One push answered (or not): counts for `:metrics` and the failure clock."""
        self.attempts.append(Attempt(at, ok, latency))
        if ok:
            self.last_success_at = at
            self.failing_since = None
        elif self.failing_since is None:
            self.failing_since = at
        self._prune(at)

    def metrics(self, now: float) -> dict[str, Any]:
        """DT's ``:metrics`` answer for the last 3 hours."""
        self._prune(now)
        horizon = now - METRICS_WINDOW_SECONDS
        window = [a for a in self.attempts if horizon <= a.at <= now]
        successes = sum(1 for a in window if a.ok)
        return {
            "metrics": {
                "successCount": successes,
                "errorCount": len(window) - successes,
                "latency99p": format_duration(_p99([a.latency for a in window])),
            }
        }

    def should_disable(self, now: float, after_seconds: float = DISABLE_AFTER_SECONDS) -> bool:
        """Whether pushes have failed for `after_seconds` without any success."""
        return self.failing_since is not None and now - self.failing_since >= after_seconds

    def reset(self) -> None:
        """Forget the failure clock and the queue (re-enabled after SYSTEM_DISABLED: no backfill)."""
        self.failing_since = None
        self.drop_pending()

    def _prune(self, now: float) -> None:
        horizon = now - METRICS_WINDOW_SECONDS
        while self.attempts and self.attempts[0].at < horizon:
            self.attempts.popleft()


def _stamped(push: PendingPush, generation: int, at: float | None) -> PendingPush:
    if push.generation == generation and (at is None or push.next_attempt_at == at):
        return push
    return replace(
        push, generation=generation, next_attempt_at=push.next_attempt_at if at is None else at
    )


def _p99(latencies: list[float]) -> float:
    """Nearest-rank 99th percentile; 0 when there is nothing to rank."""
    if not latencies:
        return 0.0
    ranked = sorted(latencies)
    return ranked[max(math.ceil(0.99 * len(ranked)) - 1, 0)]
