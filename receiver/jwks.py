"""DT's data-connector signing keys: the OpenID configuration and its JWKS, fetched and cached.

The thin I/O shell of the `DT-Asymmetric-Signature` scheme (spec §6, §13): `JwksCache`
fetches the OpenID configuration at `oidc_url` (its `issuer` and `jwks_uri`), then the JWKS,
keeps the EC P-256 signing keys by `kid`, and re-fetches them when they are older than
`max_age` or, at most once per `refetch_interval`, when a push names an unknown `kid` (key
rotation). A configuration or JWKS that cannot be fetched or read raises
`Unavailable("jwks_unavailable")`: the push gets a 503 and DT retries it, rather than a 401
for what is our side's problem. After a failure no fetch is tried for `retry_after` seconds.
Concurrent callers share one fetch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from cryptography.hazmat.primitives.asymmetric.ec import (
    EllipticCurvePrivateKey,
    EllipticCurvePublicKey,
)
from jwt.algorithms import ECAlgorithm
from jwt.exceptions import PyJWTError
from yarl import URL

from receiver.errors import Unavailable

_MAX_DOCUMENT_BYTES = 1 << 20


@dataclass(frozen=True)
class _KeySet:
    issuer: str
    keys: Mapping[str, EllipticCurvePublicKey]


class _BadDocument(Exception):
    """An OpenID configuration or JWKS answer that cannot be used."""


def signing_keys(jwks: object) -> dict[str, EllipticCurvePublicKey]:
    """The ES256 verification keys of a JWKS document, by `kid`.

    Keys that are not EC P-256 signing keys with a string `kid`, or whose coordinates do
    not load, are left out (the first of a repeated `kid` wins).
    """
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise _BadDocument("jwks without a keys list")
    keys: dict[str, EllipticCurvePublicKey] = {}
    for jwk in jwks["keys"]:
        if not isinstance(jwk, dict):
            continue
        kid = jwk.get("kid")
        if (
            not isinstance(kid, str)
            or kid in keys
            or jwk.get("kty") != "EC"
            or jwk.get("crv") != "P-256"
            or jwk.get("use", "sig") != "sig"
            or jwk.get("alg", "ES256") != "ES256"
        ):
            continue
        try:
            key = ECAlgorithm.from_jwk(jwk)
        except (PyJWTError, ValueError, TypeError):
            continue
        keys[kid] = key.public_key() if isinstance(key, EllipticCurvePrivateKey) else key
    return keys


class JwksCache:
    """The issuer and signing keys named by an OpenID configuration, cached.

    `session` is used for every fetch; with None, the cache opens its own in `start()` and
    closes it in `close()`. `clock` is monotonic seconds.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        oidc_url: str,
        *,
        refetch_interval: float = 60,
        max_age: float = 900,
        timeout: float = 5,
        retry_after: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._owns_session = False
        self.oidc_url = oidc_url
        self.refetch_interval = refetch_interval
        self.max_age = max_age
        self.retry_after = retry_after
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._keyset: _KeySet | None = None
        self._fetched_at = 0.0  # last successful fetch
        self._attempted_at: float | None = None  # last fetch, whatever its outcome
        self._failed_at: float | None = None  # last failed fetch, cleared by a success
        self._inflight: asyncio.Task[_KeySet] | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
            self._owns_session = False

    async def keys(self) -> Mapping[str, EllipticCurvePublicKey]:
        """The signing keys by `kid`, fetched first when missing or older than `max_age`."""
        return (await self._current()).keys

    async def issuer(self) -> str:
        """The `issuer` of the OpenID configuration, fetched like `keys()`."""
        return (await self._current()).issuer

    async def refresh_if_allowed(self) -> bool:
        """Re-fetch for an unknown `kid`, unless a fetch was tried in the last interval.

        True when it fetched (the keys may now hold the `kid`), False when it did not.
        """
        attempted = self._attempted_at
        if attempted is not None and self._clock() - attempted < self.refetch_interval:
            return False
        await self._fetch()
        return True

    async def _current(self) -> _KeySet:
        keyset = self._keyset
        if keyset is not None and self._clock() - self._fetched_at < self.max_age:
            return keyset
        failed = self._failed_at
        if failed is not None:
            wait = self.retry_after - (self._clock() - failed)
            if wait > 0:
                raise Unavailable("jwks_unavailable", retry_after=max(1, round(wait)))
        return await self._fetch()

    async def _fetch(self) -> _KeySet:
        task = self._inflight
        if task is None:
            task = self._inflight = asyncio.get_running_loop().create_task(self._load())
            task.add_done_callback(self._done)
        # A cancelled push must not cancel the fetch other pushes are waiting for.
        return await asyncio.shield(task)

    def _done(self, task: asyncio.Task[_KeySet]) -> None:
        self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every waiter was cancelled

    async def _load(self) -> _KeySet:
        self._attempted_at = self._clock()
        try:
            config = await self._get_json(URL(self.oidc_url))
            issuer = config.get("issuer")
            jwks_uri = config.get("jwks_uri")
            if not isinstance(issuer, str) or not issuer or not isinstance(jwks_uri, str):
                raise _BadDocument("openid configuration without issuer or jwks_uri")
            keys = signing_keys(await self._get_json(URL(self.oidc_url).join(URL(jwks_uri))))
        except (aiohttp.ClientError, TimeoutError, ValueError, _BadDocument) as exc:
            self._failed_at = self._clock()
            raise Unavailable("jwks_unavailable", retry_after=self.retry_after) from exc
        keyset = self._keyset = _KeySet(issuer, keys)
        self._fetched_at = self._clock()
        self._failed_at = None
        return keyset

    async def _get_json(self, url: URL) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("JwksCache used before start() or after close()")
        async with self._session.get(url, timeout=self._timeout) as response:
            if response.status != 200:
                raise _BadDocument(f"status {response.status}")
            chunks: list[bytes] = []
            size = 0
            while chunk := await response.content.read(_MAX_DOCUMENT_BYTES + 1 - size):
                chunks.append(chunk)
                size += len(chunk)
                if size > _MAX_DOCUMENT_BYTES:
                    raise _BadDocument("document too large")
        document = orjson.loads(b"".join(chunks))
        if not isinstance(document, dict):
            raise _BadDocument("not a json object")
        return document
