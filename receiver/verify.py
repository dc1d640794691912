"""Push signature verification (spec §6, §13; DT-PROTOCOL §2): pure, no I/O, no clock.

Two schemes, each a JWT whose claims carry a hash of the exact body bytes:

- `X-Dt-Signature` (`HmacVerifier`): HS256 with any of the shared secrets. Hand-written
  because it runs on every push (`receiver.jws` reads the token): it takes the same
  accept/refuse decision as PyJWT 2.15's ``jwt.decode(token, secret, algorithms=["HS256"],
  leeway=...)`` with `exp`/`iat` required (``int()`` of the time claims, ``exp <= now -
  leeway`` is expired, ``iat > now + leeway`` not yet valid) at a fraction of its cost.
  Stricter than PyJWT by design: `exp`/`iat` must be JSON numbers (PyJWT also takes
  numeric strings and booleans), a checksum claim is required, and the JSON/ASCII rules of
  `receiver.jws`. Other registered claims (`nbf`, `aud`, `sub`, `jti`) are not checked:
  DT sends none of them but `jti`.
- `DT-Asymmetric-Signature` (`AsymmetricVerifier`): ES256 (pinned) by DT's identity service,
  the key chosen by `kid` from a JWKS the caller holds (`receiver.jwks`); issuer pinned,
  `sub` pinned to the organization id when configured; `checksum_sha256` required.

`Verifier` applies the configured scheme(s) to a push's headers; it awaits only for the
JWKS, so the HMAC-only path does no I/O. Refusals are `receiver.errors.Refusal` with the
reasons of spec §6, in the precedence of spec §13.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from jwt.algorithms import ECAlgorithm

from receiver.errors import Refusal
from receiver.jws import (
    DT_HEADER,
    b64url_decode,
    check_header,
    json_object,
    sign_es256,
    sign_hs256,
    split,
)

if TYPE_CHECKING:
    from receiver.config import VerifySettings

__all__ = [
    "ASYMMETRIC_HEADER",
    "HMAC_HEADER",
    "AsymmetricVerifier",
    "Claims",
    "HmacVerifier",
    "KeySource",
    "UnknownKey",
    "Verifier",
    "sign_es256",
    "sign_hs256",
]

HMAC_HEADER = "X-Dt-Signature"
ASYMMETRIC_HEADER = "DT-Asymmetric-Signature"


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified push's token says. Times are the claims as sent (Unix seconds)."""

    iat: float
    exp: float
    checksum_sha256: str | None
    checksum: str | None
    secret_index: int | None = None  # position in the secrets of the one that matched
    subject: str | None = None  # asymmetric `sub`: DT's organization id
    key_id: str | None = None  # asymmetric `kid`
    jti: str | None = None


class UnknownKey(Refusal):
    """`unknown_key`; `kid` is the token's key id (None: it had none, a re-fetch won't help)."""

    def __init__(self, kid: str | None) -> None:
        super().__init__("unknown_key")
        self.kid = kid


def _seconds(value: object) -> int | None:
    """A time claim as PyJWT reads it (``int()``), or None when it is not a JSON number."""
    if type(value) is int:
        return value
    if type(value) is float:
        try:
            return int(value)
        except (OverflowError, ValueError):
            return None
    return None


def _times(claims: dict[str, Any]) -> tuple[int, int]:
    exp = _seconds(claims.get("exp"))
    iat = _seconds(claims.get("iat"))
    if exp is None or iat is None:
        raise Refusal("missing_claim")
    return exp, iat


def _check_times(exp: int, iat: int, now: float, leeway: float) -> None:
    if exp <= now - leeway:
        raise Refusal("expired")
    if iat > now + leeway:
        raise Refusal("not_yet_valid")


def _hex_matches(claimed: object, actual_hex: str) -> bool:
    """Case-insensitive constant-time compare of a hex digest claim."""
    return (
        type(claimed) is str
        and claimed.isascii()
        and hmac.compare_digest(claimed.lower(), actual_hex)
    )


def _optional_str(value: object) -> str | None:
    return value if type(value) is str else None


