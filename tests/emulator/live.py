"""The real dtpush receiver on loopback, as the emulator's pushes meet it.

`LiveReceiver` serves `receiver.app.create_app` (real verifier, real SQLite inbox, a
`RecordingHandler`) on a loopback port, notes every push it answers (headers and the
answer), and can be stopped and started again on the same port with the same inbox
(a receiver outage). `BlackHole` is a TCP server that accepts connections and never
answers (DT's "no answer within 10 s").
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry

from receiver.app import create_app
from receiver.config import Settings, load_settings
from receiver.emulator import Connector, EmulatorState
from receiver.runtime import serving
from receiver.verify import Verifier
from tests.recording import RecordingHandler

SECRET = "emulator-push-secret-0123456789abcdef"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Answered:
    """One push as the receiver saw it: its headers, and the status and JSON it answered."""

    headers: dict[str, str]
    status: int
    answer: Any

    @property
    def event_id(self) -> str | None:
        return self.answer.get("eventId") if isinstance(self.answer, dict) else None

    @property
    def outcome(self) -> str | None:
        if not isinstance(self.answer, dict):
            return None
        return self.answer.get("status") or self.answer.get("error")


class LiveReceiver:
    """The receiver, restartable on its port; `settings_env` is added to the defaults."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        settings_env: dict[str, str] | None = None,
        verifier: Callable[[], Verifier] | None = None,
    ) -> None:
        env = {"DTPUSH_VERIFY_SECRETS": SECRET, "DTPUSH_INBOX_PATH": str(tmp_path / "inbox.db")}
        env.update(settings_env or {})
        self.settings: Settings = load_settings(env=env, cwd=tmp_path)
        self.recorder = RecordingHandler()
        self.answered: list[Answered] = []
        self.registry = CollectorRegistry()
        self.port = 0
        self._verifier = verifier
        self._stack: AsyncExitStack | None = None

    @property
    def url(self) -> str:
        """The push URL (fixed once the receiver first started)."""
        return f"http://127.0.0.1:{self.port}{self.settings.server.path}"

    async def start(self) -> None:
        self.registry = CollectorRegistry()
        app = create_app(
            self.settings,
            registry=self.registry,
            handlers={"rec": self.recorder},
            verifier=self._verifier() if self._verifier is not None else None,
        )
        app.middlewares.append(self._note)
        stack = AsyncExitStack()
        base = await stack.enter_async_context(
            serving(app, host="127.0.0.1", port=self.port, grace=1.0)
        )
        self.port = int(base.rsplit(":", 1)[1])
        self._stack = stack

    async def stop(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> LiveReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @web.middleware
    async def _note(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.method == "POST" and isinstance(response, web.Response):
            body = response.body
            answer = orjson.loads(body) if isinstance(body, bytes) and body else None
            self.answered.append(Answered(dict(request.headers), response.status, answer))
        return response

    # -- what arrived ----------------------------------------------------------------------

    @property
    def ids(self) -> list[str]:
        """Event ids handed to the handler, in order (each once: the inbox deduplicates)."""
        return self.recorder.ids

    def outcomes(self) -> list[str | None]:
        return [a.outcome for a in self.answered]

    def posts_per_event(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for answered in self.answered:
            if answered.event_id is not None:
                counts[answered.event_id] = counts.get(answered.event_id, 0) + 1
        return counts


class BlackHole:
    """Accepts TCP connections and never answers; counts how many are open at once."""

    def __init__(self) -> None:
        self.open = 0
        self.most_open = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/events"

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        self._writers.append(writer)
        try:
            while await reader.read(65536):
                pass
        finally:
            self.open -= 1
            writer.close()

    async def __aenter__(self) -> BlackHole:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            await self._server.wait_closed()


def refused_url() -> str:
    """A loopback URL where nothing listens (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/events"


def connect(
    state: EmulatorState,
    url: str,
    *,
    secret: str = SECRET,
    events: list[str] | None = None,
    labels: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> Connector:
    """A new ACTIVE HTTP_PUSH connector in the emulator's first project."""
    body = {
        "type": "HTTP_PUSH",
        "displayName": "dtpush",
        "events": events or [],
        "labels": ["name"] if labels is None else labels,
        "httpConfig": {"url": url, "signatureSecret": secret, "headers": headers or {}},
    }
    return state.create_connector(state.project_id, body, time.time())


def emitted(state: EmulatorState) -> list[dict[str, Any]]:
    """A list that collects every event the state appends from now on."""
    events: list[dict[str, Any]] = []
    state.on_event.append(lambda _device, event: events.append(event))
    return events
