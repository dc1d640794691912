"""When the DT client tries a request again, and how long it waits first (pure, no I/O).

The client asks `RetryPolicy.delay(...)` after every failed attempt; `None` means "raise now".

- Timeouts and connection errors are retried, except when the request may have reached DT and
  repeating it is not safe (a create: `POST` to a collection). A connection refused is always
  safe to repeat.
- 429 waits `Retry-After` (seconds or an HTTP-date), capped at `retry_after_max`; without the
  header, `retry_after_default`.
- 500, 502, 503 and 504 wait an exponential backoff: `backoff_initial * 2**retry`, capped at
  `backoff_max` — or the answer's `Retry-After` when it has one (503 may), with the same cap.
- Nothing else is retried here (the one-time 401 retry with a fresh token is the client's).
- The sum of all waits of one call stays within `budget` seconds: a wait that would pass it
  ends the retries instead.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how long to wait; `retries` counts the repeats after the first try."""

    retries: int = 3
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    retry_after_default: float = 5.0
    retry_after_max: float = 60.0
    budget: float = 120.0

    def backoff(self, retry: int) -> float:
        """The wait before repeat number `retry` (0 for the first repeat) of a failed attempt."""
        return float(min(self.backoff_max, self.backoff_initial * (2**retry)))

    def delay(
        self,
        *,
        retry: int,
        waited: float,
        status: int | None = None,
        retry_after: float | None = None,
        maybe_sent: bool = False,
        resendable: bool = True,
    ) -> float | None:
        """Seconds to wait before repeat number `retry`, or None to give up.

        `status` is the HTTP status of the failed attempt, or None when it got no answer (then
        `maybe_sent` says whether it may have reached DT). `resendable` is false for requests
        that must not be repeated once they may have arrived. `waited` is the time already spent
        waiting in this call.
        """
        if retry >= self.retries:
            return None
        if status is None:
            if maybe_sent and not resendable:
                return None
            wait = self.backoff(retry)
        elif status == 429:
            wait = self.retry_after_default if retry_after is None else retry_after
            wait = min(max(wait, 0.0), self.retry_after_max)
        elif status in RETRIED_STATUSES:
            wait = self.backoff(retry)
            if retry_after is not None:
                wait = min(max(retry_after, 0.0), self.retry_after_max)
        else:
            return None
        if waited + wait > self.budget:
            return None
        return wait


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP-date; None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())
