"""`dtpush serve`: the receiver (HTTP ingest, inbox, in-process delivery)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from receiver.app import create_app
from receiver.commands import settings_from
from receiver.config import Settings, serve_problems
from receiver.connector import Desired
from receiver.dt import Client, DtApiError
from receiver.errors import ConfigError
from receiver.logs import configure_logging
from receiver.running import running_receiver
from receiver.runtime import tune_gc, wait_for_stop_signal

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
    try:
        async with running_receiver(app, settings, client=client):
            tune_gc()
            await wait_for_stop_signal()
            log.info(
                "stopping",
                extra={"fields": {"grace_seconds": settings.server.shutdown_grace_seconds}},
            )
    except DtApiError as exc:
        print(f"dtpush: error: --bootstrap: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    finally:
        if client is not None:
            await client.close()
    return 0
