"""`dtpush serve --no-workers` ingests only; `dtpush worker` on the same inbox delivers, and
both exit 0 on SIGTERM (spec §2, §5, §13)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp

from receiver.testing import Signer, make_event_body
from tests.services import free_port
from tests.waiting import until, until_async

ROOT = Path(__file__).resolve().parent.parent
SECRET = "worker-test-secret-0123456789abcdef"


def start(tmp_path: Path, *args: str, port: int = 0) -> subprocess.Popen[bytes]:
    env = {
        "PATH": "/usr/bin:/bin",
        "DTPUSH_SERVER_HOST": "127.0.0.1",
        "DTPUSH_SERVER_PORT": str(port),
        "DTPUSH_VERIFY_SECRETS": SECRET,
        "DTPUSH_INBOX_PATH": str(tmp_path / "inbox.db"),
        "DTPUSH_HANDLERS_SQLITE_PATH": str(tmp_path / "events.db"),
        "DTPUSH_DELIVERY_BACKOFF_INITIAL_SECONDS": "0.05",
    }
    with open(tmp_path / f"{args[0]}.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "receiver", *args], cwd=ROOT, env=env, stderr=log
        )


def stored(tmp_path: Path) -> set[str]:
    path = tmp_path / "events.db"
    if not path.exists():
        return set()
    with sqlite3.connect(path) as db:
        try:
            return {row[0] for row in db.execute("SELECT event_id FROM events")}
        except sqlite3.OperationalError:  # the worker has not created its table yet
            return set()


async def test_ingest_only_serve_and_a_separate_worker_deliver_everything(tmp_path: Path) -> None:
    port = free_port()
    serve = start(tmp_path, "serve", "--no-workers", port=port)
    worker: subprocess.Popen[bytes] | None = None
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as answer:
                        return answer.status == 200
                except aiohttp.ClientError:
                    return False

            await until_async(ready, within=30, what="serve --no-workers to be ready")
            accepted: set[str] = set()
            for event_type in ("temperature", "touch", "co2", "motion", "humidity"):
                body = make_event_body(event_type)
                headers = Signer(SECRET).headers(body)
                async with http.post(
                    f"http://127.0.0.1:{port}/events", data=body, headers=headers
                ) as answer:
                    accepted.add((await answer.json())["eventId"])
        assert stored(tmp_path) == set()  # nobody delivers yet
        worker = start(tmp_path, "worker")
        await until(lambda: stored(tmp_path) == accepted, within=30, what="the worker to deliver")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
    finally:
        for process in (serve, worker):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=15) == 0
