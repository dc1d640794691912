"""The built-in `postgres` handler: the `sqlite` handler's two tables, in PostgreSQL (asyncpg).

Options: `dsn` (required; `postgresql://user:password@host:5432/db`), `table_prefix` (default
empty: tables `events` and `latest`; `dt_` gives `dt_events` and `dt_latest`) and
`batch_size` (default 100, the most events one transaction takes).

Tables, created at `start()` when missing (spec §13)::

    {prefix}events(event_id text primary key, event_type, device_id, project_id,
                   timestamp timestamptz, received_at timestamptz, labels jsonb, data jsonb)
    {prefix}latest(device_id, event_type, event_id, timestamp timestamptz, data jsonb,
                   primary key (device_id, event_type))

`data` is the push's `event.data` object as DT sent it. Storing an `event_id` again changes
nothing (DT delivers at least once), and `latest` is replaced only by a strictly newer
`timestamp` (DT may deliver out of order).

`handle(event)` queues the event and returns once the transaction holding it has committed;
writers take everything queued meanwhile (up to `batch_size`) into one transaction, so a burst
pays one commit per batch. `handle_batch(events)` queues up to `batch_size` events at once
(delivery hands fresh events over that way). A failed batch fails its callers (delivery retries them), marks the
handler not ready, and a probe marks it ready again once the database answers. The DSN's
password never appears in a log line, an error or a repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import asyncpg
import orjson

from receiver.errors import HandlerError
from receiver.registry import Handler

if TYPE_CHECKING:
    from receiver.events import Event

log = logging.getLogger("dtpush.handlers.postgres")

#: Concurrent transactions (and pool connections) of one handler.
WRITERS = 2
#: Bounds of `batch_size`.
MAX_BATCH_SIZE = 10_000
#: Seconds to connect, and for one statement, before a batch fails.
CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 30.0
#: Seconds between probes of an unreachable database (doubling up to the second figure).
PROBE_SECONDS = (0.5, 5.0)

_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,39}")
_SCHEMES = ("postgres", "postgresql")


def _schema(prefix: str) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS {prefix}events (
    event_id    text PRIMARY KEY,
    event_type  text NOT NULL,
    device_id   text NOT NULL,
    project_id  text NOT NULL,
    timestamp   timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    labels      jsonb NOT NULL,
    data        jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS {prefix}events_device_time ON {prefix}events (device_id, timestamp);
CREATE TABLE IF NOT EXISTS {prefix}latest (
    device_id   text NOT NULL,
    event_type  text NOT NULL,
    event_id    text NOT NULL,
    timestamp   timestamptz NOT NULL,
    data        jsonb NOT NULL,
    PRIMARY KEY (device_id, event_type)
);
"""


def _insert_events(prefix: str) -> str:
    return (
        f"INSERT INTO {prefix}events (event_id, event_type, device_id, project_id, timestamp,"
        " received_at, labels, data)"
        " SELECT i, t, d, p, ts, r, l::jsonb, x::jsonb FROM unnest("
        "$1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],"
        " $7::text[], $8::text[]) AS u(i, t, d, p, ts, r, l, x)"
        " ON CONFLICT (event_id) DO NOTHING"
    )


def _upsert_latest(prefix: str) -> str:
    # From the stored rows, so a redelivered id with other content changes nothing either; one
    # row per key (an upsert may not touch a row twice), taken in key order (lock order).
    return (
        f"INSERT INTO {prefix}latest (device_id, event_type, event_id, timestamp, data)"
        " SELECT DISTINCT ON (device_id, event_type) device_id, event_type, event_id, timestamp,"
        f" data FROM {prefix}events WHERE event_id = ANY($1::text[])"
        " ORDER BY device_id, event_type, timestamp DESC, event_id"
        " ON CONFLICT (device_id, event_type) DO UPDATE SET event_id = excluded.event_id,"
        f" timestamp = excluded.timestamp, data = excluded.data"
        f" WHERE excluded.timestamp > {prefix}latest.timestamp"
    )


@dataclass(frozen=True, slots=True)
class _Item:
    event: Event
    received_at: datetime
    done: asyncio.Future[None]


