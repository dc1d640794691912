"""Outside services on loopback for tests: reachable, else skip (or fail under CI).

`needs(name, port)` is a test-module mark: nothing when the service answers on
127.0.0.1:`port`; a skip with the reason when it does not; and, when the environment has
`DTPUSH_REQUIRE_SERVICES=1` (`.ci/run` sets it), an error at collection instead of a skip.

`TcpRelay` stands between a client and a real service so a test can cut the line and
restore it (an outage at the edge, without touching the service other tests share).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import pytest

HOST = "127.0.0.1"


def reachable(port: int, host: str = HOST, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def required() -> bool:
    return os.environ.get("DTPUSH_REQUIRE_SERVICES", "") == "1"


def needs(name: str, port: int) -> pytest.MarkDecorator:
    """Mark for a module whose tests need `name` listening on 127.0.0.1:`port`."""
    reason = f"{name} is not reachable on {HOST}:{port}"
    if reachable(port):
        return pytest.mark.skipif(False, reason=reason)
    if required():
        raise RuntimeError(f"{reason}, and DTPUSH_REQUIRE_SERVICES=1 requires it")
    return pytest.mark.skip(reason=f"{reason} (start it, or run .ci/run)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class TcpRelay:
    """Relays connections from 127.0.0.1:`port` to `target_port`; `cut()` and `restore()`."""

    def __init__(self, target_port: int, target_host: str = HOST) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def restore(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._relay, HOST, self.port)

    async def cut(self) -> None:
        """Stop listening and drop every relayed connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        pumps = [
            asyncio.create_task(_pump(reader, up_writer)),
            asyncio.create_task(_pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
                self._tasks.discard(pump)
            for each in (writer, up_writer):
                each.transport.abort()
                self._writers.discard(each)

    async def __aenter__(self) -> TcpRelay:
        await self.restore()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cut()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.CancelledError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
