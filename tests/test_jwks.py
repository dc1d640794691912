"""DT-Asymmetric-Signature end to end: a real OpenID configuration + JWKS server on loopback."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from receiver.config import Secret, VerifySettings
from receiver.errors import Refusal, Unavailable
from receiver.jwks import JwksCache, signing_keys
from receiver.verify import ASYMMETRIC_HEADER, HMAC_HEADER, Verifier, sign_es256, sign_hs256

BODY = b'{"event":{"eventId":"c82gg9catj3vmh4248og","eventType":"touch"}}'
NOW = 1_700_000_000
ORG = "org-1"
OIDC_PATH = "/data-connector/.well-known/openid-configuration"
JWKS_PATH = "/data-connector/.well-known/jwks.json"


def public_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig", "alg": "ES256"}


@dataclass
class Identity:
    """DT's identity service as far as pushes need it: its OpenID configuration and JWKS."""

    keys: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)
    config_hits: int = 0
    jwks_hits: int = 0
    status: int = 200
    body: bytes | None = None  # served instead of the real documents when set
    issuer: str = ""
    oidc_url: str = ""

    def add_key(self, kid: str) -> ec.EllipticCurvePrivateKey:
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())
        return self.keys[kid]

    def sign(self, kid: str = "k1", body: bytes = BODY, **changes: Any) -> str:
        return sign_es256(
            body,
            changes.pop("key", None) or self.keys[kid],
            kid=kid,
            issuer=changes.pop("issuer", self.issuer),
            iat=changes.pop("iat", NOW),
            subject=changes.pop("subject", ORG),
        )

    def app(self) -> web.Application:
        async def config(request: web.Request) -> web.Response:
            self.config_hits += 1
            if self.status != 200 or self.body is not None:
                return web.Response(status=self.status, body=self.body)
            return web.json_response(
                {"issuer": self.issuer, "jwks_uri": str(request.url.with_path(JWKS_PATH))}
            )

        async def jwks(request: web.Request) -> web.Response:
            self.jwks_hits += 1
            return web.json_response(
                {"keys": [public_jwk(key, kid) for kid, key in self.keys.items()]}
            )

        app = web.Application()
        app.router.add_get(OIDC_PATH, config)
        app.router.add_get(JWKS_PATH, jwks)
        return app


