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
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from receiver.errors import ConfigError, Unavailable
from receiver.inbox import sqlite_store as store
from receiver.inbox.base import QUARANTINE, DeadLetter, Delivery, Inbox, InboxStats

if TYPE_CHECKING:
    from receiver.events import Event

log = logging.getLogger("dtpush.inbox")

# Operation kinds queued to the writer: (kind, future or None, *arguments).
_PUT, _DONE, _CALL, _STOP = 0, 1, 2, 3
Op = tuple[Any, ...]
# A call runs inside the writer's transaction: (batch) -> result.
Call = Callable[["_Batch"], Any]

_PRUNE_SPAN = 5000


class _Batch:
    """One transaction's work and its effects on the counters, applied only on commit."""

    __slots__ = ("cur", "dead", "dones", "new", "now", "pending", "results")

    def __init__(self, cur: sqlite3.Cursor, now: float, pending: int, dead: dict[str, int]):
        self.cur = cur
        self.now = now
        self.pending = pending
        self.dead = dead
        self.new: list[tuple[int | None, str, float, str | None]] = []
        self.dones: list[tuple[str, str]] = []
        self.results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []

    def flush(self) -> None:
        """Write the queued delivery inserts and deletes (kept in order with other calls)."""
        cur = self.cur
        if self.new:
            cur.executemany(store.INSERT_DELIVERY, self.new)
            self.pending += cur.rowcount - len(self.new)
            self.new = []
        if self.dones:
            cur.executemany(store.DELETE_DELIVERY, self.dones)
            self.pending -= cur.rowcount
            self.dones = []


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
        self.max_pending = max_pending
        self.dedup_window_seconds = dedup_window_seconds
        self.put_timeout = put_timeout
        self.clock = clock
        self.busy_timeout = busy_timeout
        self.stats_interval = stats_interval
        self.prune_interval = prune_interval
        self._queue: queue.SimpleQueue[Op] = queue.SimpleQueue()
        self._inflight: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._accepting = False
        self._healthy = False
        self._thread: threading.Thread | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lease: tuple[str, frozenset[str], float] | None = None
        # Written by the writer thread only; read anywhere.
        self._pending = 0
        self._dead: dict[str, int] = {}
        self._oldest: float | None = None
        self._commits = 0
        self._prune_after: int | None = 0  # where the periodic prune goes on from

    # life cycle

    async def open(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(opened, loop), name="dtpush-inbox-writer", daemon=True
        )
        self._thread.start()
        try:
            await opened
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"inbox.path: cannot open {self.path}: {exc}") from exc
        self._accepting = self._healthy = True
        self._watchdog = loop.create_task(self._watch(), name="dtpush-inbox-watchdog")

    async def close(self) -> None:
        self._accepting = False
        self._lease = None
        thread = self._thread
        if thread is None:
            return
        self._thread = None
        self._queue.put((_STOP, None))
        await asyncio.to_thread(thread.join)
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        self._healthy = False

    def ready(self) -> bool:
        return self._accepting and self._healthy

    # ingest

    async def put(self, event: Event, handlers: Sequence[str]) -> bool:
        if not self._accepting:
            raise Unavailable("inbox_closed", retry_after=5)
        future: asyncio.Future[bool] = self._loop.create_future()  # type: ignore[union-attr]
        self._queue.put((_PUT, future, event, handlers))
        self._inflight.append((time.monotonic() + self.put_timeout, future))
        return await future

    async def quarantine(self, raw: bytes, reason: str) -> None:
        if not self._accepting:
            raise Unavailable("inbox_closed", retry_after=5)

        def run(batch: _Batch) -> None:
            store.quarantine(batch.cur, raw, reason, batch.now)
            batch.dead[QUARANTINE] = batch.dead.get(QUARANTINE, 0) + 1

        future = self._submit(run)
        self._inflight.append((time.monotonic() + self.put_timeout, future))
        await future

    def stats(self) -> InboxStats:
        pending, oldest = self._pending, self._oldest
        age = max(0.0, self.clock() - oldest) if pending > 0 and oldest is not None else 0.0
        return InboxStats(
            pending=pending,
            oldest_pending_seconds=age,
            dead_letters=dict(self._dead),
            commits=self._commits,
        )

    # delivery engine

    def attach(self, owner: str, handlers: Collection[str], lease_seconds: float) -> None:
        self._lease = (owner, frozenset(handlers), lease_seconds)

    def detach(self, owner: str) -> None:
        if self._lease is not None and self._lease[0] == owner:
            self._lease = None

    async def claim(
        self, wanted: Mapping[str, int], *, owner: str, lease_seconds: float
    ) -> list[Delivery]:
        wanted = {handler: limit for handler, limit in wanted.items() if limit > 0}

        def run(batch: _Batch) -> list[Delivery]:
            now = batch.now
            return store.claim(batch.cur, wanted, owner, now + lease_seconds, now)

        def due(cur: sqlite3.Cursor, now: float) -> bool:
            return any(store.has_due(cur, handler, now) for handler in wanted)

        if not wanted:
            return []
        return list(await self._submit(run, precheck=due, otherwise=()))

    def done(self, event_id: str, handler: str) -> None:
        if self._thread is not None:
            self._queue.put((_DONE, None, event_id, handler))

    def retry(
        self, event_id: str, handler: str, *, owner: str, attempts: int, error: str, delay: float
    ) -> None:
        def run(batch: _Batch) -> None:
            args = (attempts, batch.now + delay, error, event_id, handler, owner)
            batch.cur.execute(store.RETRY_DELIVERY, args)

        self._record(run)

    def dead(self, event_id: str, handler: str, *, owner: str, attempts: int, error: str) -> None:
        def run(batch: _Batch) -> None:
            if store.dead(batch.cur, event_id, handler, owner, attempts, error, batch.now):
                batch.pending -= 1
                batch.dead[handler] = batch.dead.get(handler, 0) + 1

        self._record(run)

    def release(self, event_id: str, handler: str, *, owner: str) -> None:
        def run(batch: _Batch) -> None:
            batch.cur.execute(store.RELEASE_DELIVERY, (batch.now, event_id, handler, owner))

        self._record(run)

    def release_all(self, owner: str) -> None:
        def run(batch: _Batch) -> None:
            batch.cur.execute(store.RELEASE_ALL, (batch.now, owner, batch.now))

        self._record(run)

    async def flush(self) -> None:
        if self._thread is not None:
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

        def run(batch: _Batch) -> int:
            replayed = store.replay(batch.cur, handler, event_type, chosen, batch.now)
            for name, count in replayed.items():
                batch.dead[name] = batch.dead.get(name, 0) - count
                batch.pending += count
            return sum(replayed.values())

        result: int = await self._submit(run)
        return result

    async def purge(self) -> int:
        def run(batch: _Batch) -> int:
            batch.dead.clear()
            return store.purge(batch.cur)

        result: int = await self._submit(run)
        return result

    # housekeeping and backfill

    async def prune(self) -> int:
        def run(batch: _Batch) -> int:
            cutoff = batch.now - self.dedup_window_seconds
            total = 0
            after: int | None = 0
            while after is not None:
                count, after = store.prune(batch.cur, cutoff, after, _PRUNE_SPAN)
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

    # event-loop side plumbing

    def _submit(
        self,
        call: Call,
        *,
        precheck: Callable[[sqlite3.Cursor, float], bool] | None = None,
        otherwise: Any = None,
    ) -> asyncio.Future[Any]:
        if self._thread is None:
            raise Unavailable("inbox_closed", retry_after=5)
        future: asyncio.Future[Any] = self._loop.create_future()  # type: ignore[union-attr]
        self._queue.put((_CALL, future, call, precheck, otherwise))
        return future

    def _record(self, call: Call) -> None:
        if self._thread is not None:
            self._queue.put((_CALL, None, call, None, None))

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

    @staticmethod
    def _settle(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
        for future, value, error in results:
            if future.done():
                continue
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)

    # writer thread

    def _run(self, opened: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = store.open_connection(str(self.path), self.busy_timeout)
            cur = conn.cursor()
            self._pending = store.count_pending(cur)
            self._dead = store.count_dead(cur)
            self._oldest = store.oldest_pending(cur)
            (version,) = cur.execute("PRAGMA data_version").fetchone()
        except (OSError, sqlite3.Error) as exc:
            loop.call_soon_threadsafe(_fail, opened, exc)
            return
        loop.call_soon_threadsafe(_succeed, opened)
        get, get_nowait = self._queue.get, self._queue.get_nowait
        next_stats = time.monotonic() + self.stats_interval
        next_prune = time.monotonic() + self.prune_interval
        stopping = False
        while not stopping:
            try:
                batch = [get(timeout=self.stats_interval)]
            except queue.Empty:
                batch = []
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(get_nowait())
            stopping = any(op[0] == _STOP for op in batch)
            if batch:
                self._write(conn, batch, loop)
            now = time.monotonic()
            if now >= next_stats or stopping:
                next_stats = now + self.stats_interval
                version = self._refresh(cur, version)
            if (now >= next_prune or self._prune_after) and not stopping:
                next_prune = now + self.prune_interval
                self._prune_some(conn)
        conn.close()

    def _write(
        self, conn: sqlite3.Connection, ops: list[Op], loop: asyncio.AbstractEventLoop
    ) -> None:
        cur = conn.cursor()
        now = self.clock()
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        todo: list[Op] = []
        for op in ops:  # claims with nothing due need no write lock
            if op[0] == _CALL and op[3] is not None and not op[3](cur, now):
                results.append((op[1], op[4], None))
            elif op[0] != _STOP:
                todo.append(op)
        if todo:
            try:
                results += self._transaction(conn, todo, now)
            except sqlite3.IntegrityError:
                for op in todo:  # one bad operation must not fail the others
                    try:
                        results += self._transaction(conn, [op], now)
                    except Exception as exc:
                        results += self._failed([op], exc)
            except Exception as exc:
                results += self._failed(todo, exc)
        if results:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
                loop.call_soon_threadsafe(self._settle, results)

    def _transaction(
        self, conn: sqlite3.Connection, ops: list[Op], now: float
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        cur = conn.cursor()
        batch = _Batch(cur, now, self._pending, dict(self._dead))
        lease = self._lease
        owner, leased, lease_until = (
            (lease[0], lease[1], now + lease[2]) if lease else (None, frozenset(), now)
        )
        full, max_pending = Unavailable, self.max_pending
        results, new, dones = batch.results, batch.new, batch.dones
        cur.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                kind = op[0]
                if kind == _PUT:
                    _, future, event, handlers = op
                    if batch.pending >= max_pending:
                        if cur.execute(store.EVENT_EXISTS, (event.event_id,)).fetchone():
                            results.append((future, False, None))
                        else:
                            results.append((future, None, full("inbox_full", retry_after=5)))
                        continue
                    cur.execute(
                        store.INSERT_EVENT,
                        (
                            event.event_id,
                            event.event_type,
                            event.device_id,
                            event.timestamp.timestamp(),
                            now,
                            event.raw,
                        ),
                    )
                    if cur.rowcount:
                        rowid = cur.lastrowid
                        for name in handlers:
                            if name in leased:
                                new.append((rowid, name, lease_until, owner))
                            else:
                                new.append((rowid, name, now, None))
                        batch.pending += len(handlers)
                        results.append((future, True, None))
                    else:
                        results.append((future, False, None))
                elif kind == _DONE:
                    dones.append((op[2], op[3]))
                else:
                    batch.flush()
                    value = op[2](batch)
                    if op[1] is not None:
                        results.append((op[1], value, None))
            batch.flush()
            cur.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._commits += 1
        self._pending = batch.pending
        if batch.dead != self._dead:
            self._dead = {name: count for name, count in batch.dead.items() if count > 0}
        self._healthy = True
        return results

    def _failed(
        self, ops: list[Op], exc: Exception
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        self._healthy = False
        log.error(
            "inbox_write_failed",
            extra={"fields": {"error": f"{type(exc).__name__}: {exc}"[:200], "ops": len(ops)}},
        )
        return [
            (op[1], None, Unavailable("inbox_error", retry_after=5))
            for op in ops
            if op[1] is not None
        ]

    def _refresh(self, cur: sqlite3.Cursor, version: int) -> int:
        """Refresh what `stats()` reports; recount if another process wrote meanwhile."""
        try:
            (current,) = cur.execute("PRAGMA data_version").fetchone()
            if current != version:
                self._pending = store.count_pending(cur)
                self._dead = store.count_dead(cur)
            self._oldest = store.oldest_pending(cur)
            return int(current)
        except sqlite3.Error as exc:
            log.warning("inbox_stats_failed", extra={"fields": {"error": type(exc).__name__}})
            return version

    def _prune_some(self, conn: sqlite3.Connection) -> None:
        """Prune span by span, each its own commit, yielding to queued work between spans."""
        cutoff = self.clock() - self.dedup_window_seconds
        cur = conn.cursor()
        try:
            while self._prune_after is not None:
                cur.execute("BEGIN IMMEDIATE")
                _, self._prune_after = store.prune(cur, cutoff, self._prune_after, _PRUNE_SPAN)
                cur.execute("COMMIT")
                self._commits += 1
                if not self._queue.empty():
                    return  # go on at the next tick
            self._prune_after = 0
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.warning("inbox_prune_failed", extra={"fields": {"error": type(exc).__name__}})


def _succeed(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _fail(future: asyncio.Future[None], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