class HmacVerifier:
    """The `X-Dt-Signature` scheme: HS256 with any of `secrets` (rotation), then checksums."""

    def __init__(
        self, secrets: Sequence[bytes], *, leeway_seconds: float = 60, allow_sha1: bool = True
    ) -> None:
        if not secrets or any(not s for s in secrets):
            raise ValueError("HmacVerifier needs at least one non-empty secret")
        self._macs = [hmac.new(bytes(s), digestmod=hashlib.sha256) for s in secrets]
        self.leeway = leeway_seconds
        self.allow_sha1 = allow_sha1

    def verify(self, body: bytes, token: str | None, *, now: float) -> Claims:
        """The claims of `token` for `body` at Unix time `now`, or raise `Refusal`."""
        if not token:
            raise Refusal("missing_signature")
        signing_input, header_segment, claims_segment, signature_segment = split(token)
        if header_segment == DT_HEADER:
            claims = json_object(claims_segment)
            signature = b64url_decode(signature_segment)
            if signature is None:
                raise Refusal("malformed_token")
        else:
            header = json_object(header_segment)
            claims = json_object(claims_segment)
            signature = check_header(header, "HS256", b64url_decode(signature_segment))
        for index, base in enumerate(self._macs):  # noqa: B007 (index is used after the loop)
            mac = base.copy()
            mac.update(signing_input)
            if hmac.compare_digest(mac.digest(), signature):
                break
        else:
            raise Refusal("bad_signature")
        exp, iat = _times(claims)
        sha256 = claims.get("checksum_sha256")
        sha1 = claims.get("checksum")
        if sha256 is None and sha1 is None:
            raise Refusal("missing_claim")
        _check_times(exp, iat, now, self.leeway)
        if sha256 is not None:
            if not _hex_matches(sha256, hashlib.sha256(body).hexdigest()):
                raise Refusal("checksum_mismatch")
        elif not self.allow_sha1:
            raise Refusal("sha1_not_allowed")
        elif not _hex_matches(sha1, hashlib.sha1(body).hexdigest()):
            raise Refusal("checksum_mismatch")
        return Claims(
            iat=float(claims["iat"]),
            exp=float(claims["exp"]),
            checksum_sha256=_optional_str(sha256),
            checksum=_optional_str(sha1),
            secret_index=index,
            jti=_optional_str(claims.get("jti")),
        )


class AsymmetricVerifier:
    """The `DT-Asymmetric-Signature` scheme: ES256 (pinned) with a key chosen by `kid`."""

    def __init__(self) -> None:
        self._es256 = ECAlgorithm(ECAlgorithm.SHA256)

    def verify(
        self,
        body: bytes,
        token: str | None,
        keys: Mapping[str, EllipticCurvePublicKey],
        *,
        issuer: str,
        org_id: str | None,
        leeway_seconds: float,
        now: float,
    ) -> Claims:
        """The claims of `token` for `body`, or raise `Refusal` (`UnknownKey` for the kid)."""
        if not token:
            raise Refusal("missing_signature")
        signing_input, header_segment, claims_segment, signature_segment = split(token)
        header = json_object(header_segment)
        claims = json_object(claims_segment)
        signature = check_header(header, "ES256", b64url_decode(signature_segment))
        kid = header.get("kid")
        key = keys.get(kid) if kid is not None else None
        if key is None:
            raise UnknownKey(kid)
        if not isinstance(key.curve, SECP256R1) or not self._es256.verify(
            signing_input, key, signature
        ):
            raise Refusal("bad_signature")
        exp, iat = _times(claims)
        sha256 = claims.get("checksum_sha256")
        if sha256 is None:
            raise Refusal("missing_claim")
        _check_times(exp, iat, now, leeway_seconds)
        if claims.get("iss") != issuer:
            raise Refusal("bad_issuer")
        subject = claims.get("sub")
        if org_id is not None and subject != org_id:
            raise Refusal("bad_subject")
        if not _hex_matches(sha256, hashlib.sha256(body).hexdigest()):
            raise Refusal("checksum_mismatch")
        return Claims(
            iat=float(claims["iat"]),
            exp=float(claims["exp"]),
            checksum_sha256=_optional_str(sha256),
            checksum=_optional_str(claims.get("checksum")),
            subject=_optional_str(subject),
            key_id=kid,
            jti=_optional_str(claims.get("jti")),
        )

    def key_id(self, token: str | None) -> str:
        """The `kid` of a well-formed ES256 token; the refusals that precede `unknown_key`.

        Lets the caller refuse a bad token before it fetches any key.
        """
        if not token:
            raise Refusal("missing_signature")
        _, header_segment, claims_segment, signature_segment = split(token)
        header = json_object(header_segment)
        json_object(claims_segment)
        check_header(header, "ES256", b64url_decode(signature_segment))
        kid = header.get("kid")
        if kid is None:
            raise UnknownKey(None)
        return str(kid)


