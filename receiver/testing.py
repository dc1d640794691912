"""Test kit for handler authors (and dtpush's own tests): sample pushes, a signer, a pytest fixture.

Samples — one push body per DT event type, as DT lays it out (package data, read with
`importlib.resources`; `touch` and `temperature` are real bytes DT sent)::

    sample_body("temperature")              # the fixture bytes
    sample_bodies()                         # {event_type: bytes} for all 19 types
    make_event_body("temperature", data={"value": 31.5})   # a fresh event: new id, now

Signing, as DT does (`X-Dt-Signature`, an HS256 JWT carrying the body's checksums)::

    headers = Signer("my-secret").headers(body)            # {"X-Dt-Signature": token}
    real_vectors()                          # the 3 real DT-signed (body, token, iat); secret
                                            # REAL_VECTOR_SECRET; verify them with now=iat

Posting signed pushes to a running receiver (an aiohttp `TestClient` or a URL)::

    async with Pusher(client, "my-secret") as push:
        status, answer = await push(event_type="co2")       # (200, {"status": "accepted", ...})

For pytest, `receiver.pytest_plugin` turns a `Pusher` into the fixture `dtpush_push`.

This module needs no pytest: `dtpush send` and `dtpush demo` use its samples and signer.
"""

from __future__ import annotations

import base64
import functools
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.resources import files
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

import aiohttp
import orjson

from receiver.events import EVENT_TYPES
from receiver.jws import sign_hs256

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient

__all__ = [
    "REAL_VECTOR_NAMES",
    "REAL_VECTOR_SECRET",
    "PushResult",
    "Pusher",
    "SignedVector",
    "Signer",
    "make_event_body",
    "new_xid",
    "real_vectors",
    "sample_bodies",
    "sample_body",
]

_DATA = files("receiver") / "testing_data"

#: The signature secret of DT's connector that signed the real vectors.
REAL_VECTOR_SECRET = "test-secret"
#: The real vectors, in the order `real_vectors()` returns them. The last carries only the
#: SHA-1 `checksum` (January 2022, before DT added `checksum_sha256`).
REAL_VECTOR_NAMES: tuple[str, ...] = ("touch", "temperature", "touch-2022-01-sha1-only")


# --- samples ----------------------------------------------------------------------------------


@functools.cache
def sample_body(event_type: str) -> bytes:
    """The sample push body of `event_type` (one of `EVENT_TYPES`), exactly as stored."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"no sample for event type {event_type!r}")
    return (_DATA / f"{event_type}.json").read_bytes()


def sample_bodies() -> dict[str, bytes]:
    """Every sample push body, by event type, in `EVENT_TYPES` order."""
    return {event_type: sample_body(event_type) for event_type in EVENT_TYPES}


def new_xid(now: float | None = None) -> str:
    """A new 20-character id shaped like DT's (xid): base32hex, lower case, time-prefixed.

    4 bytes of Unix time (big-endian, so ids sort by second) and 8 random bytes.
    """
    seconds = int(time.time() if now is None else now) & 0xFFFFFFFF
    raw = seconds.to_bytes(4, "big") + secrets.token_bytes(8)
    return base64.b32hexencode(raw).decode("ascii").rstrip("=").lower()


def make_event_body(
    event_type: str,
    *,
    event_id: str | None = None,
    device_id: str | None = None,
    project_id: str | None = None,
    timestamp: datetime | None = None,
    labels: Mapping[str, str] | None = None,
    data: Mapping[str, Any] | None = None,
) -> bytes:
    """A fresh push of `event_type` in DT's exact compact layout, based on its sample.

    A new event id (unless given) and `timestamp` (default now; it must be timezone-aware),
    which also becomes every `updateTime` and `sampleTime`. Device, project and labels are the
    sample's unless given. `data` is merged into the type's data object (for
    `labelsChanged`, into `data` itself), e.g. ``data={"value": 31.5}`` for a temperature.
    """
    when = datetime.now(UTC) if timestamp is None else timestamp
    if when.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    doc = orjson.loads(sample_body(event_type))
    event, metadata = doc["event"], doc["metadata"]
    project = metadata["projectId"] if project_id is None else project_id
    device = metadata["deviceId"] if device_id is None else device_id

    event["eventId"] = new_xid(when.timestamp()) if event_id is None else event_id
    event["targetName"] = f"projects/{project}/devices/{device}"
    event["timestamp"] = stamp
    inner = event["data"].get(event_type, event["data"])
    if "updateTime" in inner:
        inner["updateTime"] = stamp
    for sample in inner.get("samples", ()):
        sample["sampleTime"] = stamp
    inner.update(data or {})
    if labels is not None:
        doc["labels"] = dict(labels)
    metadata["deviceId"], metadata["projectId"] = device, project
    return orjson.dumps(doc)


# --- signing ----------------------------------------------------------------------------------


class SignedVector(NamedTuple):
    """A body and the `X-Dt-Signature` token DT's cloud sent with it (secret `test-secret`)."""

    body: bytes
    token: str
    iat: int


