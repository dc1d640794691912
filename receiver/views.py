"""The HTTP endpoints: the push view, health, readiness and metrics (spec §4).

Order of checks on a push (spec §13): size first (413, before any crypto), then the
signature (401), then parsing (200 quarantined), then the inbox (200 accepted/duplicate, or
503). Views raise nothing to aiohttp for bad input: every answer is built here, in one place
per outcome, and no request-controlled input reaches a 500.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import orjson
from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from receiver import events
from receiver.errors import NotAnEvent, Refusal, Unavailable
from receiver.metrics import PUSH_OUTCOMES

if TYPE_CHECKING:
    from receiver.service import Service

log = logging.getLogger("dtpush.push")

_JSON = "application/json"


def _answer(
    status: int, payload: dict[str, object], headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(payload), content_type=_JSON, headers=headers
    )


class PushView:
    """`POST {server.path}`: verify, parse, make durable, then acknowledge."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.max_body_bytes = service.settings.server.max_body_bytes
        self._insecure_count = 0
        metrics = service.metrics
        # Label children looked up once: `labels()` takes a lock and a dict walk per call.
        self._outcomes = {name: metrics.push_requests.labels(name) for name in PUSH_OUTCOMES}
        self._matches = [
            metrics.signature_secret_matches.labels(str(index))
            for index in range(len(service.settings.verify.secrets))
        ]
        self._per_type: dict[str, tuple[Counter, Histogram]] = {}

    def _type_metrics(self, event_type: str) -> tuple[Counter, Histogram]:
        pair = self._per_type.get(event_type)
        if pair is None:
            metrics = self.service.metrics
            pair = metrics.events.labels(event_type), metrics.event_delay.labels(event_type)
            if len(self._per_type) < 1024:
                self._per_type[event_type] = pair
        return pair

    async def __call__(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        service = self.service
        metrics = service.metrics
        try:
            response = await self._push(request)
        finally:
            metrics.push_duration.observe(time.perf_counter() - started)
        return response

    async def _read_body(self, request: web.Request) -> bytes | None:
        """The exact body bytes, or None when it is over the limit (read no further then)."""
        limit = self.max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        try:
            while chunk := await request.content.read(limit + 1 - size):
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    return None
        except (HttpProcessingError, ClientPayloadError, ConnectionError, ValueError) as exc:
            raise _BadFraming from exc
        return b"".join(chunks)

    async def _push(self, request: web.Request) -> web.Response:
        service = self.service
        metrics = service.metrics
        if service.closing:
            return self._unavailable(Unavailable("shutting_down", retry_after=5))
        try:
            body = await self._read_body(request)
        except _BadFraming:
            return _answer(400, {"error": "bad_request"})
        if body is None:
            self._outcomes["too_large"].inc()
            return _answer(413, {"error": "too_large", "limit": self.max_body_bytes})
        received = time.time()
        try:
            claims = await service.verifier.verify(body, request.headers, now=received)
        except Refusal as refusal:
            self._outcomes["unauthorized"].inc()
            metrics.signature_failures.labels(refusal.reason).inc()
            log.info("push_refused", extra={"fields": {"reason": refusal.reason}})
            return _answer(401, {"error": refusal.reason})
        except Unavailable as exc:
            return self._unavailable(exc)
        if claims is None:
            self._warn_insecure()
        else:
            if claims.secret_index is not None:
                self._matches[claims.secret_index].inc()
            metrics.clock_skew.observe(received - claims.iat)
        try:
            event = events.parse(body)
        except NotAnEvent as exc:
            try:
                await service.inbox.quarantine(body, exc.reason)
            except Unavailable as unavailable:
                return self._unavailable(unavailable)
            self._outcomes["quarantined"].inc()
            log.warning("push_quarantined", extra={"fields": {"reason": exc.reason}})
            return _answer(200, {"status": "quarantined", "reason": exc.reason})
        try:
            new = await service.accept(event)
        except Unavailable as exc:
            return self._unavailable(exc)
        if not new:
            self._outcomes["duplicate"].inc()
            return _answer(200, {"status": "duplicate", "eventId": event.event_id})
        self._outcomes["accepted"].inc()
        events_total, delay = self._type_metrics(event.event_type)
        events_total.inc()
        delay.observe(received - event.timestamp.timestamp())
        return _answer(200, {"status": "accepted", "eventId": event.event_id})

    def _unavailable(self, exc: Unavailable) -> web.Response:
        self._outcomes["unavailable"].inc()
        log.warning("push_unavailable", extra={"fields": {"reason": exc.reason}})
        return _answer(503, {"error": exc.reason}, headers={"Retry-After": str(exc.retry_after)})

    def _warn_insecure(self) -> None:
        self._insecure_count += 1
        if self._insecure_count % 1000 == 1:
            log.warning(
                "verification_disabled",
                extra={"fields": {"pushes_unverified": self._insecure_count}},
            )


class _BadFraming(Exception):
    """The request body could not be read (broken chunked encoding and the like)."""


async def healthz(request: web.Request) -> web.Response:
    return _answer(200, {"status": "ok"})


class ReadyView:
    def __init__(self, service: Service) -> None:
        self.service = service

    async def __call__(self, request: web.Request) -> web.Response:
        reasons = self.service.not_ready_reasons()
        if reasons:
            return _answer(503, {"status": "not_ready", "reasons": reasons})
        return _answer(200, {"status": "ready"})


class MetricsView:
    def __init__(self, service: Service) -> None:
        self.service = service

    async def __call__(self, request: web.Request) -> web.Response:
        self.service.refresh_gauges()
        output = generate_latest(self.service.metrics.registry)
        return web.Response(body=output, headers={"Content-Type": CONTENT_TYPE_LATEST})
