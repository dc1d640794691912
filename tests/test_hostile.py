"""Hostile pushes over a raw socket: every answer is 200, 401 or 413 — never a 500 — and no
handler ever sees a body whose signature did not verify (issue 2, line 2).

The requests are written byte by byte, so header values can carry bytes that are not UTF-8.
Octets that HTTP itself forbids in a header value (control characters) are refused by the
HTTP parser with 400 before any of our code runs; they are left out of the generator.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.warnings import InsecureKeyLengthWarning
from prometheus_client import CollectorRegistry

from receiver.app import create_app
from receiver.config import load_settings
from receiver.runtime import serving
from receiver.testing import Signer, make_event_body
from tests.recording import RecordingHandler

SECRET = "hostile-test-secret-0123456789abcdef"
MAX_BODY = 4096


@dataclass
class Server:
    port: int
    recorder: RecordingHandler
    loop: asyncio.AbstractEventLoop
    verified_bodies: set[bytes] = field(default_factory=set)
    statuses: dict[int, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data: Path = tmp_path_factory.mktemp("hostile")
    settings_ = load_settings(
        env={
            "DTPUSH_VERIFY_SECRETS": SECRET,
            "DTPUSH_INBOX_PATH": str(data / "inbox.db"),
            "DTPUSH_SERVER_MAX_BODY_BYTES": str(MAX_BODY),
        },
        cwd=data,
    )
    recorder = RecordingHandler()
    ready = threading.Event()
    started: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def main() -> None:
        app = create_app(settings_, registry=CollectorRegistry(), handlers={"rec": recorder})
        stop = asyncio.Event()
        async with serving(app, host="127.0.0.1", port=0) as url:
            started.append((int(url.rsplit(":", 1)[1]), asyncio.get_running_loop(), stop))
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(30), "server did not start"
    port, loop, stop = started[0]
    yield Server(port, recorder, loop)
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)


def post(port: int, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    head = b"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    head += b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    for name, value in headers:
        head += name + b": " + value + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + b"\r\n" + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def raw_token(header: dict[str, object], claims: dict[str, object], signature: bytes) -> bytes:
    return b64(orjson.dumps(header)) + b"." + b64(orjson.dumps(claims)) + b"." + b64(signature)


def good_claims(body: bytes) -> dict[str, object]:
    now = int(time.time())
    return {
        "checksum": hashlib.sha1(body).hexdigest(),
        "checksum_sha256": hashlib.sha256(body).hexdigest(),
        "exp": now + 3600,
        "iat": now,
        "jti": "c82gg99hga35jc2afkeg",
    }


def legal(raw: bytes) -> bytes:
    """Only octets HTTP allows in a header value (HTAB, SP, VCHAR, obs-text), no edge space."""
    return bytes(b for b in raw if b == 9 or 0x20 <= b <= 0x7E or b >= 0x80).strip(b" \t")


header_octets = st.binary(min_size=1, max_size=200).map(legal)

bodies = st.one_of(
    st.sampled_from(["temperature", "touch", "humidity", "labelsChanged"]).map(make_event_body),
    st.binary(max_size=300),
    st.sampled_from(["temperature", "co2"])
    .map(make_event_body)
    .flatmap(lambda body: st.integers(0, len(body) - 1).map(lambda cut: body[:cut])),
    st.integers(MAX_BODY + 1, MAX_BODY * 3).map(lambda size: b"{" * size),
)


@st.composite
def pushes(draw: st.DrawFn) -> tuple[list[tuple[bytes, bytes]], bytes, bool]:
    """(headers, body, signed correctly) for one hostile or honest push."""
    body = draw(bodies)
    kind = draw(
        st.sampled_from(
            [
                "valid",
                "none",
                "garbage",
                "non_utf8",
                "huge",
                "alg_none",
                "alg_hs512",
                "alg_rs256",
                "missing_claims",
                "wrong_checksum",
                "mutated",
                "wrong_secret",
                "not_json_parts",
                "claims_not_object",
            ]
        )
    )
    claims = good_claims(body)
    token: bytes | None
    if kind == "valid":
        token = Signer(SECRET).headers(body)["X-Dt-Signature"].encode()
    elif kind == "none":
        token = None
    elif kind == "garbage":
        token = legal(draw(st.text(max_size=300)).encode("utf-8", "surrogatepass"))
    elif kind == "non_utf8":
        token = draw(header_octets) + bytes([draw(st.integers(0x80, 0xFF))])
    elif kind == "huge":
        token = b"e" * draw(st.integers(8_000, 30_000))
    elif kind == "alg_none":
        token = raw_token({"alg": "none", "typ": "JWT"}, claims, b"")
    elif kind == "alg_hs512":
        with warnings.catch_warnings():  # a short key for HS512 is part of the attack
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            token = jwt.encode(claims, SECRET, algorithm="HS512").encode()
    elif kind == "alg_rs256":
        token = raw_token({"alg": "RS256", "typ": "JWT"}, claims, b"\x01" * 256)
    elif kind == "missing_claims":
        drop = draw(st.lists(st.sampled_from(sorted(claims)), min_size=1, unique=True))
        token = jwt.encode({k: v for k, v in claims.items() if k not in drop}, SECRET).encode()
    elif kind == "wrong_checksum":
        token = jwt.encode(good_claims(body + b"x"), SECRET).encode()
    elif kind == "mutated":
        good = bytearray(Signer(SECRET).headers(body)["X-Dt-Signature"].encode())
        at = draw(st.integers(0, len(good) - 1))
        good[at] = draw(st.sampled_from(b"AZaz09-_.=+/ ~"))
        token = bytes(good)
    elif kind == "wrong_secret":
        token = Signer("another-secret").headers(body)["X-Dt-Signature"].encode()
    elif kind == "not_json_parts":
        token = b64(b"{not json") + b"." + b64(b"[]") + b"." + b64(b"sig")
    else:
        token = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(b"[1,2,3]") + b"." + b64(b"s")
    headers = [(b"Content-Type", b"application/json")]
    if token is not None:
        name = draw(st.sampled_from([b"X-Dt-Signature", b"x-dt-signature", b"X-DT-SIGNATURE"]))
        headers.append((name, token))
    return headers, body, token is not None and pyjwt_accepts(token, body)


def pyjwt_accepts(token: bytes, body: bytes) -> bool:
    """The oracle: PyJWT's HS256 decision plus the body checksum DT's token carries."""
    try:
        claims = jwt.decode(
            token.decode("utf-8"),
            SECRET,
            algorithms=["HS256"],
            options={"require": ["exp", "iat"]},
            leeway=60,
        )
    except (UnicodeDecodeError, jwt.PyJWTError):
        return False
    if "checksum_sha256" in claims:
        claimed, actual = claims["checksum_sha256"], hashlib.sha256(body).hexdigest()
    else:
        claimed, actual = claims.get("checksum"), hashlib.sha1(body).hexdigest()
    return isinstance(claimed, str) and claimed.lower() == actual


@settings(
    max_examples=1200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(push=pushes())
def test_hostile_pushes_are_answered_200_401_or_413_never_500(
    server: Server, push: tuple[list[tuple[bytes, bytes]], bytes, bool]
) -> None:
    headers, body, verifies = push
    status = post(server.port, headers, body)
    server.statuses[status] = server.statuses.get(status, 0) + 1
    assert status in (200, 401, 413), status
    if len(body) > MAX_BODY:
        assert status == 413
    elif verifies:
        assert status == 200
        server.verified_bodies.add(body)
    else:
        assert status == 401


def test_no_handler_ever_saw_a_body_that_did_not_verify(server: Server) -> None:
    assert sum(server.statuses.values()) >= 1000, server.statuses
    expected = {body for body in server.verified_bodies if _is_event(body)}
    waiting = server.recorder.wait_for(len(expected), timeout=30)
    asyncio.run_coroutine_threadsafe(waiting, server.loop).result(40)
    delivered = [event.raw for event in server.recorder.events]
    assert set(delivered) == expected
    assert len(delivered) == len(expected)  # each once


def _is_event(body: bytes) -> bool:
    from receiver.errors import NotAnEvent
    from receiver.events import parse

    try:
        parse(body)
    except NotAnEvent:
        return False
    return True
