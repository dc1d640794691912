"""The running receiver: settings, metrics, verifier, inbox, handlers and delivery, wired once.

`Service` is what the views talk to. It owns the start/stop order: inbox, then handlers,
then delivery; and the reverse on the way down, so a push acknowledged before shutdown is
either delivered or still pending in the inbox for the next start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from receiver.config import Settings
from receiver.delivery import Dispatcher
from receiver.events import Event
from receiver.inbox.base import Inbox
from receiver.metrics import Metrics
from receiver.registry import Handler
from receiver.verify import Verifier

log = logging.getLogger("dtpush.service")


class Service:
    """One receiver process's parts, and the order in which they start and stop."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics,
        verifier: Verifier,
        inbox: Inbox,
        handlers: Mapping[str, Handler],
        workers: bool = True,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.verifier = verifier
        self.inbox = inbox
        self.handlers = dict(handlers)
        self.closing = False
        self.started = False
        self._subscribers: dict[str, tuple[str, ...]] = {}
        delivery = settings.delivery
        self.dispatcher: Dispatcher | None = (
            Dispatcher(
                inbox,
                self.handlers,
                metrics=metrics,
                max_attempts=delivery.max_attempts,
                handler_timeout=delivery.handler_timeout_seconds,
                backoff_initial=delivery.backoff_initial_seconds,
                backoff_max=delivery.backoff_max_seconds,
                concurrency=delivery.concurrency,
            )
            if workers
            else None
        )

    def subscribers(self, event_type: str) -> tuple[str, ...]:
        """Names of the enabled handlers that subscribed to `event_type` (cached per type)."""
        names = self._subscribers.get(event_type)
        if names is None:
            names = tuple(n for n, h in self.handlers.items() if h.wants(event_type))
            if len(self._subscribers) < 1024:
                self._subscribers[event_type] = names
        return names

    async def accept(self, event: Event) -> bool:
        """Make `event` durable for its handlers; True when it is new, False for a duplicate."""
        new = await self.inbox.put(event, self.subscribers(event.event_type))
        if new and self.dispatcher is not None:
            self.dispatcher.notify(event)
        return new

    def not_ready_reasons(self) -> list[str]:
        reasons = []
        if not self.started:
            reasons.append("starting")
        if self.closing:
            reasons.append("shutting_down")
        if not self.inbox.ready():
            reasons.append("inbox")
        if self.dispatcher is not None:
            reasons += [f"handler:{name}" for name, h in self.handlers.items() if not h.ready()]
        return reasons

    def refresh_gauges(self) -> None:
        stats = self.inbox.stats()
        self.metrics.inbox_pending.set(stats.pending)
        self.metrics.inbox_oldest_pending.set(stats.oldest_pending_seconds)
        for name in {*self.handlers, *stats.dead_letters}:  # quarantine and retired handlers too
            self.metrics.dead_letters.labels(name).set(stats.dead_letters.get(name, 0))

    async def start(self) -> None:
        started = time.perf_counter()
        await self.inbox.open()
        opened: list[Handler] = []
        try:
            # Ingest only (`serve --no-workers`): handlers name the deliveries, others run them.
            for handler in self.handlers.values() if self.dispatcher is not None else ():
                await handler.start()
                opened.append(handler)
            if self.dispatcher is not None:
                await self.dispatcher.start()
        except BaseException:
            for handler in reversed(opened):
                await handler.close()
            await self.inbox.close()
            raise
        self.started = True
        log.info(
            "service_started",
            extra={
                "fields": {
                    "handlers": ",".join(self.handlers),
                    "workers": self.dispatcher is not None,
                    "seconds": round(time.perf_counter() - started, 3),
                }
            },
        )

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking pushes, let running handler calls finish within `grace`, close all."""
        self.closing = True
        if grace is None:
            grace = self.settings.server.shutdown_grace_seconds
        if self.dispatcher is not None:
            await self.dispatcher.stop(grace)
        for name, handler in self.handlers.items() if self.dispatcher is not None else ():
            try:
                await handler.close()
            except Exception as exc:  # a handler's close must not keep the inbox open
                log.warning(
                    "handler_close_failed",
                    extra={"fields": {"handler": name, "error": type(exc).__name__}},
                )
        await self.inbox.close()
        log.info("service_stopped")
