"""How dtpush sets up its SQLite files: WAL mode, full syncs, and a busy timeout.

`durable(conn, timeout)` is what the inbox and the `sqlite` handler both call on a new
connection: a commit then survives power loss, and a write waits up to `timeout` seconds
for another process that holds the file.

Changing a file's journal mode needs it to itself: while another connection has it open
(two workers, or `serve --no-workers` and a `worker`, creating the same file at the same
moment), SQLite answers `PRAGMA journal_mode = WAL` with SQLITE_BUSY at once, without
waiting through the busy timeout. So the change is tried again, with short pauses, until it
succeeds or the timeout has passed. Once a file is in WAL mode it stays so and this is
immediate.
"""

from __future__ import annotations

import sqlite3
import time

_FIRST_PAUSE = 0.001
_LONGEST_PAUSE = 0.05


def use_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Put the file of `conn` in WAL mode, waiting up to `timeout` seconds for other openers."""
    deadline = time.monotonic() + timeout
    pause = _FIRST_PAUSE
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, _LONGEST_PAUSE)


def durable(conn: sqlite3.Connection, timeout: float) -> None:
    """Busy timeout, WAL mode (see `use_wal`) and `synchronous = FULL` for `conn`."""
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    use_wal(conn, timeout)
    conn.execute("PRAGMA synchronous = FULL")
