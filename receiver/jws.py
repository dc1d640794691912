"""Compact JWS tokens read strictly and written the way DT writes them (pure).

Reading follows PyJWT 2.15's rules exactly, so that `receiver.verify` can skip PyJWT's
cost on every push and still take its decisions: three dot-separated base64url segments,
each canonical (only ``A-Z a-z 0-9 - _``, ``=`` padding allowed only when it is exactly
right, no non-zero trailing bits), header and claims JSON objects, and PyJWT's header
rules (`kid` a string; `crit` a non-empty list naming only `b64`, which must be present;
no unencoded payload). Stricter than PyJWT by design: the JSON is RFC 8259 UTF-8 as orjson
reads it (no UTF-16/32, BOM, NaN/Infinity, overflowing numbers, lone surrogate escapes),
and the token must be ASCII. Every failure is a `Refusal("malformed_token")`, except an
unpinned `alg`: `bad_algorithm`.

Writing: `sign_hs256` makes an `X-Dt-Signature` byte-identical to DT's (it reproduces
DT's real tokens), `sign_es256` a `DT-Asymmetric-Signature`; both sign with PyJWT.
"""

from __future__ import annotations

import binascii
import hashlib
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from jwt.algorithms import HMACAlgorithm

from receiver.errors import Refusal

# base64url → standard alphabet for binascii; the standard-only '+' and '/' become invalid.
_TO_STANDARD = bytes.maketrans(b"-_+/", b"+/!!")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_PADDING = (b"", b"", b"==", b"=")
# Last character of an unpadded segment of length 4n+2 / 4n+3 whose unused bits are zero.
_CANONICAL_LAST = {2: frozenset(b"AQgw"), 3: frozenset(b"AEIMQUYcgkosw048")}

#: DT's header, ``{"alg":"HS256","typ":"JWT"}``, base64url: known good without decoding.
DT_HEADER = b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"


def b64url_decode(segment: bytes) -> bytes | None:
    """A segment's bytes, or None when it is not canonical base64url (PyJWT 2.15's rules)."""
    stripped = segment.rstrip(b"=")
    padding = len(segment) - len(stripped)
    if padding and (padding > 2 or len(segment) % 4):
        return None
    rest = len(stripped) % 4
    if rest == 1 or (rest and stripped[-1] not in _CANONICAL_LAST[rest]):
        return None
    try:
        return binascii.a2b_base64(
            stripped.translate(_TO_STANDARD) + _PADDING[rest], strict_mode=True
        )
    except binascii.Error:
        return None


def b64url_encode(data: bytes) -> bytes:
    """Unpadded base64url, as JWTs use it."""
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=")


def split(token: str) -> tuple[bytes, bytes, bytes, bytes]:
    """(signing input, header, claims, signature) segments of a compact JWS."""
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:  # also the surrogate escapes aiohttp makes of non-UTF-8 bytes
        raise Refusal("malformed_token") from None
    parts = raw.split(b".")
    if len(parts) != 3:
        raise Refusal("malformed_token")
    header, claims, signature = parts
    return raw[: len(header) + 1 + len(claims)], header, claims, signature


def json_object(segment: bytes) -> dict[str, Any]:
    """The JSON object a header or claims segment holds."""
    data = b64url_decode(segment)
    if data is None:
        raise Refusal("malformed_token")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise Refusal("malformed_token") from None
    if type(value) is not dict:
        raise Refusal("malformed_token")
    return value


def check_header(header: dict[str, Any], alg: str, signature: bytes | None) -> bytes:
    """PyJWT's header rules, then the pinned `alg`; returns the decoded `signature`.

    `signature` is `b64url_decode` of the signature segment (None: malformed), checked here
    so that `malformed_token` comes before `bad_algorithm` (spec §13).
    """
    if "kid" in header and type(header["kid"]) is not str:
        raise Refusal("malformed_token")
    if "crit" in header:
        crit = header["crit"]
        if type(crit) is not list or not crit or any(c != "b64" for c in crit):
            raise Refusal("malformed_token")
        if "b64" not in header:
            raise Refusal("malformed_token")
    if header.get("b64", True) is False:  # an unencoded (detached) payload: never a push
        raise Refusal("malformed_token")
    if signature is None:
        raise Refusal("malformed_token")
    if header.get("alg") != alg:
        raise Refusal("bad_algorithm")
    return signature


def _checksums(body: bytes, *, sha1: bool, sha256: bool) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    if sha1:
        claims["checksum"] = hashlib.sha1(body).hexdigest()
    if sha256:
        claims["checksum_sha256"] = hashlib.sha256(body).hexdigest()
    return claims


def sign_hs256(
    body: bytes,
    secret: bytes,
    *,
    iat: int,
    exp: int | None = None,
    sha1: bool = True,
    sha256: bool = True,
    jti: str | None = None,
) -> str:
    """An `X-Dt-Signature` for `body` shaped exactly like DT's.

    Header ``{"alg":"HS256","typ":"JWT"}``; compact claims in DT's order: `checksum`
    (SHA-1 hex), `checksum_sha256`, `exp` (default `iat` + 3600), `iat`, `jti` (left out
    when None; DT sends a fresh xid).
    """
    claims = _checksums(body, sha1=sha1, sha256=sha256)
    claims["exp"] = iat + 3600 if exp is None else exp
    claims["iat"] = iat
    if jti is not None:
        claims["jti"] = jti
    signing_input = DT_HEADER + b"." + b64url_encode(orjson.dumps(claims))
    signature = HMACAlgorithm(HMACAlgorithm.SHA256).sign(signing_input, secret)
    return (signing_input + b"." + b64url_encode(signature)).decode("ascii")


def sign_es256(
    body: bytes,
    private_key: EllipticCurvePrivateKey,
    *,
    kid: str,
    issuer: str,
    iat: int,
    exp: int | None = None,
    subject: str | None = None,
    jti: str | None = None,
) -> str:
    """A `DT-Asymmetric-Signature` for `body`, as DT's identity service signs it.

    Header `alg` ES256 with `kid`; claims `checksum_sha256`, `iss`, `exp` (default `iat`
    + 3600), `iat`, and `sub` (the organization id) and `jti` when given.
    """
    claims = _checksums(body, sha1=False, sha256=True)
    claims.update(iss=issuer, exp=iat + 3600 if exp is None else exp, iat=iat)
    if subject is not None:
        claims["sub"] = subject
    if jti is not None:
        claims["jti"] = jti
    return jwt.encode(claims, private_key, algorithm="ES256", headers={"kid": kid})
