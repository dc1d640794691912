"""`dtpush demo --events N` (issue 4, line 1): the emulator and the receiver with bootstrap end
with exit 0, every pushed event in the SQLite store exactly once, and the connector made by
the bootstrap."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.waiting import until


def test_demo_stores_every_pushed_event_once_and_exits_0(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "receiver", "demo", "--events", "300", "--rate", "150"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert re.search(r"connector \w+ created by the bootstrap", result.stdout)
    verdict = re.search(
        r"delivered (\d+) events; the store holds (\d+) new events, 0 missing, 0 twice",
        result.stdout,
    )
    assert verdict, result.stdout[-2000:]
    delivered, held = int(verdict.group(1)), int(verdict.group(2))
    assert held >= 300 and delivered == held
    with sqlite3.connect(tmp_path / "dtpush-data" / "events.db") as db:
        rows = db.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()
        types = db.execute("SELECT count(DISTINCT event_type) FROM events").fetchone()[0]
    assert rows == (held, held)
    assert types >= 10


async def test_demo_stops_quietly_on_ctrl_c_with_exit_0(tmp_path: Path) -> None:
    out_path, err_path = tmp_path / "out.txt", tmp_path / "err.txt"
    with out_path.open("w") as out, err_path.open("w") as err:
        demo = subprocess.Popen(
            [sys.executable, "-m", "receiver", "demo", "--rate", "1000"],
            cwd=tmp_path,
            stdout=out,
            stderr=err,
            env={"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"},
        )
    try:
        await until(
            lambda: (
                re.search(r"accepted [1-9]", out_path.read_text()) is not None
                or demo.poll() is not None
            ),
            within=60,
            what="the demo to count its first accepted push",
        )
        demo.send_signal(signal.SIGINT)
        await until(lambda: demo.poll() is not None, within=60, what="the demo to exit")
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    output, errors = out_path.read_text(), err_path.read_text()
    assert demo.returncode == 0, errors[-2000:]
    assert re.search(r"accepted [1-9]", output)
    # the emulator stops pushing before the receiver stops: no push meets a closing receiver
    assert "push_unavailable" not in errors + output
    assert "Traceback" not in errors
