"""The process-level tuning of `receiver.runtime`: the handler's writer thread is batch work."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from handlers.sqlite import SqliteHandler
from receiver.inbox.sqlite import SqliteInbox

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SCHED_BATCH is a Linux scheduling policy"
)


async def test_sqlite_handler_writer_runs_as_batch_work_the_inbox_writer_and_loop_do_not(
    tmp_path: Path,
) -> None:
    before = set(threading.enumerate())
    inbox = SqliteInbox(tmp_path / "inbox.db")
    handler = SqliteHandler(path=tmp_path / "events.db")
    await inbox.open()
    await handler.start()
    try:
        started = {t.name: t.native_id for t in set(threading.enumerate()) - before}
        writers = {name: tid for name, tid in started.items() if name.startswith("dtpush-")}
        assert sorted(writers) == ["dtpush-inbox-writer", f"dtpush-sqlite {handler.path}"]
        assert os.sched_getscheduler(writers[f"dtpush-sqlite {handler.path}"]) == os.SCHED_BATCH
        assert os.sched_getscheduler(writers["dtpush-inbox-writer"]) == os.SCHED_OTHER
        assert os.sched_getscheduler(threading.get_native_id()) == os.SCHED_OTHER
    finally:
        await handler.close()
        await inbox.close()
