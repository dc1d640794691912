"""The SQLite inbox's writer: the one thread that writes the file, in grouped commits.

Operations arrive on a queue as tuples `(kind, future or None, *arguments)`. The writer takes
everything queued, runs it in one transaction, commits once (one fsync of the write-ahead
log with `synchronous=FULL`) and settles the futures of the whole batch in the event loop
with a single `call_soon_threadsafe`. sqlite3 releases the GIL while SQLite works, so the
event loop keeps running meanwhile.

Counters (`pending`, `dead`, `oldest`, `commits`) are written here only and read by the
event loop; a batch's effect on them is applied only after its commit. Between batches, at
most every `stats_interval` seconds, the writer refreshes what the counters cannot follow by
themselves (the oldest pending age; a recount when another process wrote the file, seen by
`PRAGMA data_version`), and every `prune_interval` seconds it forgets done events older than
the dedup window, a span at a time so queued work is never held up for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from receiver.errors import Unavailable
from receiver.inbox import sqlite_store as store

log = logging.getLogger("dtpush.inbox")

# Operation kinds: (PUT, future, event, handlers), (DONE, future | None, event_ids, handler),
# (CALL, future or None, call, precheck or None, answer when the precheck says no), (STOP, None).
PUT, DONE, CALL, STOP = 0, 1, 2, 3
Op = tuple[Any, ...]
Result = tuple["asyncio.Future[Any]", Any, BaseException | None]
# A precheck is a read outside any transaction: False means "nothing to do, skip the call".
Precheck = Callable[[sqlite3.Cursor, float], bool]

PRUNE_SPAN = 5000


class Batch:
    """One transaction's work and its effects on the counters (applied only on commit)."""

    __slots__ = ("cur", "dead", "dones", "new", "now", "pending")

    def __init__(self, cur: sqlite3.Cursor, now: float, pending: int, dead: dict[str, int]):
        self.cur = cur
        self.now = now
        self.pending = pending
        self.dead = dead
        self.new: list[tuple[int | None, str, float, str | None]] = []
        self.dones: list[tuple[str, str]] = []

    def flush(self) -> None:
        """Write the queued delivery inserts and deletes (kept in order with other calls)."""
        cur = self.cur
        if self.new:
            cur.executemany(store.INSERT_DELIVERY, self.new)
            self.pending += cur.rowcount - len(self.new)
            self.new.clear()  # cleared in place: the writer holds on to these lists
        if self.dones:
            cur.executemany(store.DELETE_DELIVERY, self.dones)
            self.pending -= cur.rowcount
            self.dones.clear()


