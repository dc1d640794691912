"""DT's service-account OAuth2 flow, as state and pure functions (the client does the HTTP).

A service account has a key id, a key secret and an email. To get an access token the client
signs a short JWT with the secret (HS256, header ``kid`` = key id; claims ``iss`` = email,
``aud`` = the token endpoint URL, ``iat`` a few seconds in the past for clock skew, ``exp`` at
most an hour after ``iat``) and posts it form-encoded to the token endpoint as ``assertion``
with ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``. The answer's
``access_token`` is sent as ``Authorization: Bearer …`` until ``refresh_margin`` seconds before
its ``expires_in`` runs out; then a new one is fetched.

`ServiceAccountAuth` never shows its secret or token in `repr`/`str`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import jwt

from receiver.dt.errors import ConfigurationError, UnexpectedResponse

DEFAULT_TOKEN_URL = "https://identity.disruptive-technologies.com/oauth2/token"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"

#: The environment variables of the official SDK, read by `auth_from_env`.
ENV_KEY_ID = "DT_SERVICE_ACCOUNT_KEY_ID"
ENV_SECRET = "DT_SERVICE_ACCOUNT_SECRET"
ENV_EMAIL = "DT_SERVICE_ACCOUNT_EMAIL"
ENV_TOKEN_URL = "DT_TOKEN_URL"


class ServiceAccountAuth:
    """Service-account credentials and the access token they were last exchanged for."""

    def __init__(
        self,
        key_id: str,
        secret: str,
        email: str,
        *,
        token_url: str = DEFAULT_TOKEN_URL,
        refresh_margin: float = 60.0,
        assertion_lifetime: int = 3600,
        clock_skew: int = 5,
    ) -> None:
        missing = [
            name
            for name, value in (("key_id", key_id), ("secret", secret), ("email", email))
            if not isinstance(value, str) or not value
        ]
        if missing:
            raise ConfigurationError(f"service account: missing {', '.join(missing)}")
        if not 0 < assertion_lifetime <= 3600:
            raise ConfigurationError("service account: assertion_lifetime must be 1..3600 s")
        self._key_id = key_id
        self._secret = secret
        self._email = email
        self._token_url = token_url
        self._refresh_margin = refresh_margin
        self._lifetime = assertion_lifetime
        self._skew = clock_skew
        self._token: str | None = None
        self._refresh_at = 0.0

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def email(self) -> str:
        return self._email

    @property
    def token_url(self) -> str:
        return self._token_url

    def __repr__(self) -> str:
        return (
            f"ServiceAccountAuth(key_id={self._key_id!r}, email={self._email!r}, "
            f"token_url={self._token_url!r})"
        )

    def assertion(self, now: float) -> str:
        """The signed JWT that the token endpoint exchanges for an access token."""
        issued = int(now) - self._skew
        claims = {
            "iss": self._email,
            "aud": self._token_url,
            "iat": issued,
            "exp": issued + self._lifetime,
        }
        with warnings.catch_warnings():
            # the key is DT's to choose; a short one is DT's answer to give (400), not ours
            warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
            return jwt.encode(
                claims, self._secret, algorithm="HS256", headers={"kid": self._key_id}
            )

    def token_request_form(self, now: float) -> dict[str, str]:
        """The form fields of the token request."""
        return {"assertion": self.assertion(now), "grant_type": GRANT_TYPE}

    def cached_token(self, now: float) -> str | None:
        """The access token, or None when there is none or it is due for refresh."""
        if self._token is not None and now < self._refresh_at:
            return self._token
        return None

    def accept(self, answer: Any, now: float) -> str:
        """Store the token endpoint's answer; return the access token."""
        if not isinstance(answer, Mapping):
            raise UnexpectedResponse("token endpoint answer is not a json object", status=200)
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise UnexpectedResponse("token endpoint answer has no access_token", status=200)
        expires_in = answer.get("expires_in", 3600)
        if isinstance(expires_in, str) and expires_in.isdigit():
            expires_in = int(expires_in)
        if not isinstance(expires_in, int | float) or isinstance(expires_in, bool):
            raise UnexpectedResponse("token endpoint answer has a bad expires_in", status=200)
        margin = min(self._refresh_margin, float(expires_in) / 2)
        self._token = token
        self._refresh_at = now + float(expires_in) - margin
        return token

    def invalidate(self, token: str | None = None) -> None:
        """Forget the cached token (only if it is still `token`, when given)."""
        if token is None or token == self._token:
            self._token = None
            self._refresh_at = 0.0


class Auth:
    """Namespace mirroring the SDK's ``disruptive.Auth`` factory."""

    @staticmethod
    def service_account(
        key_id: str, secret: str, email: str, *, token_url: str = DEFAULT_TOKEN_URL
    ) -> ServiceAccountAuth:
        return ServiceAccountAuth(key_id, secret, email, token_url=token_url)


def auth_from_env(environ: Mapping[str, str]) -> ServiceAccountAuth | None:
    """Credentials from the SDK's variables; None when none of them is set.

    Some but not all of them set is a `ConfigurationError` naming the missing ones.
    """
    values = {name: environ.get(name, "") for name in (ENV_KEY_ID, ENV_SECRET, ENV_EMAIL)}
    if not any(values.values()):
        return None
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise ConfigurationError(f"{', '.join(missing)} not set")
    return ServiceAccountAuth(
        values[ENV_KEY_ID],
        values[ENV_SECRET],
        values[ENV_EMAIL],
        token_url=environ.get(ENV_TOKEN_URL) or DEFAULT_TOKEN_URL,
    )
