"""HTTPS through the real Caddy: deploy/Caddyfile's site in front of a real `dtpush serve`.

Caddy (Debian's) runs with its local CA (`tls internal` by `local_certs`), bound to
127.0.0.1 on free ports; the client trusts only that CA's root certificate. Pushes signed as
DT signs them must arrive with their body and signature header unchanged, and the receiver's
answers (200, duplicate, 401 with its reason, 413) must come back through the proxy.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import sqlite3
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest

from receiver.testing import Signer, make_event_body
from tests.services import HOST, free_port, required
from tests.waiting import until

ROOT = Path(__file__).resolve().parent.parent
CADDYFILE = ROOT / "deploy" / "Caddyfile"
SECRET = "caddy-test-secret-0123456789abcdef0123"
CADDY = shutil.which("caddy")

if CADDY is None and required():
    raise RuntimeError("caddy is not installed, and DTPUSH_REQUIRE_SERVICES=1 requires it")
pytestmark = pytest.mark.skipif(
    CADDY is None, reason="caddy is not installed (apt-get install caddy, or run .ci/run)"
)


def site_block() -> str:
    """deploy/Caddyfile without its global options block: the site as deployed."""
    text = CADDYFILE.read_text()
    without_globals, count = re.subn(r"^\{\n.*?^\}\n", "", text, count=1, flags=re.M | re.S)
    assert count == 1, "deploy/Caddyfile has no global options block"
    return without_globals


def loopback_options(http_port: int, https_port: int) -> str:
    """Loopback only, no admin endpoint, certificates from Caddy's local CA, no redirects."""
    return (
        "{\n\tadmin off\n\tdefault_bind 127.0.0.1\n"
        f"\thttp_port {http_port}\n\thttps_port {https_port}\n"
        "\tlocal_certs\n\tskip_install_trust\n\tauto_https disable_redirects\n}\n"
    )


def caddy_env(home: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        **extra,
    }


