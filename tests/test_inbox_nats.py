"""The NATS JetStream inbox against the real NATS: dedup, durability, delivery, dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import nats
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry

from receiver.app import create_app
from receiver.config import load_settings
from receiver.delivery import Dispatcher
from receiver.errors import Unavailable
from receiver.events import Event, parse
from receiver.inbox.base import QUARANTINE
from receiver.inbox.nats import NatsInbox
from receiver.metrics import Metrics
from receiver.registry import Handler
from receiver.testing import Signer, make_event_body
from tests.recording import RecordingHandler
from tests.services import TcpRelay, free_port, needs
from tests.waiting import until

pytestmark = needs("NATS", 4222)

URL = "nats://127.0.0.1:4222"
FAST: dict[str, Any] = {
    "backoff_initial": 0.05,
    "backoff_max": 0.1,
    "poll_interval": 0.05,
    "handler_timeout": 2.0,
}


def event(event_id: str, event_type: str = "temperature") -> Event:
    return parse(make_event_body(event_type, event_id=event_id))


class TouchOnly(RecordingHandler):
    event_types = ("touch",)


async def delete_streams(stream: str) -> None:
    nc = await nats.connect(URL)
    try:
        js = nc.jetstream()
        for name in (stream, f"{stream}_DLQ"):
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(name)
    finally:
        await nc.close()


@pytest.fixture
async def naming() -> AsyncIterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:10]
    names = {"stream": f"T{tag}", "subject_prefix": f"t{tag}"}
    yield names
    await delete_streams(names["stream"])


@contextlib.asynccontextmanager
async def opened(naming: Mapping[str, str], **options: Any) -> AsyncIterator[NatsInbox]:
    box = NatsInbox(
        URL,
        stream=naming["stream"],
        subject_prefix=naming["subject_prefix"],
        stats_interval=0.1,
        **options,
    )
    await box.open()
    try:
        yield box
    finally:
        await box.close()


@contextlib.asynccontextmanager
async def dispatching(
    box: NatsInbox, handlers: Mapping[str, Handler], **options: Any
) -> AsyncIterator[Dispatcher]:
    dispatcher = Dispatcher(box, handlers, metrics=Metrics(CollectorRegistry()), **FAST, **options)
    await dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.stop(grace=2)


async def accept(box: NatsInbox, dispatcher: Dispatcher, ev: Event) -> bool:
    """What the push view does: put for its subscribers, then notify."""
    handlers = dispatcher._lanes
    names = [name for name, lane in handlers.items() if lane.handler.wants(ev.event_type)]
    new = await box.put(ev, names)
    if new:
        dispatcher.notify(ev)
    return new


async def test_nats_put_new_true_same_id_false_also_from_a_new_connection(
    naming: dict[str, str],
) -> None:
    async with opened(naming) as first:
        assert first.ready()
        assert await first.put(event("ev-1"), ["a"]) is True
        assert await first.put(event("ev-1"), ["a"]) is False
    async with opened(naming) as again:
        assert await again.put(event("ev-1"), ["a"]) is False
        claimed = await again.claim({"a": 10}, owner="t", lease_seconds=30)
        assert [(d.event_id, d.handler, d.attempts) for d in claimed] == [("ev-1", "a", 0)]
        assert parse(claimed[0].raw).event_id == "ev-1"
        await again.done("ev-1", "a")
        # delivered and gone from the stream, its id is still remembered
        assert await again.put(event("ev-1"), ["a"]) is False
        assert await again.claim({"a": 10}, owner="t", lease_seconds=30) == []


async def test_nats_event_type_with_subject_characters_is_stored_and_delivered(
    naming: dict[str, str],
) -> None:
    body = make_event_body("temperature", event_id="odd-1").replace(
        b'"temperature"', b'"temp. *>x"', 1
    )
    odd = parse(body)
    assert odd.event_type == "temp. *>x"
    async with opened(naming) as box:
        assert await box.put(odd, ["a.b c"]) is True
        claimed = await box.claim({"a.b c": 5}, owner="t", lease_seconds=30)
        assert [(d.event_id, d.handler) for d in claimed] == [("odd-1", "a.b c")]
        await box.done("odd-1", "a.b c")


async def test_nats_dispatcher_delivers_each_event_once_to_each_handler(
    naming: dict[str, str],
) -> None:
    one, two, touch = RecordingHandler(), RecordingHandler(), TouchOnly()
    handlers = {"one": one, "two": two, "touch": touch}
    async with opened(naming) as box, dispatching(box, handlers) as dispatcher:
        ids = [f"ev-{i}" for i in range(20)]
        for event_id in ids:
            assert await accept(box, dispatcher, event(event_id)) is True
        await one.wait_for(20)
        await two.wait_for(20)
        await until(lambda: box.stats().pending == 0, within=10, what="every delivery acked")
        assert sorted(one.ids) == sorted(ids) and sorted(two.ids) == sorted(ids)
        assert touch.calls == 0  # subscribed to another type: acked without a call


async def test_nats_failing_handler_retried_then_succeeds_other_unaffected(
    naming: dict[str, str],
) -> None:
    flaky, steady = RecordingHandler(fail_first=2), RecordingHandler()
    async with opened(naming) as box:
        async with dispatching(box, {"flaky": flaky, "steady": steady}) as dispatcher:
            assert await accept(box, dispatcher, event("ev-1")) is True
            await flaky.wait_for(1)
            await steady.wait_for(1)
            assert flaky.calls == 3 and steady.calls == 1
            await until(lambda: box.stats().pending == 0, within=10, what="acked")
        assert await box.list_dead() == []


async def test_nats_always_failing_becomes_dead_letter_then_replay_reaches_only_it(
    naming: dict[str, str],
) -> None:
    broken, fine = RecordingHandler(always_fail=True), RecordingHandler()
    async with opened(naming) as box:
        handlers = {"broken": broken, "fine": fine}
        async with dispatching(box, handlers, max_attempts=3) as dispatcher:
            assert await accept(box, dispatcher, event("ev-1")) is True
            await fine.wait_for(1)
            await until(lambda: broken.calls >= 3, within=10, what="three attempts")
            await dispatcher.inbox.flush()
            await until(lambda: box.stats().dead_letters.get("broken") == 1, within=10, what="dead")
            [letter] = await box.list_dead()
            assert (letter.event_id, letter.handler, letter.attempts) == ("ev-1", "broken", 3)
            assert letter.event_type == "temperature"
            assert letter.last_error == "RuntimeError: planned failure 3"
            assert parse(letter.raw).event_id == "ev-1"
            assert await box.list_dead(handler="fine") == []

            broken.always_fail = False
            with pytest.raises(ValueError):
                await box.replay()
            assert await box.replay(handler="broken") == 1
            await broken.wait_for(1)
            assert broken.ids == ["ev-1"]
            await until(lambda: box.stats().pending == 0, within=10, what="replay acked")
            assert fine.ids == ["ev-1"]  # the replay did not reach the other handler
            assert await box.list_dead() == []


async def test_nats_quarantine_listed_never_replayed_and_purged(naming: dict[str, str]) -> None:
    async with opened(naming) as box:
        await box.quarantine(b'{"not": "an event"}', "no_event_object")
        [letter] = await box.list_dead()
        assert (letter.handler, letter.event_id, letter.last_error) == (
            QUARANTINE,
            None,
            "no_event_object",
        )
        assert letter.raw == b'{"not": "an event"}'
        assert await box.replay(all=True) == 0
        await until(lambda: box.stats().dead_letters.get(QUARANTINE) == 1, within=5, what="counted")
        assert await box.purge() == 1
        assert await box.list_dead() == []


async def test_nats_newest_received_at_follows_puts(naming: dict[str, str]) -> None:
    async with opened(naming) as box:
        assert await box.newest_received_at() is None
        await box.put(event("ev-1"), ["a"])
        newest = await box.newest_received_at()
        assert newest is not None and abs(newest.timestamp() - time.time()) < 60


async def test_nats_unreachable_put_answers_unavailable_quickly() -> None:
    box = NatsInbox(f"nats://127.0.0.1:{free_port()}", connect_timeout=1)
    started = time.monotonic()
    await box.open()
    try:
        assert not box.ready()
        with pytest.raises(Unavailable) as caught:
            await box.put(event("ev-1"), ["a"])
        assert caught.value.retry_after == 5
        assert await box.claim({"a": 5}, owner="t", lease_seconds=30) == []
        assert time.monotonic() - started < 8
    finally:
        await box.close()
    with pytest.raises(Unavailable):
        await box.put(event("ev-1"), ["a"])


async def test_nats_inbox_full_answers_unavailable(naming: dict[str, str]) -> None:
    async with opened(naming, max_pending=2) as box:
        await box.put(event("ev-1"), ["a"])
        await box.put(event("ev-2"), ["a"])
        await until(lambda: box.stats().pending >= 2, within=5, what="pending counted")
        with pytest.raises(Unavailable) as caught:
            await box.put(event("ev-3"), ["a"])
        assert caught.value.reason == "inbox_full"
        counts = Counter(d.event_id for d in await box.claim({"a": 5}, owner="t", lease_seconds=30))
        assert counts == {"ev-1": 1, "ev-2": 1}


async def test_nats_released_delivery_comes_back(naming: dict[str, str]) -> None:
    async with opened(naming) as box:
        await box.put(event("ev-1"), ["a"])
        [first] = await box.claim({"a": 5}, owner="t", lease_seconds=30)
        box.release_all("t")
        await box.flush()
        again: list[Any] = []

        async def claimed() -> None:
            while not again:
                again.extend(await box.claim({"a": 5}, owner="t", lease_seconds=30))

        await asyncio.wait_for(claimed(), timeout=10)
        assert [d.event_id for d in again] == [first.event_id]


async def test_nats_unacked_delivery_comes_back_after_its_lease_with_the_attempt_counted(
    naming: dict[str, str],
) -> None:
    async with opened(naming) as worker, opened(naming) as ingest:
        await ingest.put(event("ev-1"), ["a"])
        [first] = await worker.claim({"a": 5}, owner="w", lease_seconds=1.0)
        assert first.attempts == 0
        # another process putting for the same handler leaves the worker's lease as it is
        await ingest.put(event("ev-2"), ["a"])
        again: list[Any] = []

        async def claimed() -> None:
            while "ev-1" not in [d.event_id for d in again]:
                again.extend(await worker.claim({"a": 5}, owner="w", lease_seconds=1.0))

        await asyncio.wait_for(claimed(), timeout=10)
        [back] = [d for d in again if d.event_id == "ev-1"]
        assert back.attempts == 1


async def test_nats_serve_with_workers_delivers_a_push_once_and_quarantines_a_non_event(
    naming: dict[str, str],
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    tmp_path: Path,
) -> None:
    secret = "nats-serve-secret-0123456789abcdef"
    env = {
        "DTPUSH_VERIFY_SECRETS": secret,
        "DTPUSH_INBOX_BACKEND": "nats",
        "DTPUSH_INBOX_NATS_STREAM": naming["stream"],
        "DTPUSH_INBOX_NATS_SUBJECT_PREFIX": naming["subject_prefix"],
    }
    recorder = RecordingHandler()
    app = create_app(
        load_settings(env=env, cwd=tmp_path),
        registry=CollectorRegistry(),
        handlers={"recorder": recorder},
    )
    client = await aiohttp_client(app)
    body = make_event_body("temperature")
    for expected in ("accepted", "duplicate"):
        answer = await client.post("/events", data=body, headers=Signer(secret).headers(body))
        assert (answer.status, (await answer.json())["status"]) == (200, expected)
    odd = b'{"hello": "world"}'
    answer = await client.post("/events", data=odd, headers=Signer(secret).headers(odd))
    assert answer.status == 200
    await recorder.wait_for(1)
    async with opened(naming) as box:
        await until(lambda: box.stats().pending == 0, within=10, what="the delivery acked")
        assert [letter.handler for letter in await box.list_dead()] == [QUARANTINE]
    assert recorder.calls == 1  # not handed over in-process and again by the consumer


async def test_nats_outage_answers_unavailable_then_recovers_by_itself(
    naming: dict[str, str],
) -> None:
    async with TcpRelay(4222) as relay:
        box = NatsInbox(
            f"nats://127.0.0.1:{relay.port}",
            stream=naming["stream"],
            subject_prefix=naming["subject_prefix"],
            stats_interval=0.1,
        )
        await box.open()
        try:
            assert await box.put(event("ev-1"), ["a"]) is True
            await relay.cut()
            await until(lambda: not box.ready(), within=10, what="the inbox to notice")
            with pytest.raises(Unavailable):
                await asyncio.wait_for(box.put(event("ev-2"), ["a"]), timeout=6)
            await relay.restore()
            await until(lambda: box.ready(), within=15, what="the inbox to reconnect")
            assert await box.put(event("ev-2"), ["a"]) is True
            assert await box.put(event("ev-1"), ["a"]) is False
        finally:
            await box.close()
