"""Fixtures for the emulator tests: a seeded state on a hand-moved clock, a client for its
app on loopback, and helpers to sign service-account assertions and fetch bearer tokens."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from receiver.emulator import EmulatorState, ServiceAccount, create_emulator_app
from receiver.emulator.auth import GRANT_TYPE

START = 1_780_000_000.0  # a fixed "now" (2026-05-28) so every run sees the same history


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock: Clock) -> EmulatorState:
    return EmulatorState.seeded(clock(), rng=random.Random(7))


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Any], state: EmulatorState, clock: Clock
) -> TestClient[Any, Any]:
    test_client: TestClient[Any, Any] = await aiohttp_client(
        create_emulator_app(state, clock=clock)
    )
    return test_client


def token_url(client: TestClient[Any, Any]) -> str:
    return str(client.make_url("/oauth2/token"))


def assertion(
    account: ServiceAccount,
    *,
    aud: str,
    now: float,
    secret: str | None = None,
    kid: str | None = None,
    iss: str | None = None,
    exp: float | None = None,
    algorithm: str = "HS256",
    drop: tuple[str, ...] = (),
) -> str:
    """A service-account JWT as the official SDK builds it, with any part overridable."""
    claims: dict[str, Any] = {
        "iat": int(now),
        "exp": int(now + 3600 if exp is None else exp),
        "aud": aud,
        "iss": account.email if iss is None else iss,
    }
    for name in drop:
        claims.pop(name)
    return jwt.encode(
        claims,
        account.secret if secret is None else secret,
        algorithm=algorithm,
        headers={"kid": account.key_id if kid is None else kid},
    )


async def exchange(client: TestClient[Any, Any], token: str) -> Any:
    return await client.post("/oauth2/token", data={"assertion": token, "grant_type": GRANT_TYPE})


async def bearer(
    client: TestClient[Any, Any], state: EmulatorState, clock: Clock
) -> dict[str, str]:
    """Authorization headers with a fresh access token from the token endpoint."""
    response = await exchange(
        client, assertion(state.service_account, aud=token_url(client), now=clock())
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    return {"Authorization": f"Bearer {body['access_token']}"}


@pytest.fixture
async def headers(
    client: TestClient[Any, Any], state: EmulatorState, clock: Clock
) -> dict[str, str]:
    return await bearer(client, state, clock)
