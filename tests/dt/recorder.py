"""A recording stand-in for DT's cloud: a real aiohttp app on loopback.

It records every request (method, path, query, headers, body) and plays scripted answers per
(method, path): queued answers are used once each, in order; then the route's standing answer
(`always`); else DT's 404 error body. The token endpoint (``POST /oauth2/token``) answers
``token-1``, ``token-2``, … unless scripted. An answer may be delayed (to outlast the client's
timeout) or dropped (the connection is closed without an answer); a callable answer sees the
recorded request first (to change some state, as a real create would).

Shared by the DT client tests and the CLI tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

TOKEN_PATH = "/oauth2/token"
API = "/v2"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


@dataclass
class Answer:
    status: int = 200
    json: Any = None
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


Script = Answer | Callable[[Recorded], Answer]


def dt_error(status: int, message: str) -> Answer:
    """DT's documented error body."""
    return Answer(
        status,
        json={"error": message, "code": status, "help": f"https://docs.d21s.com/error/#{status}"},
    )


class Recorder:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._queued: dict[tuple[str, str], deque[Script]] = {}
        self._standing: dict[tuple[str, str], Script] = {}
        self._tokens_issued = 0
        self._closing = asyncio.Event()

    # -- scripting ------------------------------------------------------------------------

    def on(self, method: str, path: str, *answers: Script) -> None:
        """Answer the next requests to `path` with `answers`, one each, in order."""
        self._queued.setdefault((method, path), deque()).extend(answers)

    def always(self, method: str, path: str, answer: Script) -> None:
        """Answer every request to `path` (after any queued answers) with `answer`."""
        self._standing[(method, path)] = answer

    # -- reading the record ---------------------------------------------------------------

    @property
    def token_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == TOKEN_PATH]

    @property
    def api_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith(API + "/")]

    def to(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]

    # -- the app --------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._view)
        app.on_shutdown.append(self._release)
        return app

    async def _release(self, app: web.Application) -> None:
        self._closing.set()

    async def _view(self, request: web.Request) -> web.StreamResponse:
        recorded = Recorded(
            method=request.method,
            path=request.path,
            query=list(request.query.items()),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.read(),
        )
        self.requests.append(recorded)
        script = self._next(recorded)
        answer = script(recorded) if callable(script) else script
        if answer.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), answer.delay)
        if answer.drop:
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=200)
        if answer.text is not None:
            return web.Response(status=answer.status, text=answer.text, headers=answer.headers)
        if answer.json is None:
            return web.Response(status=answer.status, headers=answer.headers)
        return web.Response(
            status=answer.status,
            body=orjson.dumps(answer.json),
            content_type="application/json",
            headers=answer.headers,
        )

    def _next(self, recorded: Recorded) -> Script:
        key = (recorded.method, recorded.path)
        queued = self._queued.get(key)
        if queued:
            return queued.popleft()
        if key in self._standing:
            return self._standing[key]
        if key == ("POST", TOKEN_PATH):
            self._tokens_issued += 1
            return Answer(
                json={
                    "access_token": f"token-{self._tokens_issued}",
                    "token_type": "bearer",
                    "expires_in": 3600,
                }
            )
        return dt_error(404, "not found")


def connector_json(
    project_id: str,
    connector_id: str,
    *,
    display_name: str = "dtpush",
    url: str = "https://example.com/events",
    secret: str = "s3cret-value",
    status: str = "ACTIVE",
    events: list[str] | None = None,
    labels: list[str] | None = None,
) -> dict[str, Any]:
    """A data connector in DT's JSON shape."""
    return {
        "name": f"projects/{project_id}/dataconnectors/{connector_id}",
        "displayName": display_name,
        "type": "HTTP_PUSH",
        "status": status,
        "events": events or [],
        "labels": labels if labels is not None else ["name"],
        "httpConfig": {"url": url, "signatureSecret": secret, "headers": {}},
    }