class Clock:
    """Monotonic seconds that a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def identity(aiohttp_server: Callable[..., Any]) -> Identity:
    ident = Identity()
    server: TestServer = await aiohttp_server(ident.app())
    ident.issuer = str(server.make_url("/data-connector"))
    ident.oidc_url = str(server.make_url(OIDC_PATH))
    ident.add_key("k1")
    return ident


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(identity: Identity, session: aiohttp.ClientSession, clock: Clock) -> JwksCache:
    return JwksCache(session, identity.oidc_url, clock=clock)


async def verify(cache: JwksCache, token: str | None, *, body: bytes = BODY) -> Any:
    headers = {} if token is None else {ASYMMETRIC_HEADER: token}
    return await Verifier(key_source=cache, org_id=ORG).verify(body, headers, now=NOW)


async def refusal(cache: JwksCache, token: str | None, *, body: bytes = BODY) -> str:
    with pytest.raises(Refusal) as caught:
        await verify(cache, token, body=body)
    return caught.value.reason


async def test_token_signed_by_a_published_key_verifies(
    identity: Identity, cache: JwksCache
) -> None:
    claims = await verify(cache, identity.sign())
    assert (claims.subject, claims.key_id) == (ORG, "k1")
    assert claims.checksum_sha256 == hashlib.sha256(BODY).hexdigest()


async def test_keys_are_fetched_once_for_many_pushes(identity: Identity, cache: JwksCache) -> None:
    for _ in range(3):
        await verify(cache, identity.sign())
    assert (identity.config_hits, identity.jwks_hits) == (1, 1)


async def test_concurrent_pushes_share_one_fetch(identity: Identity, cache: JwksCache) -> None:
    await asyncio.gather(*(verify(cache, identity.sign()) for _ in range(10)))
    assert (identity.config_hits, identity.jwks_hits) == (1, 1)


async def test_rotated_key_is_followed_after_one_refetch(
    identity: Identity, cache: JwksCache, clock: Clock
) -> None:
    await verify(cache, identity.sign("k1"))
    clock.now += 61
    identity.add_key("k2")
    claims = await verify(cache, identity.sign("k2"))
    assert claims.key_id == "k2"
    assert identity.jwks_hits == 2


async def test_kid_still_unknown_after_the_refetch_is_unknown_key(
    identity: Identity, cache: JwksCache, clock: Clock
) -> None:
    await verify(cache, identity.sign("k1"))
    clock.now += 61
    stranger = ec.generate_private_key(ec.SECP256R1())
    assert await refusal(cache, identity.sign("k9", key=stranger)) == "unknown_key"
    assert identity.jwks_hits == 2


async def test_unknown_kids_refetch_at_most_once_per_interval(
    identity: Identity, cache: JwksCache, clock: Clock
) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    await verify(cache, identity.sign("k1"))
    clock.now += 61
    for _ in range(3):
        assert await refusal(cache, identity.sign("k9", key=stranger)) == "unknown_key"
    assert identity.jwks_hits == 2
    clock.now += 59
    assert await refusal(cache, identity.sign("k9", key=stranger)) == "unknown_key"
    assert identity.jwks_hits == 2
    clock.now += 2
    assert await refusal(cache, identity.sign("k9", key=stranger)) == "unknown_key"
    assert identity.jwks_hits == 3


async def test_new_kid_right_after_a_fetch_waits_for_the_interval(
    identity: Identity, cache: JwksCache, clock: Clock
) -> None:
    await verify(cache, identity.sign("k1"))
    identity.add_key("k2")
    assert await refusal(cache, identity.sign("k2")) == "unknown_key"
    clock.now += 60
    assert (await verify(cache, identity.sign("k2"))).key_id == "k2"


async def test_token_without_kid_is_unknown_key_without_a_refetch(
    identity: Identity, cache: JwksCache, clock: Clock
) -> None:
    await verify(cache, identity.sign("k1"))
    clock.now += 61
    token = jwt.encode(
        {"iss": identity.issuer, "sub": ORG, "iat": NOW, "exp": NOW + 60},
        identity.keys["k1"],
        algorithm="ES256",
    )
    assert await refusal(cache, token) == "unknown_key"
    assert identity.jwks_hits == 1


async def test_keys_older_than_max_age_are_refetched_and_a_dropped_key_is_refused(
    identity: Identity, session: aiohttp.ClientSession, clock: Clock
) -> None:
    cache = JwksCache(session, identity.oidc_url, max_age=900, clock=clock)
    identity.add_key("k2")
    await verify(cache, identity.sign("k2"))
    del identity.keys["k2"]
    clock.now += 901
    assert await refusal(
        cache, identity.sign("k2", key=ec.generate_private_key(ec.SECP256R1()))
    ) == ("unknown_key")
    assert identity.jwks_hits == 2


async def test_wrong_issuer_is_bad_issuer(identity: Identity, cache: JwksCache) -> None:
    token = identity.sign(issuer="https://identity.example/other")
    assert await refusal(cache, token) == "bad_issuer"


async def test_wrong_subject_is_bad_subject(identity: Identity, cache: JwksCache) -> None:
    assert await refusal(cache, identity.sign(subject="org-2")) == "bad_subject"


async def test_hs256_token_in_the_asymmetric_header_is_bad_algorithm(
    identity: Identity, cache: JwksCache
) -> None:
    token = sign_hs256(BODY, b"a-shared-secret-a-shared-secret!", iat=NOW)
    assert await refusal(cache, token) == "bad_algorithm"


async def test_tampered_body_is_checksum_mismatch(identity: Identity, cache: JwksCache) -> None:
    assert await refusal(cache, identity.sign(), body=BODY + b" ") == "checksum_mismatch"


async def test_missing_asymmetric_header_is_missing_signature_without_a_fetch(
    identity: Identity, cache: JwksCache
) -> None:
    assert await refusal(cache, None) == "missing_signature"
    assert identity.config_hits == 0


async def test_malformed_token_is_refused_without_a_fetch(
    identity: Identity, cache: JwksCache
) -> None:
    identity.status = 500
    assert await refusal(cache, "not.a.token!") == "malformed_token"
    assert identity.config_hits == 0


async def test_unreachable_identity_service_is_unavailable_not_a_refusal(
    aiohttp_server: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    server: TestServer = await aiohttp_server(web.Application())
    url = str(server.make_url(OIDC_PATH))
    await server.close()
    signer = Identity(issuer="https://identity.example/data-connector")
    signer.add_key("k1")
    with pytest.raises(Unavailable) as caught:
        await verify(JwksCache(session, url), signer.sign())
    assert caught.value.reason == "jwks_unavailable"
    assert caught.value.retry_after > 0


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, None),
        (404, None),
        (200, b"not json"),
        (200, b"[]"),
        (200, b'{"issuer":"x"}'),
        (200, b'{"jwks_uri":"/data-connector/.well-known/jwks.json"}'),
    ],
)
async def test_unusable_openid_configuration_is_unavailable(
    identity: Identity, cache: JwksCache, status: int, body: bytes | None
) -> None:
    identity.status, identity.body = status, body
    with pytest.raises(Unavailable, match="jwks_unavailable"):
        await verify(cache, identity.sign())


async def test_after_a_failed_fetch_none_is_tried_until_retry_after(
    identity: Identity, session: aiohttp.ClientSession, clock: Clock
) -> None:
    cache = JwksCache(session, identity.oidc_url, retry_after=5, clock=clock)
    identity.status = 503
    with pytest.raises(Unavailable):
        await verify(cache, identity.sign())
    identity.status = 200
    clock.now += 4
    with pytest.raises(Unavailable):
        await verify(cache, identity.sign())
    assert identity.config_hits == 1
    clock.now += 1
    assert (await verify(cache, identity.sign())).key_id == "k1"
    assert identity.config_hits == 2


async def test_failed_refetch_for_a_new_kid_is_unavailable(
    identity: Identity, cache: JwksCache, clock: Clock
) -> None:
    await verify(cache, identity.sign("k1"))
    clock.now += 61
    identity.add_key("k2")
    identity.status = 500
    with pytest.raises(Unavailable):
        await verify(cache, identity.sign("k2"))


async def test_both_schemes_accept_a_push_carrying_both_valid_headers(
    identity: Identity, cache: JwksCache
) -> None:
    verifier = Verifier(secrets=[b"old", b"shared"], key_source=cache, org_id=ORG)
    headers = {
        HMAC_HEADER: sign_hs256(BODY, b"shared", iat=NOW),
        ASYMMETRIC_HEADER: identity.sign(),
    }
    claims = await verifier.verify(BODY, headers, now=NOW)
    assert claims is not None
    assert (claims.secret_index, claims.subject, claims.key_id) == (1, ORG, "k1")


async def test_both_schemes_need_the_asymmetric_header_too(
    identity: Identity, cache: JwksCache
) -> None:
    verifier = Verifier(secrets=[b"shared"], key_source=cache, org_id=ORG)
    headers = {HMAC_HEADER: sign_hs256(BODY, b"shared", iat=NOW)}
    with pytest.raises(Refusal, match="missing_signature"):
        await verifier.verify(BODY, headers, now=NOW)


async def test_both_schemes_check_x_dt_signature_first(
    identity: Identity, cache: JwksCache
) -> None:
    verifier = Verifier(secrets=[b"shared"], key_source=cache, org_id=ORG)
    headers = {
        HMAC_HEADER: sign_hs256(BODY, b"another", iat=NOW),
        ASYMMETRIC_HEADER: identity.sign(subject="org-2"),
    }
    with pytest.raises(Refusal, match="bad_signature"):
        await verifier.verify(BODY, headers, now=NOW)
    assert identity.config_hits == 0


async def test_verifier_from_settings_owns_its_session_between_start_and_close(
    identity: Identity,
) -> None:
    settings = VerifySettings(
        secrets=(Secret("shared"),), asymmetric=True, oidc_url=identity.oidc_url, org_id=ORG
    )
    verifier = Verifier.from_settings(settings)
    await verifier.start()
    try:
        headers = {
            "x-dt-signature": sign_hs256(BODY, b"shared", iat=NOW),
            "dt-asymmetric-signature": identity.sign(),
        }
        claims = await verifier.verify(BODY, headers, now=NOW)
        assert claims is not None and claims.subject == ORG
    finally:
        await verifier.close()


def test_signing_keys_keep_only_ec_p256_signing_keys_with_a_kid() -> None:
    good = ec.generate_private_key(ec.SECP256R1())
    p384 = ec.generate_private_key(ec.SECP384R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    broken = {**public_jwk(good, "broken"), "x": "AAAA"}
    jwks = {
        "keys": [
            public_jwk(good, "good"),
            {**public_jwk(good, "enc"), "use": "enc"},
            {**public_jwk(good, "rs"), "alg": "RS256"},
            {**public_jwk(good, "no-kid"), "kid": None},
            {**public_jwk(p384, "p384"), "alg": "ES384"},
            {**RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True), "kid": "rsa"},
            broken,
            "not a key",
            {**public_jwk(p384, "good")},  # a repeated kid: the first wins
        ]
    }
    keys = signing_keys(jwks)
    assert list(keys) == ["good"]
    assert keys["good"].public_numbers() == good.public_key().public_numbers()
