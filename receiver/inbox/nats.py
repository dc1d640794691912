"""The NATS JetStream inbox: any number of `serve` replicas ingest, any number of workers deliver.

Layout (names in `receiver.inbox.nats_names`), for a stream `S` and subject prefix `p`:

- stream `S` (file storage, *interest* retention) holds events on `p.events.<type>`; its
  `duplicate_window` is the dedup window. `put` publishes the raw body with `Nats-Msg-Id` =
  `eventId` and returns once JetStream acknowledged the publish; the ack's `duplicate` flag
  is the insert-if-absent answer. Before publishing, the durable consumer of each subscribed
  handler is made to exist, so interest retention keeps the event until each has it.
- one durable pull consumer per handler (`p-<handler>`, explicit acks, `ack_wait` = the
  delivery engine's lease, no delivery limit): every handler gets every event on its own.
  `claim` fetches from the consumers; an event the handler did not subscribe to when it was
  put (header `Dtpush-Handlers`) or a replay meant for another handler is acked at once.
  `done` = ack (awaited: the committed future), `retry` = nak with the backoff delay,
  `release` = nak; the attempts are JetStream's delivery count (a release counts too).
  A delivery whose process dies is redelivered when `ack_wait` runs out.
- stream `S_DLQ` holds dead letters on `p.dead.<handler>` (quarantined bodies under
  "quarantine"). `dead` publishes there, then terminates the message. `replay` publishes the
  body again on the event subject with a fresh `Nats-Msg-Id` and `Dtpush-Only-Handler`, then
  deletes the dead letter.

Fresh events are never handed over in-process (`notify_delivers` is False): the consumer
delivers them, so the in-process hand-over could only deliver twice. `attach`, `detach` and
`lease_owners` have nothing to do. `prune` is JetStream's own work (done events leave the
stream; ids are forgotten after the duplicate window). `last_event_time_by_device` is not
kept (an empty answer: the monitor's backfill then starts from `newest_received_at`).

When NATS is unreachable, `put` answers `Unavailable` at once and the inbox keeps trying to
connect (the client retries a dropped connection a few times, then a fresh connection is
made every `stats_interval`); `ready()` is false meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Coroutine, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import nats
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from receiver.errors import Unavailable
from receiver.inbox import nats_dead as dead
from receiver.inbox import nats_names as names
from receiver.inbox import nats_streams as streams
from receiver.inbox.base import QUARANTINE, DeadLetter, Delivery, Inbox, InboxStats

if TYPE_CHECKING:
    from receiver.events import Event

log = logging.getLogger("dtpush.inbox.nats")

_FAILURES = (NatsError, TimeoutError, OSError)
_DEFAULT_LEASE = 40.0  # the delivery engine's lease with the default handler timeout


class NatsInbox(Inbox):
    """The JetStream inbox (see the module docstring)."""

    notify_delivers = False

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        stream: str = "DTPUSH",
        subject_prefix: str = "dtpush",
        max_pending: int = 1_000_000,
        dedup_window_seconds: float = 86400,
        put_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        stats_interval: float = 1.0,
        fetch_timeout: float = 0.25,
    ) -> None:
        self.url = url
        self.names = names.Names(stream, subject_prefix)
        self.max_pending = max_pending
        self.dedup_window_seconds = dedup_window_seconds
        self.put_timeout = put_timeout
        self.connect_timeout = connect_timeout
        self.stats_interval = stats_interval
        self.fetch_timeout = fetch_timeout
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._accepting = False
        self._subs: dict[str, JetStreamContext.PullSubscription] = {}
        self._ack_wait: dict[str, float] = {}
        self._held: dict[tuple[str, str], Msg] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._keeper: asyncio.Task[None] | None = None
        self._stats = InboxStats(0, 0.0, {}, 0)

    # life cycle

    async def open(self) -> None:
        self._accepting = True
        try:
            await self._connect()
        except _FAILURES as exc:  # not fatal: puts answer 503 and `_keep` connects later
            log.warning("nats_unavailable", extra={"fields": {"error": type(exc).__name__}})
        self._keeper = asyncio.get_running_loop().create_task(
            self._keep(), name="dtpush-inbox-nats"
        )

    async def close(self) -> None:
        self._accepting = False
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        await self.flush()
        nc, self._nc, self._js = self._nc, None, None
        self._subs.clear()
        self._held.clear()
        if nc is not None:
            with contextlib.suppress(*_FAILURES):
                await nc.close()

    def ready(self) -> bool:
        return self._accepting and self._js is not None and self._connected()

    # ingest

    async def put(self, event: Event, handlers: Sequence[str]) -> bool:
        js = self._require()
        if self._stats.pending >= self.max_pending:
            raise Unavailable("inbox_full", retry_after=5)
        headers = {
            names.MSG_ID: event.event_id,
            names.EVENT_ID: names.header(event.event_id),
            names.EVENT_TYPE: names.header(event.event_type),
            names.DEVICE_ID: names.header(event.device_id),
            names.EVENT_TIME: event.timestamp.isoformat(),
            names.HANDLERS: ",".join(names.token(h) for h in handlers),
        }
        try:
            async with asyncio.timeout(self.put_timeout):
                for handler in handlers:
                    if handler not in self._ack_wait:
                        await self._consumer(handler, None)
                ack = await js.publish(
                    self.names.event_subject(event.event_type),
                    event.raw,
                    timeout=self.put_timeout,
                    headers=headers,
                )
        except _FAILURES as exc:
            raise Unavailable("inbox_unavailable", retry_after=5) from exc
        return not ack.duplicate

    async def quarantine(self, raw: bytes, reason: str) -> None:
        js = self._require()
        headers = dead.quarantine_headers(reason)
        try:
            await js.publish(
                self.names.dead_subject(QUARANTINE), raw, timeout=self.put_timeout, headers=headers
            )
        except _FAILURES as exc:
            raise Unavailable("inbox_unavailable", retry_after=5) from exc

    def stats(self) -> InboxStats:
        return self._stats

    # delivery engine

    def attach(self, owner: str, handlers: Collection[str], lease_seconds: float) -> None:
        """Nothing to do: the consumers deliver fresh events (`notify_delivers` is False)."""

    def detach(self, owner: str) -> None:
        """Nothing to do (see `attach`)."""

    async def claim(
        self, wanted: Mapping[str, int], *, owner: str, lease_seconds: float
    ) -> list[Delivery]:
        wanted = {handler: limit for handler, limit in wanted.items() if limit > 0}
        if not wanted or self._js is None or not self._connected():
            return []
        batches = await asyncio.gather(
            *(self._fetch(handler, limit, lease_seconds) for handler, limit in wanted.items())
        )
        return [delivery for batch in batches for delivery in batch]

    def done(self, event_id: str, handler: str) -> asyncio.Future[None]:
        msg = self._held.pop((event_id, handler), None)
        if msg is None:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.set_result(None)
            return future
        return self._spawn(self._settle(msg.ack_sync(timeout=self.put_timeout)))

    def retry(
        self, event_id: str, handler: str, *, owner: str, attempts: int, error: str, delay: float
    ) -> None:
        msg = self._held.pop((event_id, handler), None)
        if msg is not None:
            self._spawn(self._settle(msg.nak(delay=delay)))

    def dead(self, event_id: str, handler: str, *, owner: str, attempts: int, error: str) -> None:
        msg = self._held.pop((event_id, handler), None)
        if msg is not None:
            self._spawn(self._bury(msg, event_id, handler, attempts, error))

    def release(self, event_id: str, handler: str, *, owner: str) -> None:
        msg = self._held.pop((event_id, handler), None)
        if msg is not None:
            self._spawn(self._settle(msg.nak()))

    def release_all(self, owner: str) -> None:
        held, self._held = self._held, {}
        for msg in held.values():
            self._spawn(self._settle(msg.nak()))

    async def lease_owners(self) -> set[str]:
        return set()

    async def flush(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # dead letters

    async def list_dead(
        self, handler: str | None = None, event_type: str | None = None
    ) -> list[DeadLetter]:
        return [
            letter
            for _, letter in await self._dead_letters(handler)
            if event_type is None or letter.event_type == event_type
        ]

    async def replay(
        self,
        handler: str | None = None,
        event_type: str | None = None,
        ids: Collection[str] | None = None,
        all: bool = False,
    ) -> int:
        if not all and handler is None and event_type is None and ids is None:
            raise ValueError("replay needs a handler, an event type, ids or all=True")
        chosen = None if ids is None else frozenset(ids)
        js = self._require()
        count = 0
        for seq, letter in await self._dead_letters(handler):
            if letter.handler == QUARANTINE or letter.event_id is None:
                continue
            if event_type is not None and letter.event_type != event_type:
                continue
            if chosen is not None and letter.event_id not in chosen:
                continue
            headers = dead.replay_headers(letter)
            subject = self.names.event_subject(letter.event_type or "")
            try:  # pending again first: a failure between the two leaves a repeat, no loss
                await self._consumer(letter.handler, None)
                await js.publish(subject, letter.raw, timeout=self.put_timeout, headers=headers)
                await js.delete_msg(self.names.dead_stream, seq)
            except _FAILURES as exc:
                raise Unavailable("inbox_unavailable", retry_after=5) from exc
            count += 1
        return count

    async def purge(self) -> int:
        js = self._require()
        try:
            info = await js.stream_info(self.names.dead_stream)
            await js.purge_stream(self.names.dead_stream)
        except _FAILURES as exc:
            raise Unavailable("inbox_unavailable", retry_after=5) from exc
        return info.state.messages

    # housekeeping and backfill

    async def prune(self) -> int:
        """JetStream forgets done events and old ids by itself: nothing to do here."""
        return 0

    async def newest_received_at(self) -> datetime | None:
        nc = self._nc
        self._require()
        assert nc is not None
        try:
            reply = await nc.request(
                f"$JS.API.STREAM.INFO.{self.names.stream}", b"", timeout=self.put_timeout
            )
        except _FAILURES as exc:
            raise Unavailable("inbox_unavailable", retry_after=5) from exc
        state = orjson.loads(reply.data).get("state", {})
        if not state.get("last_seq"):
            return None
        return dead.parse_time(state.get("last_ts"))

    async def last_event_time_by_device(self) -> dict[str, datetime]:
        """Not kept by this backend (see the module docstring)."""
        return {}

    # plumbing

    def _connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def _require(self) -> JetStreamContext:
        if not self._accepting:
            raise Unavailable("inbox_closed", retry_after=5)
        if self._js is None or not self._connected():
            raise Unavailable("inbox_unavailable", retry_after=5)
        return self._js

    async def _connect(self) -> None:
        async def quiet(exc: Exception) -> None:  # each failed try; `_keep` warns once a round
            log.debug("nats_error", extra={"fields": {"error": type(exc).__name__}})

        nc = await nats.connect(
            self.url,
            connect_timeout=max(1, int(self.connect_timeout)),
            # a few tries, then closed: `_keep` connects again (a first connect must not hang)
            max_reconnect_attempts=2,
            reconnect_time_wait=1,
            error_cb=quiet,
        )
        try:
            js = nc.jetstream(timeout=self.put_timeout)
            await streams.ensure_streams(js, self.names, self.dedup_window_seconds)
        except BaseException:
            await nc.close()
            raise
        self._nc, self._js = nc, js
        log.info("nats_connected", extra={"fields": {"stream": self.names.stream}})

    async def _keep(self) -> None:
        """Connect until connected; then refresh the stats about every `stats_interval`.

        It ends when the inbox closes even if the client swallowed the cancellation (nats-py
        turns a cancelled request into its own timeout error).
        """
        while self._accepting:
            try:
                if self._nc is not None and self._nc.is_closed:
                    self._nc = self._js = None  # gave up reconnecting: start afresh
                    self._subs.clear()
                    self._held.clear()  # they come back after `ack_wait`
                if self._nc is None:
                    await self._connect()
                elif self._connected():
                    await self._refresh()
            except _FAILURES as exc:
                if not self._accepting:
                    return
                log.warning("nats_unavailable", extra={"fields": {"error": type(exc).__name__}})
            await asyncio.sleep(self.stats_interval)

    async def _refresh(self) -> None:
        assert self._js is not None
        self._stats = await streams.read_stats(self._js, self.names)

    async def _consumer(
        self, handler: str, ack_wait: float | None
    ) -> JetStreamContext.PullSubscription:
        """The pull subscription of `handler`'s durable consumer, made as needed.

        An ingesting process (`ack_wait` None) creates a missing consumer and never changes
        an existing one; a delivering process sets `ack_wait` to its lease.
        """
        js = self._js
        assert js is not None
        durable = self.names.consumer(handler)
        known = self._ack_wait.get(handler)
        if known is None:
            try:
                info = await js.consumer_info(self.names.stream, durable)
                known = info.config.ack_wait or _DEFAULT_LEASE
            except NotFoundError:
                known = None
        if known is None or (ack_wait is not None and abs(ack_wait - known) > 1e-3):
            wait = ack_wait or _DEFAULT_LEASE
            config = streams.consumer_config(self.names, handler, wait)
            await js.add_consumer(self.names.stream, config)  # creates, or updates ack_wait
            known = wait
        self._ack_wait[handler] = known
        sub = self._subs.get(handler)
        if sub is None:
            sub = await js.pull_subscribe_bind(
                durable=self.names.consumer(handler), stream=self.names.stream
            )
            self._subs[handler] = sub
        return sub

    async def _fetch(self, handler: str, limit: int, lease_seconds: float) -> list[Delivery]:
        try:
            sub = await self._consumer(handler, lease_seconds)
            msgs = await sub.fetch(limit, timeout=self.fetch_timeout)
        except TimeoutError:
            return []
        except (NatsError, OSError) as exc:
            log.warning(
                "nats_fetch_failed",
                extra={"fields": {"handler": handler, "error": type(exc).__name__}},
            )
            return []
        deliveries = []
        mine = names.token(handler)
        for msg in msgs:
            headers = msg.headers or {}
            only = headers.get(names.ONLY)
            subscribed = headers.get(names.HANDLERS, "").split(",")
            event_id = names.unheader(headers.get(names.EVENT_ID))
            if event_id is None or (only is not None and only != mine) or mine not in subscribed:
                self._spawn(self._settle(msg.ack()))
                continue
            self._held[(event_id, handler)] = msg
            attempts = max(0, msg.metadata.num_delivered - 1) if msg.metadata.num_delivered else 0
            deliveries.append(Delivery(event_id, handler, attempts, msg.data))
        return deliveries

    async def _bury(self, msg: Msg, event_id: str, handler: str, attempts: int, error: str) -> None:
        headers = dead.burial_headers(
            msg.headers or {}, handler, attempts, error, msg.metadata.timestamp
        )
        js = self._js
        try:
            if js is None:
                raise Unavailable("inbox_unavailable", retry_after=5)
            await js.publish(
                self.names.dead_subject(handler),
                msg.data,
                timeout=self.put_timeout,
                headers=headers,
            )
        except (*_FAILURES, Unavailable):
            log.warning("nats_dead_letter_failed", extra={"fields": {"event_id": event_id}})
            await self._settle(msg.nak())  # it comes back, and fails its way here again
            return
        await self._settle(msg.term())

    async def _dead_letters(self, handler: str | None) -> list[tuple[int, DeadLetter]]:
        js = self._require()
        try:
            return await dead.read(js, self.names, handler)
        except _FAILURES as exc:
            raise Unavailable("inbox_unavailable", retry_after=5) from exc

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    async def _settle(ack: Coroutine[Any, Any, Any]) -> None:
        """An ack, nak or term: if it is lost, the message comes back after `ack_wait`."""
        try:
            await ack
        except _FAILURES as exc:
            log.warning("nats_ack_failed", extra={"fields": {"error": type(exc).__name__}})
