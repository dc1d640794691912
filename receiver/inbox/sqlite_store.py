"""The SQLite inbox's tables and statements, run on the writer thread's connection.

Tables::

    events        one row per event (or quarantined body): event_id (unique; NULL for a
                  quarantined body), event_type, device_id, event_time, received_at, raw.
                  Rows are appended in receive order, so the rowid order is the receive
                  order (no index on received_at: one B-tree less to write per event).
    deliveries    one row per pending (event, handler): attempts, due_at, owner, last_error.
                  A lease is `due_at` in the future with `owner` set: nobody else claims the
                  row until it is due again. A success deletes the row.
    dead_letters  one row per dead (event, handler): attempts, last_error, failed_at

Everything here is a plain function of a cursor and arguments (no threads, no clocks), so the
writer can run several of them in one transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping
from datetime import UTC, datetime

from receiver.inbox.base import QUARANTINE, DeadLetter, Delivery
from receiver.sqlite_wal import durable

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    event_id TEXT UNIQUE,
    event_type TEXT NOT NULL,
    device_id TEXT NOT NULL,
    event_time REAL,
    received_at REAL NOT NULL,
    raw BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    event_rowid INTEGER NOT NULL,
    handler TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due_at REAL NOT NULL,
    owner TEXT,
    last_error TEXT,
    PRIMARY KEY (event_rowid, handler)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (handler, due_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    event_rowid INTEGER NOT NULL,
    handler TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    failed_at REAL NOT NULL,
    PRIMARY KEY (event_rowid, handler)
) WITHOUT ROWID;
"""

# Only a conflict on the key is ignored; any other broken constraint is an error.
INSERT_EVENT = (
    "INSERT INTO events (event_id, event_type, device_id, event_time, received_at, raw)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
)
EVENT_EXISTS = "SELECT 1 FROM events WHERE event_id = ?"
INSERT_DELIVERY = (
    "INSERT INTO deliveries (event_rowid, handler, due_at, owner) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (event_rowid, handler) DO NOTHING"
)
_KEY = "event_rowid = (SELECT id FROM events WHERE event_id = ?) AND handler = ?"
DELETE_DELIVERY = f"DELETE FROM deliveries WHERE {_KEY}"
RETRY_DELIVERY = (
    f"UPDATE deliveries SET attempts = ?, due_at = ?, owner = NULL, last_error = ?"
    f" WHERE {_KEY} AND owner = ?"
)
RELEASE_DELIVERY = f"UPDATE deliveries SET due_at = ?, owner = NULL WHERE {_KEY} AND owner = ?"
RELEASE_ALL = "UPDATE deliveries SET due_at = ?, owner = NULL WHERE owner = ? AND due_at > ?"
LEASE_OWNERS = "SELECT DISTINCT owner FROM deliveries WHERE owner IS NOT NULL AND due_at > ?"
INSERT_DEAD = (
    "INSERT OR REPLACE INTO dead_letters (event_rowid, handler, attempts, last_error, failed_at)"
    f" SELECT event_rowid, handler, ?, ?, ? FROM deliveries WHERE {_KEY} AND owner = ?"
)
DUE_ANY = "SELECT 1 FROM deliveries WHERE handler = ? AND due_at <= ? LIMIT 1"
COUNT_PENDING = "SELECT COUNT(*) FROM deliveries"
COUNT_DEAD = "SELECT handler, COUNT(*) FROM dead_letters GROUP BY handler"
OLDEST_PENDING = (
    "SELECT received_at FROM events WHERE id = (SELECT MIN(event_rowid) FROM deliveries)"
)


def open_connection(path: str, busy_timeout: float) -> sqlite3.Connection:
    """A connection in WAL mode with full syncs: a commit survives power loss."""
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        durable(conn, busy_timeout)
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error:
        conn.close()
        raise
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"inbox schema version {version} is newer than this dtpush")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        conn.close()
        raise
    return conn


def count_pending(cur: sqlite3.Cursor) -> int:
    (count,) = cur.execute(COUNT_PENDING).fetchone()
    return int(count)


def count_dead(cur: sqlite3.Cursor) -> dict[str, int]:
    return {handler: int(count) for handler, count in cur.execute(COUNT_DEAD)}


def oldest_pending(cur: sqlite3.Cursor) -> float | None:
    row = cur.execute(OLDEST_PENDING).fetchone()
    return None if row is None else float(row[0])


def dead(
    cur: sqlite3.Cursor,
    event_id: str,
    handler: str,
    owner: str,
    attempts: int,
    error: str,
    now: float,
) -> bool:
    """Move a leased delivery to the dead letters; False when it is not ours any more."""
    cur.execute(INSERT_DEAD, (attempts, error, now, event_id, handler, owner))
    if not cur.rowcount:
        return False
    cur.execute(DELETE_DELIVERY, (event_id, handler))
    return True


def quarantine(cur: sqlite3.Cursor, raw: bytes, reason: str, now: float) -> None:
    cur.execute(INSERT_EVENT, (None, "", "", None, now, raw))
    cur.execute(
        "INSERT INTO dead_letters (event_rowid, handler, attempts, last_error, failed_at)"
        " VALUES (?, ?, 0, ?, ?)",
        (cur.lastrowid, QUARANTINE, reason, now),
    )


