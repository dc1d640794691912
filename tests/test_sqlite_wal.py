"""SQLite files opened by several processes at the same moment (two workers, ingest + worker)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from handlers.sqlite import SqliteHandler
from receiver.inbox import sqlite_store
from receiver.sqlite_wal import use_wal

ROUNDS = 30
OPENERS = 3


def _open_inbox(path: Path) -> None:
    sqlite_store.open_connection(str(path), 10.0).close()


def _open_handler_store(path: Path) -> None:
    SqliteHandler(path)._connect().close()


def _opener(
    open_file: Callable[[Path], None],
    path: Path,
    start: multiprocessing.synchronize.Barrier,
    results: multiprocessing.Queue[str],
) -> None:
    start.wait(timeout=30)
    try:
        open_file(path)
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")
    else:
        results.put("ok")


def _open_at_once(open_file: Callable[[Path], None], tmp_path: Path) -> list[str]:
    context = multiprocessing.get_context("fork")
    outcomes: list[str] = []
    for round_ in range(ROUNDS):
        path = tmp_path / f"round{round_}" / "file.db"
        path.parent.mkdir()
        start = context.Barrier(OPENERS)
        results: multiprocessing.Queue[str] = context.Queue()
        openers = [
            context.Process(target=_opener, args=(open_file, path, start, results))
            for _ in range(OPENERS)
        ]
        for opener in openers:
            opener.start()
        outcomes += [results.get(timeout=30) for _ in openers]
        for opener in openers:
            opener.join(timeout=30)
    return outcomes


@pytest.mark.parametrize(
    "open_file", [_open_inbox, _open_handler_store], ids=["inbox", "sqlite_handler"]
)
def test_processes_creating_the_same_file_at_once_all_open_it_in_wal_mode(
    open_file: Callable[[Path], None], tmp_path: Path
) -> None:
    outcomes = _open_at_once(open_file, tmp_path)
    assert outcomes == ["ok"] * (ROUNDS * OPENERS)
    for round_ in range(ROUNDS):
        path = tmp_path / f"round{round_}" / "file.db"
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_wal_mode_waits_no_longer_than_its_timeout_for_a_file_held_by_another(
    tmp_path: Path,
) -> None:
    path = tmp_path / "held.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError) as raised:
            use_wal(other, 0.2)
        assert raised.value.sqlite_errorcode == sqlite3.SQLITE_BUSY
    finally:
        other.close()
        holder.execute("ROLLBACK")
        holder.close()
