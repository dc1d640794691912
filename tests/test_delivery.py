"""Delivery: per handler, at least once, retried with backoff, dead letters, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from receiver.delivery import Dispatcher, describe
from receiver.events import Event, parse
from receiver.inbox.sqlite import SqliteInbox
from receiver.metrics import Metrics
from receiver.registry import Handler
from receiver.testing import make_event_body
from tests.recording import RecordingHandler
from tests.waiting import until

FAST: dict[str, Any] = {
    "backoff_initial": 0.01,
    "backoff_max": 0.02,
    "poll_interval": 0.02,
    "handler_timeout": 5.0,
}


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Gated(Handler):
    """Each call waits for `gate`; counts calls running, finished and cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.running = 0
        self.finished: list[str] = []
        self.cancelled = 0

    async def handle(self, event: Event) -> None:
        self.running += 1
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1
        self.finished.append(event.event_id)


class StuckFirst(Handler):
    """Its first call never returns by itself; later calls succeed."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.delivered: list[str] = []

    async def handle(self, event: Event) -> None:
        self.calls += 1
        if self.calls == 1:
            await asyncio.Event().wait()
        self.delivered.append(event.event_id)


class TouchOnly(RecordingHandler):
    event_types = ("touch",)


def event(event_id: str, event_type: str = "temperature") -> Event:
    return parse(make_event_body(event_type, event_id=event_id))


def new_dispatcher(
    inbox: SqliteInbox, handlers: Mapping[str, Handler], **options: Any
) -> Dispatcher:
    options = {**FAST, **options}
    options.setdefault("metrics", Metrics(CollectorRegistry()))
    return Dispatcher(inbox, handlers, **options)


@contextlib.asynccontextmanager
async def running(
    inbox: SqliteInbox, handlers: Mapping[str, Handler], **options: Any
) -> AsyncIterator[Dispatcher]:
    dispatcher = new_dispatcher(inbox, handlers, **options)
    await dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.stop(grace=5)


async def accept(
    inbox: SqliteInbox, dispatcher: Dispatcher | None, handlers: Mapping[str, Handler], ev: Event
) -> bool:
    """What the push view does: make it durable for its subscribers, then hand it over."""
    names = [name for name, handler in handlers.items() if handler.wants(ev.event_type)]
    new = await inbox.put(ev, names)
    if new and dispatcher is not None:
        dispatcher.notify(ev)
    return new


def sample(metrics: Metrics, name: str, handler: str) -> float:
    value = metrics.registry.get_sample_value(name, {"handler": handler})
    return 0.0 if value is None else value


@pytest.fixture
async def inbox(tmp_path: Path) -> AsyncIterator[SqliteInbox]:
    box = SqliteInbox(tmp_path / "inbox.db")
    await box.open()
    yield box
    await box.close()


async def test_delivery_failing_handler_succeeds_on_third_attempt_other_handler_once(
    inbox: SqliteInbox,
) -> None:
    flaky, steady = RecordingHandler(fail_first=2), RecordingHandler()
    handlers = {"flaky": flaky, "steady": steady}
    metrics = Metrics(CollectorRegistry())
    async with running(inbox, handlers, metrics=metrics) as dispatcher:
        assert await accept(inbox, dispatcher, handlers, event("ev-1"))
        await flaky.wait_for(1)
        await steady.wait_for(1)
        await inbox.flush()
        await until(lambda: inbox.stats().pending == 0, within=10, what="nothing pending")
    assert flaky.calls == 3 and flaky.ids == ["ev-1"]
    assert steady.calls == 1 and steady.ids == ["ev-1"]
    assert sample(metrics, "dtpush_handler_failures_total", "flaky") == 2
    assert sample(metrics, "dtpush_handler_failures_total", "steady") == 0
    assert sample(metrics, "dtpush_handler_duration_seconds_count", "flaky") == 3
    assert sample(metrics, "dtpush_handler_duration_seconds_count", "steady") == 1


async def test_delivery_fresh_event_reaches_handler_as_the_same_object(inbox: SqliteInbox) -> None:
    recorder = RecordingHandler()
    handlers = {"rec": recorder}
    ev = event("same")
    async with running(inbox, handlers) as dispatcher:
        await accept(inbox, dispatcher, handlers, ev)
        [got] = await recorder.wait_for(1)
    assert got is ev  # handed over in-process, not re-read and re-parsed


async def test_delivery_only_to_handlers_that_subscribed_to_the_type(inbox: SqliteInbox) -> None:
    touch_only, everything = TouchOnly(), RecordingHandler()
    handlers = {"touch_only": touch_only, "all": everything}
    async with running(inbox, handlers) as dispatcher:
        await accept(inbox, dispatcher, handlers, event("t-1", "temperature"))
        await accept(inbox, dispatcher, handlers, event("u-1", "touch"))
        await everything.wait_for(2)
        await touch_only.wait_for(1)
        await inbox.flush()
    assert touch_only.ids == ["u-1"]
    assert sorted(everything.ids) == ["t-1", "u-1"]
    assert inbox.stats().pending == 0


async def test_delivery_always_failing_handler_becomes_dead_letter_then_replay_delivers_once(
    inbox: SqliteInbox,
) -> None:
    broken, steady = RecordingHandler(always_fail=True), RecordingHandler()
    handlers = {"broken": broken, "steady": steady}
    metrics = Metrics(CollectorRegistry())
    async with running(inbox, handlers, metrics=metrics, max_attempts=3) as dispatcher:
        await accept(inbox, dispatcher, handlers, event("doomed"))
        await until(
            lambda: inbox.stats().dead_letters == {"broken": 1}, within=10, what="dead letter"
        )
        [letter] = await inbox.list_dead()
        assert (letter.event_id, letter.event_type, letter.handler) == (
            "doomed",
            "temperature",
            "broken",
        )
        assert letter.attempts == 3
        assert letter.last_error == "RuntimeError: planned failure 3"
        assert broken.calls == 3
        assert sample(metrics, "dtpush_handler_failures_total", "broken") == 3
        assert inbox.stats().pending == 0

        broken.always_fail = False  # the operator fixes it
        assert await inbox.replay(handler="broken") == 1
        await broken.wait_for(1)
        await inbox.flush()
        await until(lambda: inbox.stats().pending == 0, within=10, what="nothing pending")
    assert broken.calls == 4 and broken.ids == ["doomed"]
    assert steady.calls == 1
    assert await inbox.list_dead() == []
    assert inbox.stats().dead_letters == {}


async def test_delivery_replay_by_event_type_by_id_and_all_each_delivered_once(
    inbox: SqliteInbox,
) -> None:
    broken = RecordingHandler(always_fail=True)
    handlers = {"broken": broken}
    async with running(inbox, handlers, max_attempts=1) as dispatcher:
        for ev in (event("t-1"), event("t-2"), event("u-1", "touch")):
            await accept(inbox, dispatcher, handlers, ev)
        await until(
            lambda: inbox.stats().dead_letters == {"broken": 3}, within=10, what="dead letters"
        )
        broken.always_fail = False
        assert await inbox.replay(event_type="touch") == 1
        await broken.wait_for(1)
        assert await inbox.replay(ids=["t-2"]) == 1
        await broken.wait_for(2)
        assert await inbox.replay(all=True) == 1
        await broken.wait_for(3)
        await inbox.flush()
    assert broken.ids == ["u-1", "t-2", "t-1"]
    assert await inbox.list_dead() == []


async def test_delivery_slow_handler_never_delays_other_handlers(inbox: SqliteInbox) -> None:
    slow, fast = Gated(), RecordingHandler()
    handlers = {"slow": slow, "fast": fast}
    async with running(inbox, handlers, concurrency=4, handler_timeout=60) as dispatcher:
        for i in range(20):
            await accept(inbox, dispatcher, handlers, event(f"ev-{i}"))
        await fast.wait_for(20)
        assert slow.running == 4 and slow.finished == []  # every slow worker still busy
        slow.gate.set()
        await until(lambda: len(slow.finished) == 20, within=20, what="slow handler catch-up")
        await inbox.flush()
    assert sorted(slow.finished) == sorted(f"ev-{i}" for i in range(20))
    assert fast.calls == 20


async def test_delivery_handler_exceeding_timeout_is_a_failure_and_retried(
    inbox: SqliteInbox,
) -> None:
    stuck = StuckFirst()
    handlers = {"stuck": stuck}
    metrics = Metrics(CollectorRegistry())
    async with running(inbox, handlers, metrics=metrics, handler_timeout=0.1) as dispatcher:
        await accept(inbox, dispatcher, handlers, event("late"))
        await until(lambda: stuck.delivered == ["late"], within=10, what="second attempt")
    assert stuck.calls == 2
    assert sample(metrics, "dtpush_handler_failures_total", "stuck") == 1


async def test_delivery_timeout_dead_letter_says_it_timed_out(inbox: SqliteInbox) -> None:
    handlers = {"stuck": StuckFirst()}
    async with running(inbox, handlers, handler_timeout=0.1, max_attempts=1) as dispatcher:
        await accept(inbox, dispatcher, handlers, event("late"))
        await until(lambda: inbox.stats().dead_letters == {"stuck": 1}, within=10, what="dead")
    [letter] = await inbox.list_dead()
    assert letter.last_error == "TimeoutError: handler took longer than 0.1s"


async def test_delivery_restart_delivers_what_the_file_still_holds(tmp_path: Path) -> None:
    path = tmp_path / "inbox.db"
    first = SqliteInbox(path)
    await first.open()
    for i in range(3):
        await first.put(event(f"left-{i}"), ("rec",))
    # an event type this build does not know is delivered all the same
    unknown = b'{"event":{"eventId":"new-kind","eventType":"futureSensor","data":{"x":1},"timestamp":"2024-05-29T10:34:03Z"}}'
    await first.put(parse(unknown), ("rec",))
    await first.close()

    second = SqliteInbox(path)
    await second.open()
    recorder = RecordingHandler()
    try:
        async with running(second, {"rec": recorder}):
            events = await recorder.wait_for(4)
            await second.flush()
            await until(lambda: second.stats().pending == 0, within=10, what="all done")
    finally:
        await second.close()
    assert sorted(e.event_id for e in events) == ["left-0", "left-1", "left-2", "new-kind"]
    [unknown_event] = [e for e in events if e.event_id == "new-kind"]
    assert unknown_event.data == {"x": 1}


async def test_delivery_backlog_far_larger_than_a_lane_is_drained(inbox: SqliteInbox) -> None:
    for i in range(60):
        await inbox.put(event(f"backlog-{i}"), ("rec",))
    recorder = RecordingHandler()
    async with running(inbox, {"rec": recorder}, concurrency=2):  # 4 waiting at most
        await recorder.wait_for(60)
        await inbox.flush()
    assert sorted(recorder.ids) == sorted(f"backlog-{i}" for i in range(60))
    assert recorder.calls == 60
    assert inbox.stats().pending == 0


async def test_delivery_leased_to_a_crashed_process_resumes_after_the_lease(
    tmp_path: Path,
) -> None:
    clock = Clock()
    inbox = SqliteInbox(tmp_path / "inbox.db", clock=clock)
    await inbox.open()
    recorder = RecordingHandler()
    try:
        inbox.attach("crashed", ["rec"], lease_seconds=40)  # a process that died mid-delivery
        await inbox.put(event("orphan"), ("rec",))
        inbox.detach("crashed")
        async with running(inbox, {"rec": recorder}, handler_timeout=10):
            assert await inbox.claim({"rec": 1}, owner="probe", lease_seconds=1) == []
            clock.now += 41
            await recorder.wait_for(1)
    finally:
        await inbox.close()
    assert recorder.ids == ["orphan"]


async def test_delivery_stop_lets_a_running_call_finish_within_grace(inbox: SqliteInbox) -> None:
    gated = Gated()
    handlers = {"gated": gated}
    dispatcher = new_dispatcher(inbox, handlers)
    await dispatcher.start()
    await accept(inbox, dispatcher, handlers, event("in-flight"))
    await until(lambda: gated.running == 1, within=10, what="the call to start")
    stopping = asyncio.create_task(dispatcher.stop(grace=30))
    await until(lambda: not dispatcher._running, within=10, what="stop to begin")
    gated.gate.set()
    await stopping
    assert gated.finished == ["in-flight"] and gated.cancelled == 0
    assert inbox.stats().pending == 0  # the success was committed before stop returned


async def test_delivery_stop_cuts_a_call_after_grace_and_keeps_it_pending(
    inbox: SqliteInbox,
) -> None:
    gated = Gated()
    handlers = {"gated": gated}
    dispatcher = new_dispatcher(inbox, handlers)
    await dispatcher.start()
    await accept(inbox, dispatcher, handlers, event("cut"))
    await until(lambda: gated.running == 1, within=10, what="the call to start")
    await dispatcher.stop(grace=0.05)
    assert gated.cancelled == 1 and gated.finished == []
    assert inbox.stats().pending == 1

    recorder = RecordingHandler()
    async with running(inbox, {"gated": recorder}):  # the next start delivers it at once
        await recorder.wait_for(1)
    assert recorder.ids == ["cut"]


class Probe(Handler):
    """Shared by two dispatchers: notes any (event, handler) pair handled twice at once."""

    def __init__(self, active: set[str], delivered: Counter[str], overlaps: list[str]) -> None:
        super().__init__()
        self.active, self.delivered, self.overlaps = active, delivered, overlaps

    async def handle(self, event: Event) -> None:
        if event.event_id in self.active:
            self.overlaps.append(event.event_id)
        self.active.add(event.event_id)
        try:
            await asyncio.sleep(0.002)  # the work takes a moment
        finally:
            self.active.discard(event.event_id)
        self.delivered[event.event_id] += 1


async def test_delivery_two_workers_on_one_file_never_deliver_a_pair_concurrently(
    tmp_path: Path,
) -> None:
    path = tmp_path / "inbox.db"
    ingest, one, two = SqliteInbox(path), SqliteInbox(path), SqliteInbox(path)
    active: set[str] = set()
    delivered: Counter[str] = Counter()
    overlaps: list[str] = []
    for box in (ingest, one, two):
        await box.open()
    try:
        async with (
            running(one, {"probe": Probe(active, delivered, overlaps)}, concurrency=8),
            running(two, {"probe": Probe(active, delivered, overlaps)}, concurrency=8),
        ):
            for i in range(200):
                await ingest.put(event(f"ev-{i}"), ("probe",))
            await until(lambda: len(delivered) == 200, within=30, what="every event")
    finally:
        for box in (ingest, one, two):
            await box.close()
    assert overlaps == []
    assert set(delivered.values()) == {1}


def test_describe_keeps_class_and_message_short() -> None:
    assert describe(ValueError("bad value"), 10) == "ValueError: bad value"
    assert describe(KeyError(), 10) == "KeyError"
    assert describe(TimeoutError(), 2.5) == "TimeoutError: handler took longer than 2.5s"
    long = describe(RuntimeError("x" * 5000), 10)
    assert long.startswith("RuntimeError: xxx") and len(long) == 300


class FailsFirstForSome(Handler):
    """Fails the first attempt of every third event; records each event it took."""

    def __init__(self) -> None:
        super().__init__()
        self.attempted: Counter[str] = Counter()
        self.delivered: Counter[str] = Counter()

    async def handle(self, event: Event) -> None:
        self.attempted[event.event_id] += 1
        if int(event.event_id.split("-")[1]) % 3 == 0 and self.attempted[event.event_id] == 1:
            raise ConnectionError("first attempt refused")
        await asyncio.sleep(0)
        self.delivered[event.event_id] += 1


async def test_delivery_mixed_load_every_event_reaches_every_handler_and_counts_agree(
    tmp_path: Path,
) -> None:
    path = tmp_path / "inbox.db"
    inbox = SqliteInbox(path)
    await inbox.open()
    picky, tight = FailsFirstForSome(), Gated()
    tight.gate.set()
    handlers: dict[str, Handler] = {"picky": picky, "tight": tight}
    ids = [f"ev-{i}" for i in range(400)]
    try:
        async with running(inbox, handlers, concurrency=3) as dispatcher:  # lanes overflow
            queue = iter(ids)

            async def pusher() -> None:  # ingest goes on while deliveries are recorded
                for event_id in queue:
                    await accept(inbox, dispatcher, handlers, event(event_id))

            await asyncio.gather(*(pusher() for _ in range(8)))
            await until(
                lambda: len(picky.delivered) == 400 and len(tight.finished) >= 400,
                within=60,
                what="every delivery",
            )
            await inbox.flush()
            await until(lambda: inbox.stats().pending == 0, within=10, what="no pending")
    finally:
        await inbox.close()
    assert set(picky.delivered) == set(ids) and set(picky.delivered.values()) == {1}
    assert sorted(tight.finished) == sorted(ids)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM deliveries").fetchone() == (0,)
        assert conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone() == (0,)


def test_lease_owner_is_gone_only_when_its_process_on_this_host_has_ended() -> None:
    import os
    import socket
    import subprocess
    import sys

    from receiver.delivery import owner_is_gone

    host = socket.gethostname()
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    assert owner_is_gone(f"{host}:{int(ended.stdout)}:abcd1234")
    assert not owner_is_gone(f"{host}:{os.getppid()}:abcd1234")  # still running
    assert not owner_is_gone(f"{host}:{os.getpid()}:abcd1234")  # ourselves
    assert not owner_is_gone(f"elsewhere-{host}:{int(ended.stdout)}:abcd1234")  # not ours to judge
    assert not owner_is_gone("not-an-owner")


class Batches(Handler):
    """Takes batches; each call waits for `gate`. Records every call's ids, the most events
    in calls at once, and fails any call holding a `poison-` id (alone or in a batch)."""

    def __init__(self, max_batch: int = 256) -> None:
        super().__init__()
        self.max_batch = max_batch
        self.gate = asyncio.Event()
        self.gate.set()
        self.calls: list[list[str]] = []
        self.delivered: Counter[str] = Counter()
        self.in_calls = 0
        self.most_in_calls = 0

    async def handle(self, event: Event) -> None:
        await self.handle_batch([event])

    async def handle_batch(self, events: Sequence[Event]) -> None:
        ids = [event.event_id for event in events]
        self.calls.append(ids)
        self.in_calls += len(ids)
        self.most_in_calls = max(self.most_in_calls, self.in_calls)
        try:
            await self.gate.wait()
        finally:
            self.in_calls -= len(ids)
        if any(event_id.startswith("poison-") for event_id in ids):
            raise ValueError("cannot store a poison event")
        self.delivered.update(ids)


async def test_delivery_batch_handler_takes_what_queued_meanwhile_in_one_call_each_once(
    inbox: SqliteInbox,
) -> None:
    batches, single = Batches(), RecordingHandler()
    handlers: dict[str, Handler] = {"batches": batches, "single": single}
    batches.gate.clear()
    ids = [f"ev-{i:02d}" for i in range(40)]
    async with running(inbox, handlers) as dispatcher:
        await accept(inbox, dispatcher, handlers, event(ids[0]))
        await until(lambda: batches.calls == [[ids[0]]], within=10, what="the first call")
        arrived = [event(event_id) for event_id in ids[1:]]  # while the first call runs
        for ev in arrived:
            await inbox.put(ev, list(handlers))
        for ev in arrived:  # handed over at once, as pushes answered in one loop iteration are
            dispatcher.notify(ev)
        await until(lambda: len(batches.calls) == 2, within=10, what="the second call")
        batches.gate.set()
        await until(lambda: len(batches.delivered) == 40, within=10, what="every event")
        await single.wait_for(40)
        await inbox.flush()
        await until(lambda: inbox.stats().pending == 0, within=10, what="nothing pending")
    assert batches.calls == [ids[:1], ids[1:]]
    assert set(batches.delivered.values()) == {1}
    assert single.calls == 40 and sorted(single.ids) == ids


async def test_delivery_batches_keep_to_max_batch_and_to_concurrency_events_in_calls(
    inbox: SqliteInbox,
) -> None:
    batches = Batches(max_batch=3)
    handlers: dict[str, Handler] = {"batches": batches}
    batches.gate.clear()
    ids = [f"ev-{i:02d}" for i in range(20)]
    arrived = [event(event_id) for event_id in ids]
    async with running(inbox, handlers, concurrency=4) as dispatcher:
        for ev in arrived:
            await inbox.put(ev, list(handlers))
        for ev in arrived[:5]:  # one worker takes a batch of 3
            dispatcher.notify(ev)
        await until(lambda: batches.in_calls == 3, within=10, what="a batch of three")
        for ev in arrived[5:10]:  # the next takes only what is left under the limit
            dispatcher.notify(ev)
        await until(lambda: batches.in_calls == 4, within=10, what="four events in calls")
        for ev in arrived[10:]:  # and the next none, until calls end
            dispatcher.notify(ev)
        batches.gate.set()
        await until(lambda: len(batches.delivered) == 20, within=10, what="every event")
    assert batches.most_in_calls == 4  # the lane had room for more, but not the calls
    assert max(len(call) for call in batches.calls) == 3
    assert sorted(batches.delivered) == ids and set(batches.delivered.values()) == {1}


async def test_delivery_failed_batch_retries_each_event_alone_and_only_the_bad_one_dies(
    inbox: SqliteInbox,
) -> None:
    batches, steady = Batches(), RecordingHandler()
    handlers: dict[str, Handler] = {"batches": batches, "steady": steady}
    batches.gate.clear()
    ids = ["ev-1", "poison-2", "ev-3", "ev-4"]
    async with running(inbox, handlers, max_attempts=3) as dispatcher:
        for event_id in ids:
            await accept(inbox, dispatcher, handlers, event(event_id))
        batches.gate.set()
        await until(
            lambda: inbox.stats().dead_letters == {"batches": 1}, within=10, what="dead letter"
        )
        await until(lambda: len(batches.delivered) == 3, within=10, what="the good events")
        await steady.wait_for(4)
        await inbox.flush()
    [letter] = await inbox.list_dead()
    assert (letter.event_id, letter.attempts) == ("poison-2", 3)
    assert letter.last_error == "ValueError: cannot store a poison event"
    assert sorted(batches.delivered) == ["ev-1", "ev-3", "ev-4"]
    assert set(batches.delivered.values()) == {1}
    retried = [call for call in batches.calls if "poison-2" in call][1:]
    assert retried == [["poison-2"], ["poison-2"]]  # retries go one by one
    assert steady.calls == 4
    assert inbox.stats().pending == 0
