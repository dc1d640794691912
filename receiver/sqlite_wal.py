"""WAL mode for dtpush's SQLite files, safe when several processes open a new file at once.

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
