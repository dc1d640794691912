"""`running_receiver(...)`: the receiver serving on a socket, with §8's bootstrap when asked.

One place wires what `serve`, `demo` and the end-to-end tests share: the app, the inbox
snapshot taken before anything new arrives (for the 12 h start-up backfill), the listening
socket, then `Bootstrap` (ensure, start-up backfill, monitor) once the receiver can take the
pushes its connector will send; and the reverse on the way out.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from receiver.app import SERVICE_KEY
from receiver.config import Settings
from receiver.dt import Client
from receiver.monitor import Bootstrap, Snapshot, inbox_snapshot
from receiver.runtime import serving, tls_context
from receiver.service import Service

log = logging.getLogger("dtpush.serve")


@dataclass(frozen=True)
class RunningReceiver:
    url: str  # the push URL actually bound
    service: Service
    bootstrap: Bootstrap | None


@asynccontextmanager
async def running_receiver(
    app: web.Application,
    settings: Settings,
    *,
    client: Client | None = None,
    public_url_from_socket: bool = False,
) -> AsyncIterator[RunningReceiver]:
    """Serve `app` per `settings.server`; with `client`, bootstrap the connector (§8).

    `public_url_from_socket` makes the connector push to the URL actually bound instead of
    `connector.public_url` (the demo and tests on loopback). Bootstrap errors
    (`receiver.dt.DtApiError`) propagate after the receiver stopped taking pushes.
    """
    service = app[SERVICE_KEY]
    snapshots: list[Snapshot] = []
    if client is not None:

        async def take_snapshot(app: web.Application) -> None:
            snapshots.append(await inbox_snapshot(service.inbox))

        app.on_startup.append(take_snapshot)
    server = settings.server
    async with serving(
        app,
        host=server.host,
        port=server.port,
        ssl_context=tls_context(server.tls_cert, server.tls_key),
        grace=server.shutdown_grace_seconds,
    ) as base:
        url = base + server.path
        log.info("listening", extra={"fields": {"url": url}})
        bootstrap = None
        try:
            if client is not None:
                if public_url_from_socket:
                    connector = dataclasses.replace(settings.connector, public_url=url)
                    settings = dataclasses.replace(settings, connector=connector)
                bootstrap = Bootstrap(
                    client, settings, service, snapshot=snapshots[0] if snapshots else None
                )
                await bootstrap.start()
            yield RunningReceiver(url, service, bootstrap)
        finally:
            if bootstrap is not None:
                await bootstrap.stop()
            service.closing = True
