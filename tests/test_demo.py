"""`dtpush demo --events N` (issue 4, line 1): the emulator and the receiver with bootstrap end
with exit 0, every pushed event in the SQLite store exactly once, and the connector made by
the bootstrap."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path


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
