"""Scale-out on NATS JetStream: two `serve --no-workers` replicas ingest, two workers deliver.

Every acknowledged event ends in the sqlite handler's store exactly once, a push repeated at
the other replica is answered "duplicate", and every process stops cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import nats
import orjson
import pytest
from nats.js.errors import NotFoundError

from receiver.testing import Signer, make_event_body
from tests.services import free_port, needs
from tests.waiting import until, until_async

pytestmark = needs("NATS", 4222)

ROOT = Path(__file__).resolve().parent.parent
SECRET = "nats-scaleout-secret-0123456789abcdef"
URL = "nats://127.0.0.1:4222"


@pytest.fixture
async def stream() -> AsyncIterator[str]:
    name = f"S{uuid.uuid4().hex[:10]}"
    yield name
    nc = await nats.connect(URL)
    try:
        js = nc.jetstream()
        for each in (name, f"{name}_DLQ"):
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(each)
    finally:
        await nc.close()


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


def start(
    tmp_path: Path, stream: str, name: str, *args: str, port: int = 0
) -> subprocess.Popen[bytes]:
    env = {
        "PATH": "/usr/bin:/bin",
        "DTPUSH_SERVER_HOST": "127.0.0.1",
        "DTPUSH_SERVER_PORT": str(port),
        "DTPUSH_VERIFY_SECRETS": SECRET,
        "DTPUSH_INBOX_BACKEND": "nats",
        "DTPUSH_INBOX_NATS_URL": URL,
        "DTPUSH_INBOX_NATS_STREAM": stream,
        "DTPUSH_INBOX_NATS_SUBJECT_PREFIX": stream.lower(),
        "DTPUSH_HANDLERS_SQLITE_PATH": str(tmp_path / "events.db"),
        "DTPUSH_DELIVERY_BACKOFF_INITIAL_SECONDS": "0.05",
    }
    with open(tmp_path / f"{name}.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "receiver", *args], cwd=ROOT, env=env, stderr=log
        )


def stored_rows(tmp_path: Path) -> list[str]:
    path = tmp_path / "events.db"
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        try:
            return [row[0] for row in db.execute("SELECT event_id FROM events")]
        except sqlite3.OperationalError:  # no table yet
            return []


async def test_nats_two_replicas_ingest_two_workers_deliver_each_event_once(
    tmp_path: Path, stream: str
) -> None:
    ports = [free_port(), free_port()]
    with processes() as running:
        for index, port in enumerate(ports):
            running.append(
                start(tmp_path, stream, f"serve{index}", "serve", "--no-workers", port=port)
            )
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                for port in ports:
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/readyz") as answer:
                            if answer.status != 200:
                                return False
                    except aiohttp.ClientError:
                        return False
                return True

            await until_async(ready, within=30, what="both replicas to be ready")

            async def push(port: int, body: bytes) -> str:
                async with http.post(
                    f"http://127.0.0.1:{port}/events",
                    data=body,
                    headers=Signer(SECRET).headers(body),
                ) as answer:
                    assert answer.status == 200, await answer.text()
                    status: str = (await answer.json())["status"]
                    return status

            bodies = [
                make_event_body(("temperature", "touch", "co2", "motion")[i % 4]) for i in range(40)
            ]
            # the same push at both replicas at once: exactly one accepts it
            answers = await asyncio.gather(
                *(push(ports[i % 2], body) for i, body in enumerate(bodies)),
                *(push(ports[(i + 1) % 2], body) for i, body in enumerate(bodies)),
            )
            assert answers.count("accepted") == len(bodies)
            assert answers.count("duplicate") == len(bodies)
            assert {await push(port, bodies[0]) for port in ports} == {"duplicate"}

        assert stored_rows(tmp_path) == []  # nobody delivers yet
        for index in range(2):
            running.append(start(tmp_path, stream, f"worker{index}", "worker"))
        expected = sorted(orjson.loads(body)["event"]["eventId"] for body in bodies)
        await until(
            lambda: len(stored_rows(tmp_path)) >= len(expected),
            within=30,
            what="the workers to deliver every event",
        )
        await until(
            lambda: all(
                b"worker_started" in (tmp_path / f"worker{i}.log").read_bytes() for i in range(2)
            ),
            within=30,
            what="both workers to have started",
        )
        # with both workers on the stream, fresh pushes at either replica are delivered too
        async with aiohttp.ClientSession() as http:
            more = [make_event_body("humidity") for _ in range(20)]
            for i, body in enumerate(more):
                async with http.post(
                    f"http://127.0.0.1:{ports[i % 2]}/events",
                    data=body,
                    headers=Signer(SECRET).headers(body),
                ) as answer:
                    assert (await answer.json())["status"] == "accepted"
        expected = sorted([*expected, *(orjson.loads(body)["event"]["eventId"] for body in more)])
        await until(
            lambda: len(stored_rows(tmp_path)) >= len(expected),
            within=30,
            what="the workers to deliver the fresh pushes",
        )
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            assert process.wait(timeout=15) == 0
        assert sorted(stored_rows(tmp_path)) == expected