class Writer:
    """Owns the write connection of one inbox file; see the module docstring."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float],
        max_pending: int,
        dedup_window_seconds: float,
        busy_timeout: float,
        stats_interval: float,
        prune_interval: float,
    ) -> None:
        self.path = path
        self.clock = clock
        self.max_pending = max_pending
        self.dedup_window_seconds = dedup_window_seconds
        self.busy_timeout = busy_timeout
        self.stats_interval = stats_interval
        self.prune_interval = prune_interval
        self.queue: queue.SimpleQueue[Op] = queue.SimpleQueue()
        #: (owner, handlers, lease seconds): new deliveries of these handlers start leased.
        self.lease: tuple[str, frozenset[str], float] | None = None
        self.pending = 0
        self.dead: dict[str, int] = {}
        self.oldest: float | None = None
        self.commits = 0
        self.healthy = False
        self._prune_after: int | None = 0
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop, opened: asyncio.Future[None]) -> None:
        """Open the file on the thread; `opened` gets None or the error that stopped it."""
        self._thread = threading.Thread(
            target=self._run, args=(loop, opened), name="dtpush-inbox-writer", daemon=True
        )
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Commit everything queued so far, then close (blocks: call it off the loop)."""
        self.queue.put((STOP, None))
        if self._thread is not None:
            self._thread.join()

    def _run(self, loop: asyncio.AbstractEventLoop, opened: asyncio.Future[None]) -> None:
        conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = store.open_connection(str(self.path), self.busy_timeout)
            cur = conn.cursor()
            self.pending = store.count_pending(cur)
            self.dead = store.count_dead(cur)
            self.oldest = store.oldest_pending(cur)
            (version,) = cur.execute("PRAGMA data_version").fetchone()
        except (OSError, sqlite3.Error) as exc:
            if conn is not None:
                conn.close()
            failed: list[Result] = [(opened, None, exc)]
            loop.call_soon_threadsafe(_settle, failed)
            return
        self.healthy = True
        log.info(
            "inbox_opened",
            extra={"fields": {"pending": self.pending, "dead_letters": sum(self.dead.values())}},
        )
        ready: list[Result] = [(opened, None, None)]
        loop.call_soon_threadsafe(_settle, ready)
        get, get_nowait = self.queue.get, self.queue.get_nowait
        next_stats = time.monotonic() + self.stats_interval
        next_prune = time.monotonic() + self.prune_interval
        stopping = False
        while not stopping:
            try:
                ops = [get(timeout=self.stats_interval)]
            except queue.Empty:
                ops = []
            with contextlib.suppress(queue.Empty):
                while True:
                    ops.append(get_nowait())
            stopping = any(op[0] == STOP for op in ops)
            if ops:
                results = self._write(conn, ops)
                if results:
                    with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                        loop.call_soon_threadsafe(_settle, results)
            now = time.monotonic()
            if now >= next_stats or stopping:
                next_stats = now + self.stats_interval
                version = self._refresh(cur, version)
            if (now >= next_prune or self._prune_after) and not stopping:
                next_prune = now + self.prune_interval
                self._prune_some(conn)
        conn.close()

    def _write(self, conn: sqlite3.Connection, ops: list[Op]) -> list[Result]:
        cur = conn.cursor()
        now = self.clock()
        results: list[Result] = []
        todo: list[Op] = []
        for op in ops:  # e.g. claims with nothing due: no write lock taken for them
            if op[0] == STOP:
                continue
            if op[0] == CALL and op[3] is not None and not _needed(op[3], cur, now):
                results.append((op[1], op[4], None))
            else:
                todo.append(op)
        if not todo:
            return results
        try:
            results += self._transaction(conn, todo, now)
        except sqlite3.OperationalError as exc:  # busy, I/O, disk full: all would fail alike
            results += self._failed(todo, exc)
        except Exception as exc:
            if len(todo) == 1:
                return results + self._failed(todo, exc)
            for op in todo:  # one bad operation must not fail the others
                try:
                    results += self._transaction(conn, [op], now)
                except Exception as error:
                    results += self._failed([op], error)
        return results

    def _transaction(self, conn: sqlite3.Connection, ops: list[Op], now: float) -> list[Result]:
        cur = conn.cursor()
        batch = Batch(cur, now, self.pending, dict(self.dead))
        owner, leased, lease_until = None, frozenset[str](), now
        if self.lease is not None:
            owner, leased, lease_until = self.lease[0], self.lease[1], now + self.lease[2]
        max_pending = self.max_pending
        results: list[Result] = []
        new, dones = batch.new, batch.dones
        cur.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                kind = op[0]
                if kind == PUT:
                    _, future, event, handlers = op
                    if batch.pending >= max_pending:
                        if cur.execute(store.EVENT_EXISTS, (event.event_id,)).fetchone():
                            results.append((future, False, None))
                        else:
                            results.append((future, None, Unavailable("inbox_full", 5)))
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
                    if not cur.rowcount:
                        results.append((future, False, None))
                        continue
                    rowid = cur.lastrowid
                    for name in handlers:
                        if name in leased:
                            new.append((rowid, name, lease_until, owner))
                        else:
                            new.append((rowid, name, now, None))
                    batch.pending += len(handlers)
                    results.append((future, True, None))
                elif kind == DONE:
                    handler = op[3]
                    dones.extend([(event_id, handler) for event_id in op[2]])
                    if op[1] is not None:
                        results.append((op[1], None, None))
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
        self.commits += 1
        self.pending = batch.pending
        if batch.dead != self.dead:
            self.dead = {name: count for name, count in batch.dead.items() if count > 0}
        self.healthy = True
        return results

    def _failed(self, ops: list[Op], exc: Exception) -> list[Result]:
        self.healthy = False
        log.error(
            "inbox_write_failed",
            extra={"fields": {"error": f"{type(exc).__name__}: {exc}"[:200], "ops": len(ops)}},
        )
        return [(op[1], None, Unavailable("inbox_error", 5)) for op in ops if op[1] is not None]

    def _refresh(self, cur: sqlite3.Cursor, version: int) -> int:
        """Refresh the oldest pending age; recount when another process wrote meanwhile."""
        try:
            (current,) = cur.execute("PRAGMA data_version").fetchone()
            if current != version:
                self.pending = store.count_pending(cur)
                self.dead = store.count_dead(cur)
            self.oldest = store.oldest_pending(cur)
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
                _, self._prune_after = store.prune(cur, cutoff, self._prune_after, PRUNE_SPAN)
                cur.execute("COMMIT")
                self.commits += 1
                if not self.queue.empty():
                    return  # go on after the queued work
            self._prune_after = 0
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._prune_after = 0  # try again at the next interval
            log.warning("inbox_prune_failed", extra={"fields": {"error": type(exc).__name__}})


def _needed(precheck: Precheck, cur: sqlite3.Cursor, now: float) -> bool:
    try:
        return precheck(cur, now)
    except sqlite3.Error:
        return True  # let the transaction meet (and report) the error


def _settle(results: list[Result]) -> None:
    """In the event loop: hand each waiting future its result."""
    for future, value, error in results:
        if future.done():
            continue  # timed out or cancelled meanwhile
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)
