"""`dtpush worker`: delivery workers only, on the inbox a `serve --no-workers` fills."""

from __future__ import annotations

import argparse
import asyncio
import logging

from prometheus_client import CollectorRegistry

from receiver.app import build_inbox
from receiver.commands import settings_from
from receiver.config import Settings
from receiver.delivery import Dispatcher
from receiver.logs import configure_logging
from receiver.metrics import Metrics
from receiver.registry import Handler, load_handlers
from receiver.runtime import tune_gc, wait_for_stop_signal

log = logging.getLogger("dtpush.worker")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="deliver events from a shared inbox (no HTTP)",
        description="Run delivery workers only: take pending deliveries from the inbox that "
        "`dtpush serve --no-workers` fills and hand them to the enabled handlers.",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    handlers = load_handlers(settings.handlers.enabled, settings.handlers.options)
    configure_logging(args.log_level.upper())
    asyncio.run(work(settings, handlers))
    return 0


async def work(settings: Settings, handlers: dict[str, Handler]) -> None:
    inbox = build_inbox(settings)
    delivery = settings.delivery
    dispatcher = Dispatcher(
        inbox,
        handlers,
        metrics=Metrics(CollectorRegistry()),
        max_attempts=delivery.max_attempts,
        handler_timeout=delivery.handler_timeout_seconds,
        backoff_initial=delivery.backoff_initial_seconds,
        backoff_max=delivery.backoff_max_seconds,
        concurrency=delivery.concurrency,
    )
    await inbox.open()
    try:
        for handler in handlers.values():
            await handler.start()
        await dispatcher.start()
        log.info("worker_started", extra={"fields": {"handlers": ",".join(handlers)}})
        tune_gc()
        await wait_for_stop_signal()
        await dispatcher.stop(settings.server.shutdown_grace_seconds)
    finally:
        for handler in handlers.values():
            await handler.close()
        await inbox.close()
    log.info("worker_stopped")
