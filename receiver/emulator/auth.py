"""DT's OAuth2 service-account flow, server side: checking assertions, issuing bearer tokens.

Token exchange (DT-PROTOCOL §4.7): the client POSTs, form-encoded,
``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` and ``assertion=<JWT>``, a JWT
signed HS256 with the service account's secret, header ``kid`` = its key id, claims
``iss`` = its email, ``aud`` = the token URL, ``exp`` ≤ 1 h ahead. Bad credentials get a
400 (the official SDK turns that into ``Unauthorized``). API calls carry
``Authorization: Bearer <access_token>`` (or DT's Basic ``key id:secret``); a missing,
unknown or expired token gets a 401.

Pure: time is a parameter; the views in `api.py` call these.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from receiver.emulator.errors import ApiError

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DT_TOKEN_URL = "https://identity.disruptive-technologies.com/oauth2/token"
TOKEN_PATH = "/oauth2/token"
ACCESS_TOKEN_TTL_SECONDS = 3600
MAX_ASSERTION_LIFETIME_SECONDS = 3600
LEEWAY_SECONDS = 60


@dataclass(frozen=True)
class ServiceAccount:
    key_id: str
    secret: str
    email: str

    def __repr__(self) -> str:  # never show the secret
        return f"ServiceAccount(key_id={self.key_id!r}, email={self.email!r})"


def _refused(message: str) -> ApiError:
    return ApiError(400, message)


def check_token_request(form: Mapping[str, str]) -> str:
    """The assertion of a token request; 400 when the grant type or assertion is missing."""
    grant_type = form.get("grant_type", "")
    if grant_type != GRANT_TYPE:
        raise _refused("unsupported grant_type")
    assertion = form.get("assertion", "")
    if not assertion:
        raise _refused("missing assertion")
    return assertion


def check_assertion(
    assertion: str,
    accounts: Mapping[str, ServiceAccount],
    audiences: Iterable[str],
    now: float,
) -> ServiceAccount:
    """The service account whose valid JWT `assertion` this is; `ApiError(400)` otherwise."""
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.InvalidTokenError as exc:
        raise _refused("invalid assertion: not a JWT") from exc
    if header.get("alg") != "HS256":
        raise _refused("invalid assertion: alg must be HS256")
    kid = header.get("kid")
    account = accounts.get(kid) if isinstance(kid, str) else None
    if account is None:
        raise _refused("invalid assertion: unknown key id")
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion,
            account.secret,
            algorithms=["HS256"],
            audience=list(audiences),
            issuer=account.email,
            # Times are checked below against the emulator's clock, not the wall clock.
            options={
                "require": ["exp", "iss", "aud"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidSignatureError as exc:
        raise _refused("invalid assertion: bad signature") from exc
    except jwt.InvalidAudienceError as exc:
        raise _refused("invalid assertion: wrong aud") from exc
    except jwt.InvalidIssuerError as exc:
        raise _refused("invalid assertion: iss must be the service account email") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise _refused(f"invalid assertion: missing claim {exc.claim}") from exc
    except jwt.InvalidTokenError as exc:
        raise _refused("invalid assertion") from exc
    _check_times(claims, now)
    return account


def _check_times(claims: Mapping[str, Any], now: float) -> None:
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise _refused("invalid assertion: exp must be a number")
    if exp < now - LEEWAY_SECONDS:
        raise _refused("invalid assertion: expired")
    if exp > now + MAX_ASSERTION_LIFETIME_SECONDS + LEEWAY_SECONDS:
        raise _refused("invalid assertion: exp more than 1 hour ahead")
    iat = claims.get("iat")
    if iat is not None and (not isinstance(iat, int | float) or iat > now + LEEWAY_SECONDS):
        raise _refused("invalid assertion: iat in the future")


class AccessTokens:
    """Bearer tokens handed out by the token endpoint, each with its expiry."""

    def __init__(self) -> None:
        self._expiry: dict[str, tuple[float, str]] = {}

    def issue(self, token: str, key_id: str, now: float, ttl: float) -> None:
        self._expiry[token] = (now + ttl, key_id)

    def valid(self, token: str, now: float) -> bool:
        entry = self._expiry.get(token)
        return entry is not None and now < entry[0]

    def expire_all(self) -> None:
        """Every token issued so far stops working (clients must fetch a new one)."""
        self._expiry.clear()

    def __len__(self) -> int:
        return len(self._expiry)


def check_authorization(
    header: str | None,
    tokens: AccessTokens,
    accounts: Mapping[str, ServiceAccount],
    now: float,
) -> None:
    """Accept ``Bearer <valid token>`` or DT's ``Basic base64(keyId:secret)``; 401 otherwise."""
    if not header:
        raise ApiError(401, "missing authorization header")
    scheme, _, credentials = header.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        if tokens.valid(credentials, now):
            return
        raise ApiError(401, "access token is invalid or expired")
    if scheme.lower() == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ApiError(401, "invalid basic credentials") from exc
        key_id, _, secret = decoded.partition(":")
        account = accounts.get(key_id)
        if account is not None and hmac.compare_digest(account.secret.encode(), secret.encode()):
            return
        raise ApiError(401, "invalid basic credentials")
    raise ApiError(401, "unsupported authorization scheme")
