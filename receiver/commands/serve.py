"""`dtpush serve`: the receiver (HTTP ingest, inbox, in-process delivery)."""

from __future__ import annotations

import argparse
import asyncio
import logging

from receiver.app import SERVICE_KEY, create_app
from receiver.commands import settings_from
from receiver.config import Settings, serve_problems
from receiver.errors import ConfigError
from receiver.logs import configure_logging
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
    if args.bootstrap:
        raise ConfigError("--bootstrap: not available yet in this build")
    configure_logging(args.log_level.upper())
    asyncio.run(serve(settings, args))
    return 0


async def serve(settings: Settings, args: argparse.Namespace) -> None:
    for index, secret in enumerate(settings.verify.secrets):
        if len(secret.reveal().encode()) < SHORT_SECRET_BYTES:
            log.warning("short_secret", extra={"fields": {"index": index, "min_bytes": 32}})
    app = create_app(
        settings,
        insecure_skip_verify=args.insecure_skip_verify,
        workers=not args.no_workers,
    )
    server = settings.server
    async with serving(
        app,
        host=server.host,
        port=server.port,
        ssl_context=tls_context(server.tls_cert, server.tls_key),
        grace=server.shutdown_grace_seconds,
    ) as url:
        log.info("listening", extra={"fields": {"url": url + server.path}})
        await wait_for_stop_signal()
        log.info("stopping", extra={"fields": {"grace_seconds": server.shutdown_grace_seconds}})
        app[SERVICE_KEY].closing = True
