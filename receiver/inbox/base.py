"""The inbox contract: the durable store between ingest and delivery (spec §5).

An inbox holds three things:

- *events*: the raw body of every accepted push, keyed by `eventId` (insert-if-absent; the
  key is remembered for the dedup window after every delivery of the event is done);
- *pending deliveries*: one per (event, handler) that has not succeeded yet, each with its
  attempt count, the time it is next due and, while someone is working on it, a lease;
- *dead letters*: (event, handler) pairs that failed `max_attempts` times, with their last
  error, plus quarantined bodies (verified pushes that are not DT events) under the handler
  name `"quarantine"`.

The view calls `put` and `quarantine`; the delivery engine (`receiver.delivery`) calls
`attach`/`detach`, `claim`, the recording methods and `flush`; the CLI calls the dead-letter
operations; metrics read `stats()`.

Time in the inbox (`received_at`, due times, leases, the dedup window) is wall-clock seconds
from the inbox's own `clock`; callers pass durations, never instants.

The recording methods (`done`, `retry`, `dead`, `release`, `release_all`) only queue their
write and return at once: they become durable with the next grouped commit (`flush` waits
for it). A crash before that commit loses the record, never an event: the delivery is still
pending and is made again when its lease expires.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from receiver.events import Event

#: The handler name under which quarantined bodies are kept as dead letters.
QUARANTINE = "quarantine"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter: an (event, handler) pair that gave up, or a quarantined body.

    For a quarantined body `event_id` and `event_type` are None, `handler` is "quarantine",
    `attempts` is 0 and `last_error` is the reason it is not an event.
    """

    event_id: str | None
    event_type: str | None
    handler: str
    attempts: int
    last_error: str
    failed_at: datetime
    received_at: datetime
    raw: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class InboxStats:
    """A cheap snapshot for metrics: live pending count, the rest refreshed about each second."""

    pending: int
    oldest_pending_seconds: float
    dead_letters: Mapping[str, int]
    commits: int


@dataclass(slots=True)
class Delivery:
    """One (event, handler) pair handed to the delivery engine, leased to it.

    `attempts` counts the attempts made before this one. `event` is set when the delivery
    comes straight from a push (no re-parse); otherwise `raw` is parsed before the call.
    `deadline` is the delivery engine's own (monotonic) time by which the lease runs out.
    """

    event_id: str
    handler: str
    attempts: int
    raw: bytes
    event: Event | None = None
    deadline: float = 0.0


class Inbox(abc.ABC):
    """What every inbox backend provides. All methods are called from one event loop."""

    #: Whether `Dispatcher.notify` may deliver a fresh event in-process. False for a backend
    #: whose consumers deliver every event by `claim` anyway (NATS): a hand-over would repeat it.
    notify_delivers: ClassVar[bool] = True

    @abc.abstractmethod
    async def open(self) -> None:
        """Create or open the store; load counters; start background work."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Commit everything queued, then close; afterwards `put` raises `Unavailable`."""

    @abc.abstractmethod
    def ready(self) -> bool:
        """Open, and its last write succeeded."""

    @abc.abstractmethod
    async def put(self, event: Event, handlers: Sequence[str]) -> bool:
        """Store `event` with one pending delivery per handler, durably, in one step.

        True when it is new, False when its `event_id` is already held (nothing changes).
        Raises `Unavailable` (retry_after 5) when closed, when the pending deliveries are at
        `max_pending` (a duplicate still answers False), or when the write cannot be made
        durable within the put timeout.
        """

    @abc.abstractmethod
    async def quarantine(self, raw: bytes, reason: str) -> None:
        """Keep a verified body that is not an event as a dead letter of "quarantine"."""

    @abc.abstractmethod
    def stats(self) -> InboxStats:
        """Pending count, age of the oldest pending delivery, dead letters per handler."""

    # delivery engine

    @abc.abstractmethod
    def attach(self, owner: str, handlers: Collection[str], lease_seconds: float) -> None:
        """Insert deliveries of new events for `handlers` already leased to `owner`.

        Used by an in-process delivery engine that gets fresh events handed over directly
        (`Dispatcher.notify`), so no other worker claims them meanwhile.
        """

    @abc.abstractmethod
    def detach(self, owner: str) -> None:
        """Stop leasing new deliveries to `owner`."""

    @abc.abstractmethod
    async def claim(
        self, wanted: Mapping[str, int], *, owner: str, lease_seconds: float
    ) -> list[Delivery]:
        """Lease up to `wanted[handler]` due deliveries per handler to `owner`, oldest due first."""

    @abc.abstractmethod
    def done(self, event_id: str, handler: str) -> Awaitable[None]:
        """Record a success: the delivery is no longer pending.

        Returns at once; awaiting the result waits until that record is committed.
        """

    def done_many(self, event_ids: Sequence[str], handler: str) -> Awaitable[None]:
        """Record several successes of one handler at once, like `done` for each."""
        return _each([self.done(event_id, handler) for event_id in event_ids])

    @abc.abstractmethod
    def retry(
        self, event_id: str, handler: str, *, owner: str, attempts: int, error: str, delay: float
    ) -> None:
        """Record a failed attempt (`attempts` made so far); due again after `delay` seconds."""

    @abc.abstractmethod
    def dead(self, event_id: str, handler: str, *, owner: str, attempts: int, error: str) -> None:
        """Move the delivery to the dead letters with its last error."""

    @abc.abstractmethod
    def release(self, event_id: str, handler: str, *, owner: str) -> None:
        """Give a leased delivery back unattempted: due now, for anyone."""

    @abc.abstractmethod
    def release_all(self, owner: str) -> None:
        """Give back every delivery leased to `owner` (at shutdown)."""

    @abc.abstractmethod
    async def lease_owners(self) -> set[str]:
        """Owners holding leases now (so a starting engine can give back a dead one's)."""

    @abc.abstractmethod
    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""

    # dead letters

    @abc.abstractmethod
    async def list_dead(
        self, handler: str | None = None, event_type: str | None = None
    ) -> list[DeadLetter]:
        """Dead letters, oldest failure first, optionally of one handler or event type."""

    @abc.abstractmethod
    async def replay(
        self,
        handler: str | None = None,
        event_type: str | None = None,
        ids: Collection[str] | None = None,
        all: bool = False,
    ) -> int:
        """Make matching dead letters pending again (attempts from 0); how many.

        Selectors combine (all must match); at least one selector or `all=True` is needed
        (`ValueError` otherwise). Quarantined bodies are never replayed: they are not events.
        """

    @abc.abstractmethod
    async def purge(self) -> int:
        """Delete every dead letter (quarantined bodies included); how many."""

    # housekeeping and backfill

    @abc.abstractmethod
    async def prune(self) -> int:
        """Forget events done and older than the dedup window now (it also runs by itself)."""

    @abc.abstractmethod
    async def newest_received_at(self) -> datetime | None:
        """When the newest event in the inbox was received (None when empty)."""

    @abc.abstractmethod
    async def last_event_time_by_device(self) -> dict[str, datetime]:
        """The newest `event.timestamp` held for each device id."""


async def _each(waits: list[Awaitable[None]]) -> None:
    for wait in waits:
        await wait
