"""The SDK-style keyword options of the resource classmethods, and their defaults.

Every classmethod of `DataConnector`, `Device` and `EventHistory` takes either one
long-lived ``client=`` or the official SDK's options ``auth``, ``base_url``,
``request_timeout``, ``request_attempts`` (plus ``session``). Options not given default to
the environment (``DT_SERVICE_ACCOUNT_*``, ``DT_TOKEN_URL``, ``DT_API_URL``), read once per
process; the credentials object read then is shared, so its access token serves every call.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from receiver.dt.auth import ServiceAccountAuth, auth_from_env
from receiver.dt.client import DEFAULT_API_URL, ENV_API_URL, Client
from receiver.dt.errors import ConfigurationError

_CLIENT_OPTIONS = frozenset({"auth", "base_url", "request_timeout", "request_attempts", "session"})


@functools.cache
def environment_auth() -> ServiceAccountAuth | None:
    """The SDK-style calls' default credentials, from the environment, read once per process
    (the token they get is cached on this object and shared by those calls)."""
    return auth_from_env(os.environ)


@functools.cache
def environment_api_url() -> str:
    """The SDK-style calls' default API URL (``DT_API_URL``), read once per process."""
    return os.environ.get(ENV_API_URL) or DEFAULT_API_URL


@contextlib.asynccontextmanager
async def client_for(options: Mapping[str, Any]) -> AsyncIterator[Client]:
    """The client for one SDK-style call.

    ``client=`` is used as it is. Otherwise a client is built from ``auth``, ``base_url``,
    ``request_timeout``, ``request_attempts`` and ``session`` (each defaulting to the
    environment, read once) and closed after the call; a long-running service should pass
    ``client=`` instead, so that one session and one token serve every call.
    """
    unknown = sorted(set(options) - _CLIENT_OPTIONS - {"client"})
    if unknown:
        raise ConfigurationError(f"unknown option(s): {', '.join(unknown)}")
    given = options.get("client")
    if given is not None:
        extra = sorted(set(options) & _CLIENT_OPTIONS)
        if extra:
            raise ConfigurationError(f"client= cannot be combined with {', '.join(extra)}")
        if not isinstance(given, Client):
            raise ConfigurationError("client= must be a receiver.dt.Client")
        yield given
        return
    client = Client(
        options["auth"] if "auth" in options else environment_auth(),
        base_url=options["base_url"] if "base_url" in options else environment_api_url(),
        request_timeout=options.get("request_timeout", 10.0),
        request_attempts=options.get("request_attempts"),
        session=options.get("session"),
    )
    try:
        yield client
    finally:
        await client.close()
