"""Fixtures for the DT client tests: a recording DT stand-in on loopback and clients for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from receiver.dt import Client, RetryPolicy, ServiceAccountAuth
from tests.dt.recorder import API, TOKEN_PATH, Recorder

KEY_ID = "sa-key-id-1"
KEY_SECRET = "sa-key-secret-do-not-log-0123456789"
EMAIL = "dtpush@project.serviceaccount.d21s.com"
PROJECT = "proj0123456789abcdefg"


@dataclass
class Sleeps:
    """A `sleep` for the client that records each wait instead of waiting."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


@dataclass
class FakeDt:
    recorder: Recorder
    server: TestServer
    base_url: str
    token_url: str

    def auth(self, **options: Any) -> ServiceAccountAuth:
        return ServiceAccountAuth(KEY_ID, KEY_SECRET, EMAIL, token_url=self.token_url, **options)


@pytest.fixture
async def dt(aiohttp_server: Callable[..., Any]) -> FakeDt:
    recorder = Recorder()
    server = await aiohttp_server(recorder.app())
    return FakeDt(
        recorder,
        server,
        base_url=str(server.make_url(API)),
        token_url=str(server.make_url(TOKEN_PATH)),
    )


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def client(dt: FakeDt, sleeps: Sleeps) -> AsyncIterator[Client]:
    async with make_client(dt, sleeps) as c:
        yield c


def make_client(
    dt: FakeDt, sleeps: Sleeps | None = None, *, request_timeout: float = 2.0, **options: Any
) -> Client:
    options.setdefault("retry", RetryPolicy(backoff_initial=0.01, backoff_max=0.05))
    return Client(
        dt.auth(),
        base_url=dt.base_url,
        request_timeout=request_timeout,
        sleep=sleeps if sleeps is not None else Sleeps(),
        **options,
    )
