"""`dtpush serve`: the receiver (HTTP ingest, inbox, in-process delivery)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from aiohttp import web

from receiver.app import SERVICE_KEY, create_app
from receiver.commands import settings_from
from receiver.config import Settings, serve_problems
from receiver.connector import Desired
from receiver.dt import Client, DtApiError
from receiver.errors import ConfigError
from receiver.logs import configure_logging
from receiver.monitor import Bootstrap, Snapshot, inbox_snapshot
from receiver.runtime import serving, tls_context, wait_for_stop_signal

log = logging.getLogger("dtpush.serve")

SHORT_SECRET_BYTES = 32


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the receiver",
        description="Run the receiver: HTTP ingest, inbox, and in-process delivery workers.",
    )
    parser.add_argument("--host", help="address to listen on (server.host)")
    parser.add_argument("--port", type=int, help="port to listen on (server.port; 0 = any free)")
    parser.add_argument(
        "--no-workers", action="store_true", help="ingest only; `dtpush worker` delivers"
    )
    parser.add_argument(
        "--insecure-skip-verify",
        action="store_true",
        help="accept pushes without verifying signatures (never in production)",
    )
    parser.add_argument(
        "--bootstrap", action="store_true", help="create or repair the Data Connector (§8)"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.set_defaults(run=run)


def checked_settings(args: argparse.Namespace) -> Settings:
    settings = settings_from(args, **{"server.host": args.host, "server.port": args.port})
    problems = serve_problems(settings, insecure_skip_verify=args.insecure_skip_verify)
    if problems:
        raise ConfigError(problems)
    return settings


def run(args: argparse.Namespace) -> int:
    settings = checked_settings(args)
    client = bootstrap_client(settings) if args.bootstrap else None
    configure_logging(args.log_level.upper())
    return asyncio.run(serve(settings, args, client=client))


def bootstrap_client(settings: Settings) -> Client:
    """The one DT client of `serve --bootstrap`; `ConfigError` naming what is missing."""
    Desired.from_settings(settings)  # connector.project_id, connector.public_url
    client = Client.from_env()
    if client.auth is None:
        raise ConfigError(
            "DT_SERVICE_ACCOUNT_KEY_ID: --bootstrap needs DT credentials "
            "(DT_SERVICE_ACCOUNT_KEY_ID, DT_SERVICE_ACCOUNT_SECRET, DT_SERVICE_ACCOUNT_EMAIL)"
        )
    return client


async def serve(
    settings: Settings, args: argparse.Namespace, *, client: Client | None = None
) -> int:
    """Serve until SIGTERM/SIGINT; with `client`, also manage the connector (§8)."""
    for index, secret in enumerate(settings.verify.secrets):
        if len(secret.reveal().encode()) < SHORT_SECRET_BYTES:
            log.warning("short_secret", extra={"fields": {"index": index, "min_bytes": 32}})
    app = create_app(
        settings,
        insecure_skip_verify=args.insecure_skip_verify,
        workers=not args.no_workers,
    )
    snapshots: list[Snapshot] = []
    if client is not None:  # what the inbox held before anything new arrives

        async def take_snapshot(app: web.Application) -> None:
            snapshots.append(await inbox_snapshot(app[SERVICE_KEY].inbox))

        app.on_startup.append(take_snapshot)
    server = settings.server
    async with serving(
        app,
        host=server.host,
        port=server.port,
        ssl_context=tls_context(server.tls_cert, server.tls_key),
        grace=server.shutdown_grace_seconds,
    ) as url:
        log.info("listening", extra={"fields": {"url": url + server.path}})
        bootstrap = None
        if client is not None:
            bootstrap = Bootstrap(
                client, settings, app[SERVICE_KEY], snapshot=snapshots[0] if snapshots else None
            )
            try:
                await bootstrap.start()
            except DtApiError as exc:
                print(f"dtpush: error: --bootstrap: {' '.join(str(exc).split())}", file=sys.stderr)
                app[SERVICE_KEY].closing = True
                await client.close()
                return 1
        try:
            await wait_for_stop_signal()
        finally:
            if bootstrap is not None:
                await bootstrap.stop()
            if client is not None:
                await client.close()
        log.info("stopping", extra={"fields": {"grace_seconds": server.shutdown_grace_seconds}})
        app[SERVICE_KEY].closing = True
    return 0
