"""The embedded inbox: one SQLite file in WAL mode, written by one thread in grouped commits.

Every write (puts, quarantines, delivery records, claims, dead-letter operations) is queued
to a single writer thread that owns the write connection. The writer takes everything
queued, runs it in one transaction and commits once (`synchronous=FULL`: one fsync of the
write-ahead log), then settles the waiting futures in the event loop with one callback. So
64 concurrent pushes share one sync, and the event loop never waits on the disk (sqlite3
releases the GIL while SQLite works).

`put` resolves only after the commit that holds the event: an acknowledged event survives
`kill -9` and power loss. A put that is not committed within `put_timeout` seconds gets
`Unavailable` (the write may still land later; DT's retry is then answered "duplicate").

Several processes may open the same file (one ingesting, others delivering): WAL lets them
read concurrently, `busy_timeout` makes writers wait their turn, and claims lease rows so
two workers never deliver the same (event, handler) at once. The pending count is kept in
memory and recounted when `PRAGMA data_version` shows another process wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from receiver.errors import ConfigError, Unavailable
from receiver.inbox import sqlite_store as store
from receiver.inbox.base import QUARANTINE, DeadLetter, Delivery, Inbox, InboxStats
from receiver.inbox.sqlite_writer import CALL, DONE, PRUNE_SPAN, PUT, Batch, Precheck, Writer

if TYPE_CHECKING:
    from receiver.events import Event


class SqliteInbox(Inbox):
    """The SQLite inbox (see the module docstring)."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_pending: int = 1_000_000,
        dedup_window_seconds: float = 86400,
        put_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 10.0,
        stats_interval: float = 1.0,
        prune_interval: float = 60.0,
    ) -> None:
        self.path = Path(path)
        self.put_timeout = put_timeout
        self.clock = clock
        self.dedup_window_seconds = dedup_window_seconds
        self._writer = Writer(
            self.path,
            clock=clock,
            max_pending=max_pending,
            dedup_window_seconds=dedup_window_seconds,
            busy_timeout=busy_timeout,
            stats_interval=stats_interval,
            prune_interval=prune_interval,
        )
        self._queue = self._writer.queue
        self._open = False  # the writer runs: records and calls are taken
        self._accepting = False  # puts are taken
        self._inflight: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._watchdog: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # life cycle

    async def open(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = loop.create_future()
        self._writer.start(loop, opened)
        try:
            await opened
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"inbox.path: cannot open {self.path}: {exc}") from exc
        self._open = self._accepting = True
        self._watchdog = loop.create_task(self._watch(), name="dtpush-inbox-watchdog")

    async def close(self) -> None:
        self._accepting = False
        if not self._open:
            return
        self._open = False
        self._writer.lease = None
        await asyncio.to_thread(self._writer.stop)
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog

    def ready(self) -> bool:
        writer = self._writer
        return self._accepting and writer.healthy and writer.alive()

    # ingest

    async def put(self, event: Event, handlers: Sequence[str]) -> bool:
        if not self._accepting:
            raise Unavailable("inbox_closed", retry_after=5)
        future: asyncio.Future[bool] = self._loop.create_future()  # type: ignore[union-attr]
        self._queue.put((PUT, future, event, handlers))
        self._inflight.append((time.monotonic() + self.put_timeout, future))
        return await future

    async def quarantine(self, raw: bytes, reason: str) -> None:
        if not self._accepting:
            raise Unavailable("inbox_closed", retry_after=5)

        def run(batch: Batch) -> None:
            store.quarantine(batch.cur, raw, reason, batch.now)
            batch.dead[QUARANTINE] = batch.dead.get(QUARANTINE, 0) + 1

        future = self._submit(run)
        self._inflight.append((time.monotonic() + self.put_timeout, future))
        await future

    def stats(self) -> InboxStats:
        writer = self._writer
        pending, oldest = writer.pending, writer.oldest
        age = max(0.0, self.clock() - oldest) if pending > 0 and oldest is not None else 0.0
        return InboxStats(
            pending=pending,
            oldest_pending_seconds=age,
            dead_letters=dict(writer.dead),
            commits=writer.commits,
        )

    # delivery engine

    def attach(self, owner: str, handlers: Collection[str], lease_seconds: float) -> None:
        self._writer.lease = (owner, frozenset(handlers), lease_seconds)

    def detach(self, owner: str) -> None:
        lease = self._writer.lease
        if lease is not None and lease[0] == owner:
            self._writer.lease = None

    async def claim(
        self, wanted: Mapping[str, int], *, owner: str, lease_seconds: float
    ) -> list[Delivery]:
        wanted = {handler: limit for handler, limit in wanted.items() if limit > 0}
        if not wanted:
            return []

        def run(batch: Batch) -> list[Delivery]:
            now = batch.now
            return store.claim(batch.cur, wanted, owner, now + lease_seconds, now)

        def due(cur: sqlite3.Cursor, now: float) -> bool:
            return any(store.has_due(cur, handler, now) for handler in wanted)

        return list(await self._submit(run, precheck=due, otherwise=()))

    def done(self, event_id: str, handler: str) -> asyncio.Future[None]:
        return self.done_many((event_id,), handler)

    def done_many(self, event_ids: Sequence[str], handler: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._loop.create_future()  # type: ignore[union-attr]
        if self._open:
            self._queue.put((DONE, future, event_ids, handler))
        else:
            future.set_result(None)  # closed: the deliveries stay pending, as after a crash
        return future

    def retry(
        self, event_id: str, handler: str, *, owner: str, attempts: int, error: str, delay: float
    ) -> None:
        def run(batch: Batch) -> None:
            args = (attempts, batch.now + delay, error, event_id, handler, owner)
            batch.cur.execute(store.RETRY_DELIVERY, args)

        self._record(run)

    def dead(self, event_id: str, handler: str, *, owner: str, attempts: int, error: str) -> None:
        def run(batch: Batch) -> None:
            if store.dead(batch.cur, event_id, handler, owner, attempts, error, batch.now):
                batch.pending -= 1
                batch.dead[handler] = batch.dead.get(handler, 0) + 1

        self._record(run)

    def release(self, event_id: str, handler: str, *, owner: str) -> None:
        def run(batch: Batch) -> None:
            batch.cur.execute(store.RELEASE_DELIVERY, (batch.now, event_id, handler, owner))

        self._record(run)

    def release_all(self, owner: str) -> None:
        def run(batch: Batch) -> None:
            batch.cur.execute(store.RELEASE_ALL, (batch.now, owner, batch.now))

        self._record(run)

    async def lease_owners(self) -> set[str]:
        owners: set[str] = await self._submit(
            lambda batch: {row[0] for row in batch.cur.execute(store.LEASE_OWNERS, (batch.now,))}
        )
        return owners

    async def flush(self) -> None:
        if self._open:
            await self._submit(lambda batch: None)

    # dead letters

    async def list_dead(
        self, handler: str | None = None, event_type: str | None = None
    ) -> list[DeadLetter]:
        result: list[DeadLetter] = await self._submit(
            lambda batch: store.list_dead(batch.cur, handler, event_type)
        )
        return result

    async def replay(
        self,
        handler: str | None = None,
        event_type: str | None = None,
        ids: Collection[str] | None = None,
        all: bool = False,
    ) -> int:
        if not all and handler is None and event_type is None and ids is None:
            raise ValueError("replay needs a handler, an event type, ids or all=True")
        chosen = None if ids is None else frozenset(ids)

        def run(batch: Batch) -> int:
            replayed = store.replay(batch.cur, handler, event_type, chosen, batch.now)
            for name, count in replayed.items():
                batch.dead[name] = batch.dead.get(name, 0) - count
                batch.pending += count
            return sum(replayed.values())

        result: int = await self._submit(run)
        return result

    async def purge(self) -> int:
        def run(batch: Batch) -> int:
            batch.dead.clear()
            return store.purge(batch.cur)

        result: int = await self._submit(run)
        return result

    # housekeeping and backfill

    async def prune(self) -> int:
        def run(batch: Batch) -> int:
            cutoff = batch.now - self.dedup_window_seconds
            total = 0
            after: int | None = 0
            while after is not None:
                count, after = store.prune(batch.cur, cutoff, after, PRUNE_SPAN)
                total += count
            return total

        result: int = await self._submit(run)
        return result

    async def newest_received_at(self) -> datetime | None:
        result: datetime | None = await self._submit(
            lambda batch: store.newest_received_at(batch.cur)
        )
        return result

    async def last_event_time_by_device(self) -> dict[str, datetime]:
        result: dict[str, datetime] = await self._submit(
            lambda batch: store.last_event_time_by_device(batch.cur)
        )
        return result

    # plumbing

    def _submit(
        self,
        call: Callable[[Batch], Any],
        *,
        precheck: Precheck | None = None,
        otherwise: Any = None,
    ) -> asyncio.Future[Any]:
        if not self._open:
            raise Unavailable("inbox_closed", retry_after=5)
        future: asyncio.Future[Any] = self._loop.create_future()  # type: ignore[union-attr]
        self._queue.put((CALL, future, call, precheck, otherwise))
        return future

    def _record(self, call: Callable[[Batch], Any]) -> None:
        if self._open:
            self._queue.put((CALL, None, call, None, None))

    async def _watch(self) -> None:
        """Answer puts that are not durable within `put_timeout` with `Unavailable`."""
        inflight = self._inflight
        interval = min(0.25, self.put_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            while inflight:
                deadline, future = inflight[0]
                if not future.done() and deadline > now:
                    break
                inflight.popleft()
                if not future.done():
                    future.set_exception(Unavailable("inbox_timeout", retry_after=5))