class KeySource(Protocol):
    """Where the asymmetric scheme's keys and issuer come from (`receiver.jwks.JwksCache`)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def keys(self) -> Mapping[str, EllipticCurvePublicKey]: ...

    async def issuer(self) -> str: ...

    async def refresh_if_allowed(self) -> bool: ...


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by case-insensitive name (aiohttp's headers already are; a plain dict isn't)."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, candidate in headers.items():
            if key.lower() == lowered:
                return candidate
    return value


class Verifier:
    """A push checked against the configured scheme(s) of spec §6: the view's one entry point.

    With `secrets`, `X-Dt-Signature` is required; with a `key_source`,
    `DT-Asymmetric-Signature`; with both, both, `X-Dt-Signature` checked first. `insecure`
    (``serve --insecure-skip-verify`` with no scheme configured) checks nothing: None.
    """

    def __init__(
        self,
        *,
        secrets: Sequence[bytes] = (),
        key_source: KeySource | None = None,
        org_id: str | None = None,
        leeway_seconds: float = 60,
        allow_sha1: bool = True,
        insecure: bool = False,
    ) -> None:
        if not secrets and key_source is None and not insecure:
            raise ValueError("Verifier needs secrets, a key source, or insecure=True")
        self._hmac = (
            HmacVerifier(secrets, leeway_seconds=leeway_seconds, allow_sha1=allow_sha1)
            if secrets
            else None
        )
        self._key_source = key_source
        self._asymmetric = AsymmetricVerifier()
        self.org_id = org_id
        self.leeway = leeway_seconds
        self.insecure = insecure and self._hmac is None and key_source is None

    @classmethod
    def from_settings(
        cls, settings: VerifySettings, *, insecure_skip_verify: bool = False
    ) -> Verifier:
        key_source: KeySource | None = None
        if settings.asymmetric:
            from receiver.jwks import JwksCache  # the I/O shell, only when it is used

            key_source = JwksCache(None, settings.oidc_url)
        return cls(
            secrets=[secret.reveal().encode() for secret in settings.secrets],
            key_source=key_source,
            org_id=settings.org_id,
            leeway_seconds=settings.leeway_seconds,
            allow_sha1=settings.allow_sha1,
            insecure=insecure_skip_verify,
        )

    async def start(self) -> None:
        if self._key_source is not None:
            await self._key_source.start()

    async def close(self) -> None:
        if self._key_source is not None:
            await self._key_source.close()

    async def verify(self, body: bytes, headers: Mapping[str, str], *, now: float) -> Claims | None:
        """The push's claims, or raise `Refusal` (401) / `Unavailable` (503: no keys now)."""
        if self.insecure:
            return None
        claims = None
        if self._hmac is not None:
            claims = self._hmac.verify(body, _header(headers, HMAC_HEADER), now=now)
        if self._key_source is not None:
            signed = await self._verify_asymmetric(
                self._key_source, body, _header(headers, ASYMMETRIC_HEADER), now
            )
            if claims is None:
                return signed
            return replace(claims, subject=signed.subject, key_id=signed.key_id)
        return claims

    async def _verify_asymmetric(
        self, source: KeySource, body: bytes, token: str | None, now: float
    ) -> Claims:
        kid = self._asymmetric.key_id(token)
        keys = await source.keys()
        if kid not in keys and await source.refresh_if_allowed():
            keys = await source.keys()
        return self._asymmetric.verify(
            body,
            token,
            keys,
            issuer=await source.issuer(),
            org_id=self.org_id,
            leeway_seconds=self.leeway,
            now=now,
        )
