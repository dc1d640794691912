"""pytest fixtures for handler authors: `dtpush_push` posts DT-signed pushes to your app.

Load it in your top-level ``conftest.py`` (it needs pytest-asyncio, which pytest-aiohttp
brings; it works in both asyncio modes)::

    pytest_plugins = ["receiver.pytest_plugin"]

then define where to post (`dtpush_target`: your app as an aiohttp `TestClient`, or the push
URL of a running receiver) and, if you like, the secret (`dtpush_secret`)::

    @pytest.fixture
    def dtpush_secret() -> str:
        return "a-test-secret-of-32-bytes-or-more"

    @pytest.fixture
    async def dtpush_target(aiohttp_client, tmp_path, dtpush_secret):
        env = {"DTPUSH_VERIFY_SECRETS": dtpush_secret,
               "DTPUSH_INBOX_PATH": str(tmp_path / "inbox.db")}
        app = create_app(load_settings(env=env, cwd=tmp_path), handlers={"mine": MyHandler()})
        return await aiohttp_client(app)

    async def test_my_handler_takes_every_type(dtpush_push):
        for event_type, (status, answer) in (await dtpush_push.push_all()).items():
            assert (status, answer["status"]) == (200, "accepted"), event_type

`dtpush_push` is a `receiver.testing.Pusher`: ``await dtpush_push(body)``,
``await dtpush_push(event_type="co2")``, ``sign=False``, ``headers={...}``; each returns
``(status, json)``. The plugin lives apart from `receiver.testing` so that importing the kit
in a ``conftest.py`` never pre-imports the plugin module (pytest would then warn that it
cannot rewrite its asserts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from receiver.testing import Pusher

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient


@pytest.fixture
def dtpush_secret() -> str:
    """The signature secret `dtpush_push` signs with; override it to match your app."""
    return "dtpush-testing-secret-0123456789abcdef"


@pytest.fixture
def dtpush_target() -> TestClient[Any, Any] | str:
    """Where `dtpush_push` posts: define this fixture (a `TestClient` or a push URL)."""
    pytest.fail(
        "dtpush_push needs a dtpush_target fixture: your app as an aiohttp TestClient "
        "(e.g. `return await aiohttp_client(create_app(...))`) or a push URL",
        pytrace=False,
    )


@pytest_asyncio.fixture
async def dtpush_push(
    dtpush_target: TestClient[Any, Any] | str, dtpush_secret: str
) -> AsyncIterator[Pusher]:
    """A `Pusher` posting pushes signed with `dtpush_secret` to `dtpush_target`."""
    async with Pusher(dtpush_target, dtpush_secret) as pusher:
        yield pusher
