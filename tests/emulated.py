"""The emulated DT cloud for the connector-management tests: the emulator on loopback, a
client for it whose every HTTP request is recorded (aiohttp request tracing on the session
it borrows), settings that point a receiver at it, and `bootstrapped_receiver`: the real
app serving on loopback with `serve --bootstrap`'s connector management."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from prometheus_client import CollectorRegistry

from receiver.app import create_app
from receiver.config import Settings, load_settings
from receiver.dt import Client, RetryPolicy
from receiver.emulator import Connector, RunningEmulator, running_emulator
from receiver.monitor import Bootstrap
from receiver.registry import Handler, load_handlers
from receiver.running import running_receiver
from receiver.service import Service

PUBLIC_URL = "https://receiver.example.com/events"
SECRET = "bootstrap-secret-0123456789abcdef0123"


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    query: list[tuple[str, str]]

    def param(self, name: str) -> str | None:
        return next((value for key, value in self.query if key == name), None)


@dataclass
class Requests:
    """Every request the client sent, in order."""

    sent: list[Sent] = field(default_factory=list)

    async def on_start(
        self,
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        url = urlsplit(str(params.url))
        self.sent.append(Sent(params.method, url.path, parse_qsl(url.query)))

    def api(self, method: str | None = None) -> list[Sent]:
        return [
            s
            for s in self.sent
            if s.path.startswith("/v2/") and (method is None or s.method == method)
        ]

    @property
    def patches(self) -> list[Sent]:
        return self.api("PATCH")

    @property
    def writes(self) -> list[Sent]:
        """Every request that may change something (create, patch, delete, sync)."""
        return [s for s in self.api() if s.method in ("POST", "PATCH", "DELETE")]

    def clear(self) -> None:
        self.sent.clear()


@dataclass
class Cloud:
    emu: RunningEmulator
    client: Client
    requests: Requests

    @property
    def project_id(self) -> str:
        return self.emu.state.project_id

    def connectors(self) -> list[Connector]:
        return self.emu.state.list_connectors(self.project_id)

    def only_connector(self) -> Connector:
        found = self.connectors()
        assert len(found) == 1, found
        return found[0]

    def env(self, tmp_path: Path, **extra: str) -> dict[str, str]:
        """Environment for a receiver (or a command) managing its connector here."""
        return {
            **self.emu.env,
            "DTPUSH_CONNECTOR_PUBLIC_URL": PUBLIC_URL,
            "DTPUSH_VERIFY_SECRETS": SECRET,
            "DTPUSH_INBOX_PATH": str(tmp_path / "inbox.db"),
            "DTPUSH_HANDLERS_SQLITE_PATH": str(tmp_path / "events.db"),
            **extra,
        }

    def settings(self, tmp_path: Path, **extra: str) -> Settings:
        return load_settings(env=self.env(tmp_path, **extra), cwd=tmp_path)


@asynccontextmanager
async def emulated_cloud(
    request_timeout: float = 5.0,
    *,
    emulator: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncIterator[Cloud]:
    """The emulator and a recording client for it, for the length of the block.

    `emulator` goes to `running_emulator` (its push side is off unless it says ``push``);
    `options` to the client.
    """
    requests = Requests()
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(requests.on_start)
    emulator = {"push": False, **(emulator or {})}
    async with (
        running_emulator(**emulator) as emu,
        aiohttp.ClientSession(trace_configs=[trace]) as session,
    ):
        options.setdefault("retry", RetryPolicy(backoff_initial=0.01, backoff_max=0.05))
        client = Client.from_env(
            emu.env, session=session, request_timeout=request_timeout, **options
        )
        async with client:
            yield Cloud(emu, client, requests)


@asynccontextmanager
async def bootstrapped_receiver(
    cloud: Cloud, settings: Settings, recorder: Handler, port: int
) -> AsyncIterator[tuple[Service, Bootstrap, str]]:
    """`serve --bootstrap` in-process, wired as the command does (`running_receiver`), on a
    real loopback port, with the `sqlite` store and `recorder` as handlers."""
    handlers = {
        "sqlite": load_handlers(("sqlite",), settings.handlers.options)["sqlite"],
        "recorder": recorder,
    }
    server = dataclasses.replace(
        settings.server, host="127.0.0.1", port=port, shutdown_grace_seconds=2.0
    )
    settings = dataclasses.replace(settings, server=server)
    app = create_app(settings, registry=CollectorRegistry(), handlers=handlers)
    async with running_receiver(
        app, settings, client=cloud.client, public_url_from_socket=True
    ) as receiver:
        assert receiver.bootstrap is not None
        yield receiver.service, receiver.bootstrap, receiver.url.removesuffix(settings.server.path)