def answers_200(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Stack:
    url: str  # https://localhost:<port>, through Caddy
    receiver_url: str  # http://127.0.0.1:<port>, the receiver itself
    ca_file: Path
    inbox: Path

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    assert CADDY is not None
    tmp = tmp_path_factory.mktemp("caddy")
    receiver_port, http_port, https_port = free_port(), free_port(), free_port()
    receiver_env = {
        "PATH": os.environ["PATH"],
        "DTPUSH_SERVER_HOST": HOST,
        "DTPUSH_SERVER_PORT": str(receiver_port),
        "DTPUSH_VERIFY_SECRETS": SECRET,
        "DTPUSH_INBOX_PATH": str(tmp / "inbox.db"),
        "DTPUSH_HANDLERS_SQLITE_PATH": str(tmp / "events.db"),
        "DTPUSH_SERVER_SHUTDOWN_GRACE_SECONDS": "5",
    }
    config = tmp / "Caddyfile"
    config.write_text(loopback_options(http_port, https_port) + "\n" + site_block())
    env = caddy_env(
        tmp,
        DTPUSH_DOMAIN=f"localhost:{https_port}",
        DTPUSH_UPSTREAM=f"{HOST}:{receiver_port}",
    )
    stack = Stack(
        url=f"https://localhost:{https_port}",
        receiver_url=f"http://{HOST}:{receiver_port}",
        ca_file=tmp / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt",
        inbox=tmp / "inbox.db",
    )
    processes: list[subprocess.Popen[bytes]] = []
    logs = {name: tmp / f"{name}.log" for name in ("receiver", "caddy")}
    try:
        with open(logs["receiver"], "wb") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "receiver", "serve"],
                    cwd=tmp,
                    env=receiver_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        with open(logs["caddy"], "wb") as log:
            processes.append(
                subprocess.Popen(
                    [CADDY, "run", "--config", str(config), "--adapter", "caddyfile"],
                    cwd=tmp,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

        def up() -> bool:
            for process, (name, log_path) in zip(processes, logs.items(), strict=True):
                assert process.poll() is None, f"{name} exited:\n{log_path.read_text()[-3000:]}"
            return (
                answers_200(f"{stack.receiver_url}/healthz")
                and stack.ca_file.exists()
                and answers_200(f"{stack.url}/healthz", stack.ssl_context())
            )

        asyncio.run(until(up, within=60, what="the receiver and Caddy to answer /healthz"))
        yield stack
    finally:
        for process in reversed(processes):
            stop(process)


@pytest.fixture
async def session(stack: Stack) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(ssl=stack.ssl_context())
    async with aiohttp.ClientSession(connector=connector) as client:
        yield client


async def push(
    session: aiohttp.ClientSession,
    stack: Stack,
    body: bytes | io.BytesIO,
    headers: dict[str, str],
) -> tuple[int, dict[str, object]]:
    async with session.post(f"{stack.url}/events", data=body, headers=headers) as answer:
        text = await answer.read()
        return answer.status, (orjson.loads(text) if text.startswith(b"{") else {})


def stored_raw(stack: Stack, event_id: str) -> bytes | None:
    with sqlite3.connect(f"file:{stack.inbox}?mode=ro", uri=True) as db:
        row = db.execute("SELECT raw FROM events WHERE event_id = ?", (event_id,)).fetchone()
    return None if row is None else bytes(row[0])


def event_id_of(body: bytes) -> str:
    return str(orjson.loads(body)["event"]["eventId"])


async def test_signed_push_over_https_is_accepted_with_its_body_unchanged(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    body = make_event_body("temperature", data={"value": 21.5})
    status, answer = await push(session, stack, body, Signer(SECRET).headers(body))
    assert (status, answer) == (200, {"status": "accepted", "eventId": event_id_of(body)})
    assert stored_raw(stack, event_id_of(body)) == body


async def test_same_push_again_through_the_proxy_is_a_duplicate(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    body = make_event_body("touch")
    headers = Signer(SECRET).headers(body)
    assert (await push(session, stack, body, headers))[1]["status"] == "accepted"
    status, answer = await push(session, stack, body, Signer(SECRET).headers(body))
    assert (status, answer) == (200, {"status": "duplicate", "eventId": event_id_of(body)})


@pytest.mark.parametrize(
    ("signer", "reason"),
    [
        (Signer("not-the-connector-secret-0123456789ab"), "bad_signature"),
        (None, "missing_signature"),
    ],
)
async def test_refused_push_gets_its_401_reason_through_the_proxy(
    stack: Stack, session: aiohttp.ClientSession, signer: Signer | None, reason: str
) -> None:
    body = make_event_body("humidity")
    headers = {} if signer is None else signer.headers(body)
    assert await push(session, stack, body, headers) == (401, {"error": reason})
    assert stored_raw(stack, event_id_of(body)) is None


async def test_body_over_the_receivers_limit_gets_its_413_through_the_proxy(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    body = b"{" + b" " * 70_000 + b"}"
    status, answer = await push(session, stack, body, Signer(SECRET).headers(body))
    assert status == 413 and answer.get("error") == "too_large"


async def test_body_of_a_megabyte_or_more_is_stopped_by_caddy_with_413(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    body = b"{" + b" " * 2_000_000 + b"}"
    status, answer = await push(session, stack, io.BytesIO(body), {"X-Dt-Signature": "x.y.z"})
    assert (status, answer) == (413, {}), "Caddy's own 413 has no body; the receiver's has one"


async def test_healthz_answers_through_the_proxy_and_metrics_stay_inside(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    async with session.get(f"{stack.url}/healthz") as answer:
        assert answer.status == 200
    async with session.get(f"{stack.url}/metrics") as answer:
        assert answer.status == 404
    async with (
        aiohttp.ClientSession() as direct,
        direct.get(f"{stack.receiver_url}/metrics") as answer,
    ):
        assert answer.status == 200
        assert "dtpush_push_requests_total" in await answer.text()


async def test_client_without_caddys_ca_refuses_the_certificate(stack: Stack) -> None:
    async with aiohttp.ClientSession() as untrusting:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await untrusting.get(f"{stack.url}/healthz")


def test_deploy_caddyfile_validates_with_a_public_domain(tmp_path: Path) -> None:
    assert CADDY is not None
    result = subprocess.run(
        [CADDY, "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=caddy_env(tmp_path, DTPUSH_DOMAIN="dtpush.example.com", ACME_EMAIL="ops@example.com"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid configuration" in result.stdout + result.stderr
