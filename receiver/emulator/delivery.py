"""Per-connector delivery state: push attempts, the 3-hour metrics window, failure tracking.

Pure bookkeeping (time is a parameter). The REST side reads it for ``:metrics`` and
records ``:sync`` calls; the push side (the virtual sensors' pusher) appends pending
pushes, records every attempt, and asks whether a connector has failed long enough to be
``SYSTEM_DISABLED``.

DT's metrics (DT-PROTOCOL §3): over the last 3 hours, `successCount` = pushes answered 2xx,
`errorCount` = other answers or none, `latency99p` = the 99th percentile of push
round-trip times, as a protobuf Duration string (``"0.411s"``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from receiver.emulator.timestamps import format_duration

METRICS_WINDOW_SECONDS = 3 * 3600
#: DT's default: a connector failing this long without any success is SYSTEM_DISABLED.
DISABLE_AFTER_SECONDS = 5 * 24 * 3600


@dataclass(frozen=True)
class Attempt:
    at: float
    ok: bool
    latency: float


@dataclass(frozen=True)
class PendingPush:
    """One event waiting to be pushed to one connector."""

    event: dict[str, Any]
    first_queued_at: float
    attempts: int = 0
    next_attempt_at: float = 0.0


@dataclass
class ConnectorDelivery:
    """What DT knows about pushing to one connector."""

    attempts: deque[Attempt] = field(default_factory=deque)
    pending: deque[PendingPush] = field(default_factory=deque)
    sync_requests: list[float] = field(default_factory=list)
    last_success_at: float | None = None
    failing_since: float | None = None

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
        self.pending.clear()

    def _prune(self, now: float) -> None:
        horizon = now - METRICS_WINDOW_SECONDS
        while self.attempts and self.attempts[0].at < horizon:
            self.attempts.popleft()


def _p99(latencies: list[float]) -> float:
    """Nearest-rank 99th percentile; 0 when there is nothing to rank."""
    if not latencies:
        return 0.0
    ranked = sorted(latencies)
    return ranked[max(math.ceil(0.99 * len(ranked)) - 1, 0)]
