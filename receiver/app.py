"""`create_app(settings, …)`: the receiver's aiohttp application, routes and lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry

from receiver.config import Settings
from receiver.inbox.base import Inbox
from receiver.inbox.sqlite import SqliteInbox
from receiver.metrics import Metrics
from receiver.registry import Handler, load_handlers
from receiver.service import Service
from receiver.verify import Verifier
from receiver.views import MetricsView, PushView, ReadyView, healthz

SERVICE_KEY = web.AppKey("service", Service)


def build_inbox(settings: Settings) -> Inbox:
    inbox = settings.inbox
    if inbox.backend == "nats":
        from receiver.inbox.nats import NatsInbox  # only this backend needs nats-py loaded

        return NatsInbox(
            inbox.nats_url,
            stream=inbox.nats_stream,
            subject_prefix=inbox.nats_subject_prefix,
            max_pending=inbox.max_pending,
            dedup_window_seconds=inbox.dedup_window_seconds,
        )
    return SqliteInbox(
        inbox.path,
        max_pending=inbox.max_pending,
        dedup_window_seconds=inbox.dedup_window_seconds,
    )


def create_app(
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    handlers: Mapping[str, Handler] | None = None,
    inbox: Inbox | None = None,
    verifier: Verifier | None = None,
    insecure_skip_verify: bool = False,
    workers: bool = True,
) -> web.Application:
    """The receiver as an aiohttp application; its start-up opens the inbox and handlers.

    Everything it needs can be passed in (tests give a fresh `registry`, their own handlers);
    what is not passed is built from `settings`.
    """
    metrics = Metrics(registry or CollectorRegistry())
    if handlers is None:
        handlers = load_handlers(settings.handlers.enabled, settings.handlers.options)
    service = Service(
        settings,
        metrics=metrics,
        verifier=verifier
        or Verifier.from_settings(settings.verify, insecure_skip_verify=insecure_skip_verify),
        inbox=inbox or build_inbox(settings),
        handlers=handlers,
        workers=workers,
    )
    app = web.Application(client_max_size=settings.server.max_body_bytes)
    app[SERVICE_KEY] = service
    # bound methods: aiohttp 3.14 warns (an error in our tests) for callable instances
    app.router.add_post(settings.server.path, PushView(service).__call__)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", ReadyView(service).__call__)
    app.router.add_get("/metrics", MetricsView(service).__call__)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await service.verifier.start()
        await service.start()
        yield
        await service.stop()
        await service.verifier.close()

    app.cleanup_ctx.append(lifecycle)
    return app