class PostgresHandler(Handler):
    """Stores every event in PostgreSQL: `{prefix}events` and `{prefix}latest`."""

    def __init__(self, dsn: str, table_prefix: str = "", batch_size: int | str = 100) -> None:
        super().__init__()
        self._dsn = _check_dsn(dsn)
        self._secrets = _secrets(self._dsn)
        self.safe_dsn = mask_dsn(self._dsn)
        if not isinstance(table_prefix, str) or not (
            table_prefix == "" or _PREFIX.fullmatch(table_prefix)
        ):
            raise ValueError(
                "table_prefix: expected lower-case letters, digits and _ (at most 40, not"
                f" starting with a digit), got {table_prefix!r}"
            )
        self.table_prefix = table_prefix
        self.batch_size = _whole(batch_size, "batch_size", 1, MAX_BATCH_SIZE)
        self.max_batch = self.batch_size
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._pool: asyncpg.Pool[Any] | None = None
        self._writers: list[asyncio.Task[None]] = []
        self._probe: asyncio.Task[None] | None = None
        self._closing = False
        self._healthy = False
        self._commits = 0

    @property
    def commits(self) -> int:
        """How many batches (transactions) have been committed so far."""
        return self._commits

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.safe_dsn}>"

    async def start(self) -> None:
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=WRITERS,
                timeout=CONNECT_TIMEOUT,
                command_timeout=COMMAND_TIMEOUT,
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise HandlerError(
                self.name or "postgres", f"cannot connect to {self.safe_dsn}: {self._say(exc)}"
            ) from None
        try:
            async with pool.acquire() as connection:
                await connection.execute(_schema(self.table_prefix))
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await pool.close()
            raise HandlerError(
                self.name or "postgres",
                f"cannot create tables in {self.safe_dsn}: {self._say(exc)}",
            ) from None
        self._pool, self._healthy = pool, True
        self._writers = [asyncio.create_task(self._write_loop(pool)) for _ in range(WRITERS)]

    async def handle(self, event: Event) -> None:
        await self.handle_batch((event,))

    async def handle_batch(self, events: Sequence[Event]) -> None:
        """Queue the events for the writers; return when all are committed.

        Up to `batch_size` events come in one call (`max_batch`), so they normally share one
        transaction; if the writers split them and one part fails, the call fails and
        delivery retries each event alone (storing an event again changes nothing).
        """
        if self._pool is None or self._closing:
            raise RuntimeError("the postgres handler is not running")
        loop = asyncio.get_running_loop()
        received_at = datetime.now(UTC)
        waits: list[asyncio.Future[None]] = []
        for event in events:
            done: asyncio.Future[None] = loop.create_future()
            self._queue.put_nowait(_Item(event, received_at, done))
            waits.append(done)
        await asyncio.gather(*waits)

    async def close(self) -> None:
        pool = self._pool
        if pool is None or self._closing:
            return
        self._closing = True
        for _ in self._writers:
            self._queue.put_nowait(None)  # everything queued before it is still written
        await asyncio.gather(*self._writers, return_exceptions=True)
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        try:
            await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT)
        except TimeoutError:
            pool.terminate()
        self._healthy = False

    def ready(self) -> bool:
        return self._pool is not None and self._healthy and not self._closing

    # Writers.

    async def _write_loop(self, pool: asyncpg.Pool[Any]) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.batch_size:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            error = await self._write(pool, batch)
            _settle(batch, error)

    async def _write(self, pool: asyncpg.Pool[Any], batch: list[_Item]) -> Exception | None:
        items = sorted(batch, key=lambda item: item.event.event_id)  # lock order
        columns: list[list[Any]] = [[] for _ in range(8)]
        for item in items:
            event = item.event
            row = (
                event.event_id,
                event.event_type,
                event.device_id,
                event.project_id,
                event.timestamp,
                item.received_at,
                orjson.dumps(event.labels).decode(),
                orjson.dumps(event.raw_data()).decode(),
            )
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        try:
            async with pool.acquire() as connection, connection.transaction():
                await connection.execute(_insert_events(self.table_prefix), *columns)
                await connection.execute(_upsert_latest(self.table_prefix), columns[0])
        except Exception as exc:  # a writer outlives a failed batch and answers its callers
            failure = RuntimeError(f"postgres write failed: {self._say(exc)}")
            if self._healthy:
                log.warning(
                    "postgres_write_failed",
                    extra={
                        "fields": {
                            "handler": self.name,
                            "events": len(batch),
                            "error": str(failure),
                        }
                    },
                )
            self._unhealthy(pool)
            return failure
        self._commits += 1
        self._healthy = True
        return None

    # Readiness.

    def _unhealthy(self, pool: asyncpg.Pool[Any]) -> None:
        self._healthy = False
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._probe_until_reachable(pool))

    async def _probe_until_reachable(self, pool: asyncpg.Pool[Any]) -> None:
        delay, longest = PROBE_SECONDS
        query = f"SELECT 1 FROM {self.table_prefix}events LIMIT 0"
        while not self._healthy and not self._closing:
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)
            try:
                async with pool.acquire() as connection:
                    await connection.execute(query)
            except Exception:  # still unreachable (or the table is gone): keep probing
                continue
            self._healthy = True
            log.info("postgres_reachable", extra={"fields": {"handler": self.name}})

    def _say(self, exc: BaseException) -> str:
        """`exc` as one line, with any secret of the DSN masked."""
        text = " ".join(str(exc).split()) or type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def mask_dsn(dsn: str) -> str:
    """`dsn` with its password (in the user part or a `password=` parameter) shown as `***`."""
    parts = urlsplit(dsn)
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, "***" if k.lower() in ("password", "passfile") else v) for k, v in pairs],
            safe="*",
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _check_dsn(dsn: object) -> str:
    if not isinstance(dsn, str) or not dsn.strip():
        raise ValueError("dsn: expected postgresql://user:password@host:port/database")
    scheme = dsn.partition("://")[0].lower() if "://" in dsn else ""
    if scheme not in _SCHEMES:
        raise ValueError(  # the value may hold a password: never quoted back
            "dsn: expected a postgresql:// or postgres:// URL"
            " (postgresql://user:password@host:port/database)"
        )
    try:
        urlsplit(dsn).port  # noqa: B018 - a bad port raises here
    except ValueError:
        raise ValueError("dsn: the port is not a number from 0 to 65535") from None
    return dsn


def _secrets(dsn: str) -> list[str]:
    """The password of `dsn`, as written and decoded, for masking error texts."""
    parts = urlsplit(dsn)
    found = []
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        found.append(userinfo.partition(":")[2])
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() == "password":
            found.append(value)
    every = {text for secret in found for text in (secret, unquote(secret)) if text}
    return sorted(every, key=len, reverse=True)


def _whole(value: object, option: str, low: int, high: int) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not low <= number <= high:
        raise ValueError(f"{option}: expected a whole number from {low} to {high}, got {value!r}")
    return number


def _settle(batch: list[_Item], error: Exception | None) -> None:
    for item in batch:
        if item.done.done():  # the caller gave up waiting (timeout); the row may be stored
            continue
        if error is None:
            item.done.set_result(None)
        else:
            failure = RuntimeError(str(error))  # one each: no traceback shared between callers
            item.done.set_exception(failure)
