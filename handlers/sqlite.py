"""The built-in `sqlite` handler: every event in `events`, the newest per device and type in `latest`.

Tables (spec §13)::

    events(event_id primary key, event_type, device_id, project_id, timestamp, received_at,
           labels, data)
    latest(device_id, event_type, event_id, timestamp, data, primary key (device_id, event_type))

Times are RFC 3339 UTC text with microseconds (`2024-05-29T10:34:03.970415Z`, fixed width, so
they order correctly as text); `labels` and `data` are JSON text, `data` being the push's
`event.data` object as DT sent it. Storing an `event_id` again changes nothing (DT delivers at
least once), and `latest` is replaced only by a strictly newer `timestamp` (DT may deliver out
of order).

One writer thread owns the connection (WAL, `synchronous=FULL`) and commits in groups:
`handle(event)` (or `handle_batch(events)`) queues the rows and returns once the transaction
holding them has committed, and the writer takes everything queued meanwhile into its next
transaction, so a burst of events pays one sync instead of one per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from receiver.errors import HandlerError
from receiver.registry import Handler
from receiver.runtime import run_as_batch_work
from receiver.sqlite_wal import durable

if TYPE_CHECKING:
    from receiver.events import Event

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id    TEXT PRIMARY KEY,
    event_type  TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    project_id  TEXT NOT NULL,
    timestamp   TEXT NOT NULL,
    received_at TEXT NOT NULL,
    labels      TEXT NOT NULL,
    data        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_device_time ON events (device_id, timestamp);
CREATE TABLE IF NOT EXISTS latest (
    device_id   TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    timestamp   TEXT NOT NULL,
    data        TEXT NOT NULL,
    PRIMARY KEY (device_id, event_type)
);
"""

_INSERT_EVENT = (
    "INSERT INTO events (event_id, event_type, device_id, project_id, timestamp, received_at,"
    " labels, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
)
# `latest` takes the stored row, so a redelivered id with other content changes nothing either.
_UPSERT_LATEST = (
    "INSERT INTO latest (device_id, event_type, event_id, timestamp, data)"
    " SELECT device_id, event_type, event_id, timestamp, data FROM events WHERE event_id = ?"
    " ON CONFLICT (device_id, event_type) DO UPDATE SET event_id = excluded.event_id,"
    " timestamp = excluded.timestamp, data = excluded.data"
    " WHERE excluded.timestamp > latest.timestamp"
)

#: The most events one transaction takes.
MAX_BATCH = 1024
#: Seconds a write waits for another process that holds the file.
BUSY_TIMEOUT = 5.0

_EventRow = tuple[str, str, str, str, str, str, str, str]
_Item = tuple[Sequence["Event"], float, "asyncio.Future[None]"]


def utc_text(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds and `Z`, fixed width (a naive time is taken as UTC)."""
    if moment.tzinfo is not UTC and moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


class SqliteHandler(Handler):
    """Stores every event in a SQLite file (option `path`, default `dtpush-data/events.db`)."""

    def __init__(self, path: str | os.PathLike[str] = "dtpush-data/events.db") -> None:
        super().__init__()
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            raise ValueError(f"path: expected a file path, got {path!r}")
        self.path = Path(path)
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._healthy = False
        self._commits = 0

    @property
    def commits(self) -> int:
        """How many transactions the writer has committed so far."""
        return self._commits

    async def start(self) -> None:
        if self._thread is not None:
            return
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = loop.create_future()
        thread = threading.Thread(
            target=self._run, args=(loop, opened), name=f"dtpush-sqlite {self.path}", daemon=True
        )
        thread.start()
        try:
            await opened
        except (OSError, sqlite3.Error) as exc:
            await asyncio.to_thread(thread.join)
            raise HandlerError(self.name or "sqlite", f"cannot open {self.path}: {exc}") from exc
        self._loop, self._thread, self._healthy = loop, thread, True

    async def handle(self, event: Event) -> None:
        await self.handle_batch((event,))

    async def handle_batch(self, events: Sequence[Event]) -> None:
        loop = self._loop
        if loop is None or self._closing:
            raise RuntimeError("the sqlite handler is not running")
        done: asyncio.Future[None] = loop.create_future()
        self._queue.put((events, time.time(), done))  # the rows are built in the writer thread
        await done

    async def close(self) -> None:
        thread = self._thread
        if thread is None or self._closing:
            return
        self._closing = True
        self._queue.put(None)  # everything queued before it is still written
        await asyncio.to_thread(thread.join)
        self._healthy = False

    def ready(self) -> bool:
        thread = self._thread
        return self._healthy and not self._closing and thread is not None and thread.is_alive()

    # The writer thread.

    def _run(self, loop: asyncio.AbstractEventLoop, opened: asyncio.Future[None]) -> None:
        run_as_batch_work()  # woken by every queued batch, it must not preempt the event loop
        try:
            connection = self._connect()
        except (OSError, sqlite3.Error) as exc:
            loop.call_soon_threadsafe(_opened, opened, exc)
            return
        loop.call_soon_threadsafe(_opened, opened, None)
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    break
                batch = [first]
                size = len(first[0])
                while size < MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                    size += len(item[0])
                rows = [_row(event, at) for events, at, _ in batch for event in events]
                error = self._write(connection, rows)
                try:
                    loop.call_soon_threadsafe(_settle, [done for _, _, done in batch], error)
                except RuntimeError:  # the event loop is gone: nobody is waiting any more
                    return
        finally:
            connection.close()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            durable(connection, BUSY_TIMEOUT)
            connection.executescript(SCHEMA)
        except sqlite3.Error:
            connection.close()
            raise
        return connection

    def _write(self, connection: sqlite3.Connection, rows: list[_EventRow]) -> Exception | None:
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(_INSERT_EVENT, rows)
            connection.executemany(_UPSERT_LATEST, [(row[0],) for row in rows])
            connection.execute("COMMIT")
        except Exception as exc:  # the writer must outlive a failed batch and answer its waiters
            with contextlib.suppress(sqlite3.Error):  # SQLite rolls back itself when it must
                connection.rollback()
            self._healthy = False
            return exc
        self._commits += 1
        self._healthy = True
        return None


def _row(event: Event, received_at: float) -> _EventRow:
    return (
        event.event_id,
        event.event_type,
        event.device_id,
        event.project_id,
        utc_text(event.timestamp),
        utc_text(datetime.fromtimestamp(received_at, UTC)),
        orjson.dumps(event.labels).decode(),
        orjson.dumps(event.raw_data()).decode(),
    )


def _opened(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():  # the caller gave up waiting (timeout); the row is stored anyway
            continue
        if error is None:
            future.set_result(None)
        else:
            failure = RuntimeError(f"sqlite write failed: {error}")
            failure.__cause__ = error
            future.set_exception(failure)