def has_due(cur: sqlite3.Cursor, handler: str, now: float) -> bool:
    return cur.execute(DUE_ANY, (handler, now)).fetchone() is not None


def claim(
    cur: sqlite3.Cursor, wanted: Mapping[str, int], owner: str, lease_until: float, now: float
) -> list[Delivery]:
    """Lease up to `wanted[handler]` due deliveries per handler, oldest due first."""
    claimed: list[Delivery] = []
    for handler, limit in wanted.items():
        rows = cur.execute(
            "SELECT d.event_rowid, d.attempts, e.event_id, e.raw FROM deliveries d"
            " JOIN events e ON e.id = d.event_rowid"
            " WHERE d.handler = ? AND d.due_at <= ? ORDER BY d.due_at LIMIT ?",
            (handler, now, limit),
        ).fetchall()
        if not rows:
            continue
        cur.executemany(
            "UPDATE deliveries SET due_at = ?, owner = ? WHERE event_rowid = ? AND handler = ?",
            [(lease_until, owner, row[0], handler) for row in rows],
        )
        claimed += [Delivery(row[2], handler, row[1], row[3]) for row in rows]
    return claimed


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def list_dead(cur: sqlite3.Cursor, handler: str | None, event_type: str | None) -> list[DeadLetter]:
    sql = (
        "SELECT e.event_id, e.event_type, x.handler, x.attempts, x.last_error, x.failed_at,"
        " e.received_at, e.raw FROM dead_letters x JOIN events e ON e.id = x.event_rowid"
        " WHERE (?1 IS NULL OR x.handler = ?1) AND (?2 IS NULL OR e.event_type = ?2)"
        " ORDER BY x.failed_at, e.id"
    )
    return [
        DeadLetter(
            event_id=row[0],
            event_type=row[1] if row[0] is not None else None,
            handler=row[2],
            attempts=row[3],
            last_error=row[4],
            failed_at=_when(row[5]),
            received_at=_when(row[6]),
            raw=row[7],
        )
        for row in cur.execute(sql, (handler, event_type))
    ]


def replay(
    cur: sqlite3.Cursor,
    handler: str | None,
    event_type: str | None,
    ids: Collection[str] | None,
    now: float,
) -> dict[str, int]:
    """Make matching dead letters pending again; how many, per handler."""
    rows = cur.execute(
        "SELECT x.event_rowid, x.handler, e.event_id FROM dead_letters x"
        " JOIN events e ON e.id = x.event_rowid"
        " WHERE x.handler != ?3 AND e.event_id IS NOT NULL"
        " AND (?1 IS NULL OR x.handler = ?1) AND (?2 IS NULL OR e.event_type = ?2)",
        (handler, event_type, QUARANTINE),
    ).fetchall()
    if ids is not None:
        wanted = set(ids)
        rows = [row for row in rows if row[2] in wanted]
    keys = [(row[0], row[1]) for row in rows]
    cur.executemany(
        "INSERT INTO deliveries (event_rowid, handler, attempts, due_at) VALUES (?, ?, 0, ?)"
        " ON CONFLICT (event_rowid, handler) DO NOTHING",
        [(rowid, name, now) for rowid, name in keys],
    )
    cur.executemany("DELETE FROM dead_letters WHERE event_rowid = ? AND handler = ?", keys)
    replayed: dict[str, int] = {}
    for _, name in keys:
        replayed[name] = replayed.get(name, 0) + 1
    return replayed


def purge(cur: sqlite3.Cursor) -> int:
    cur.execute("DELETE FROM dead_letters")
    count = cur.rowcount
    cur.execute("DELETE FROM events WHERE event_id IS NULL")
    return count


def prune(cur: sqlite3.Cursor, cutoff: float, after: int, span: int) -> tuple[int, int | None]:
    """Forget done events received before `cutoff`, in the next `span` rowids after `after`.

    Returns how many were deleted and where to go on from, or None once the next row is
    younger than `cutoff` (rows are in receive order; each row is still checked itself, so a
    clock that stepped back can only make an event stay longer, never leave early).
    """
    row = cur.execute(
        "SELECT id, received_at FROM events WHERE id > ? ORDER BY id LIMIT 1", (after,)
    ).fetchone()
    if row is None or row[1] >= cutoff:
        return 0, None
    first = int(row[0])
    cur.execute(
        "DELETE FROM events WHERE id >= ? AND id < ? AND received_at < ?"
        " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_rowid = events.id)"
        " AND NOT EXISTS (SELECT 1 FROM dead_letters x WHERE x.event_rowid = events.id)",
        (first, first + span, cutoff),
    )
    return cur.rowcount, first + span - 1


def newest_received_at(cur: sqlite3.Cursor) -> datetime | None:
    row = cur.execute(
        "SELECT received_at FROM events WHERE event_id IS NOT NULL ORDER BY id DESC LIMIT 1"
    ).fetchone()
    return None if row is None else _when(row[0])


def last_event_time_by_device(cur: sqlite3.Cursor) -> dict[str, datetime]:
    rows = cur.execute(
        "SELECT device_id, MAX(event_time) FROM events"
        " WHERE event_id IS NOT NULL AND device_id != '' AND event_time IS NOT NULL"
        " GROUP BY device_id"
    )
    return {device: _when(stamp) for device, stamp in rows}