@functools.cache
def real_vectors() -> tuple[SignedVector, ...]:
    """The three real DT-signed pushes, in `REAL_VECTOR_NAMES` order. Long expired: verify
    them with the clock at `iat`."""
    vectors = []
    for name in REAL_VECTOR_NAMES:
        body_file = f"{name}.json" if name in EVENT_TYPES else f"signed/{name}.body"
        token = (_DATA / "signed" / f"{name}.x-dt-signature.jwt").read_text("ascii").strip()
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        vectors.append(SignedVector((_DATA / body_file).read_bytes(), token, claims["iat"]))
    return tuple(vectors)


class Signer:
    """Signs push bodies the way a DT connector with this signature secret does."""

    def __init__(self, secret: str | bytes) -> None:
        self._secret = secret.encode() if isinstance(secret, str) else bytes(secret)

    def __repr__(self) -> str:
        return "Signer(secret='***')"

    def token(
        self,
        body: bytes,
        *,
        now: float | None = None,
        sha256: bool = True,
        sha1: bool = True,
        exp_seconds: int = 3600,
        jti: str | None = None,
    ) -> str:
        """The JWT: header ``{"alg":"HS256","typ":"JWT"}``, claims `checksum` (SHA-1 hex),
        `checksum_sha256`, `exp` (= `iat` + `exp_seconds`), `iat` (`now`), `jti` (new xid)."""
        iat = int(time.time() if now is None else now)
        return sign_hs256(
            body,
            self._secret,
            iat=iat,
            exp=iat + exp_seconds,
            sha1=sha1,
            sha256=sha256,
            jti=new_xid(iat) if jti is None else jti,
        )

    def headers(
        self,
        body: bytes,
        *,
        now: float | None = None,
        sha256: bool = True,
        sha1: bool = True,
        exp_seconds: int = 3600,
        jti: str | None = None,
    ) -> dict[str, str]:
        """``{"X-Dt-Signature": token}`` for `body` (see `token`)."""
        token = self.token(
            body, now=now, sha256=sha256, sha1=sha1, exp_seconds=exp_seconds, jti=jti
        )
        return {"X-Dt-Signature": token}


# --- posting ----------------------------------------------------------------------------------


class PushResult(NamedTuple):
    status: int
    json: Any  # the decoded JSON answer, or None when the answer is not JSON


class Pusher:
    """Posts signed pushes to a receiver, as DT would.

    `target` is an aiohttp `TestClient` of the app (pushes go to its `path`) or the full push
    URL of a running receiver (pushes go there with a session of the `Pusher`'s own, closed by
    `close()` or ``async with``, or the `session` given).
    """

    def __init__(
        self,
        target: TestClient[Any, Any] | str,
        secret: str | bytes,
        *,
        path: str = "/events",
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.target = target
        self.path = path
        self.signer = Signer(secret)
        self._session = session
        self._own_session: aiohttp.ClientSession | None = None

    async def push(
        self,
        body: bytes | None = None,
        *,
        event_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        sign: bool = True,
    ) -> PushResult:
        """Post `body` (default: a fresh event of `event_type`, default temperature), signed
        unless `sign` is false; `headers` are added last (they may replace the signature)."""
        if body is not None and event_type is not None:
            raise ValueError("give body or event_type, not both")
        if body is None:
            body = make_event_body(event_type or "temperature")
        sent = {"Content-Type": "application/json"}
        if sign:
            sent.update(self.signer.headers(body))
        sent.update(headers or {})
        if isinstance(self.target, str):
            response = await self._client_session().post(self.target, data=body, headers=sent)
        else:
            response = await self.target.post(self.path, data=body, headers=sent)
        async with response:
            answer = await response.read()
        try:
            return PushResult(response.status, orjson.loads(answer))
        except orjson.JSONDecodeError:
            return PushResult(response.status, None)

    __call__ = push

    async def push_all(self) -> dict[str, PushResult]:
        """A fresh event of every type in `EVENT_TYPES`, one after the other."""
        return {event_type: await self.push(event_type=event_type) for event_type in EVENT_TYPES}

    def _client_session(self) -> aiohttp.ClientSession:
        if self._session is not None:
            return self._session
        if self._own_session is None:
            self._own_session = aiohttp.ClientSession()
        return self._own_session

    async def close(self) -> None:
        if self._own_session is not None:
            await self._own_session.close()
            self._own_session = None

    async def __aenter__(self) -> Pusher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
