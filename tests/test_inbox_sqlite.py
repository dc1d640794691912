"""The SQLite inbox: durable insert-if-absent, grouped commits, limits, leases, dead letters."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from receiver.errors import ConfigError, Unavailable
from receiver.events import Event, parse
from receiver.inbox.base import QUARANTINE
from receiver.inbox.sqlite import SqliteInbox
from receiver.testing import make_event_body
from tests.waiting import until, until_async


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def event(event_id: str, event_type: str = "temperature", **fields: object) -> Event:
    return parse(make_event_body(event_type, event_id=event_id, **fields))  # type: ignore[arg-type]


@pytest.fixture
async def inbox(tmp_path: Path) -> AsyncIterator[SqliteInbox]:
    box = SqliteInbox(tmp_path / "data" / "inbox.db")
    await box.open()
    yield box
    await box.close()


async def test_put_new_event_true_then_duplicate_false_both_durable(tmp_path: Path) -> None:
    path = tmp_path / "inbox.db"
    first = SqliteInbox(path)
    await first.open()
    assert await first.put(event("ev-1"), ("sqlite", "log")) is True
    assert await first.put(event("ev-1"), ("sqlite", "log")) is False
    await first.close()

    again = SqliteInbox(path)
    await again.open()
    try:
        assert again.stats().pending == 2
        assert await again.put(event("ev-1"), ("sqlite",)) is False
        claimed = await again.claim({"sqlite": 10, "log": 10}, owner="t", lease_seconds=30)
        assert sorted((d.event_id, d.handler) for d in claimed) == [
            ("ev-1", "log"),
            ("ev-1", "sqlite"),
        ]
        assert parse(claimed[0].raw).event_id == "ev-1"
    finally:
        await again.close()


async def test_put_creates_missing_directory(tmp_path: Path, inbox: SqliteInbox) -> None:
    assert (tmp_path / "data" / "inbox.db").exists()


async def test_put_concurrent_unique_events_share_commits(inbox: SqliteInbox) -> None:
    before = inbox.stats().commits
    results = await asyncio.gather(*(inbox.put(event(f"ev-{i}"), ("sqlite",)) for i in range(500)))
    assert results == [True] * 500
    assert inbox.stats().pending == 500
    assert inbox.stats().commits - before < 500


async def test_put_same_id_twice_in_one_batch_second_is_duplicate(inbox: SqliteInbox) -> None:
    results = await asyncio.gather(
        inbox.put(event("twin"), ("sqlite",)), inbox.put(event("twin"), ("sqlite",))
    )
    assert sorted(results) == [False, True]
    assert inbox.stats().pending == 1


async def test_put_batch_mixing_puts_and_other_work_keeps_every_delivery(
    tmp_path: Path,
) -> None:
    path = tmp_path / "inbox.db"
    inbox = SqliteInbox(path, busy_timeout=30)
    await inbox.open()
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # hold the writer so the next ops queue up together
        first = asyncio.ensure_future(inbox.flush())
        await asyncio.sleep(0)
        work = [
            asyncio.ensure_future(inbox.put(event("before"), ("h",))),
            asyncio.ensure_future(inbox.newest_received_at()),
            asyncio.ensure_future(inbox.put(event("after"), ("h",))),
        ]
        inbox.done("nothing", "h")
        await asyncio.sleep(0)
        blocker.execute("COMMIT")
        await first
        await asyncio.gather(*work)
        assert inbox.stats().pending == 2
        claimed = await inbox.claim({"h": 10}, owner="w", lease_seconds=30)
        assert sorted(d.event_id for d in claimed) == ["after", "before"]
    finally:
        blocker.close()
        await inbox.close()


async def test_put_one_bad_operation_in_a_batch_fails_alone(tmp_path: Path) -> None:
    path = tmp_path / "inbox.db"
    inbox = SqliteInbox(path, busy_timeout=30)
    await inbox.open()
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # hold the writer so the puts queue up together
        first = asyncio.ensure_future(inbox.flush())
        await asyncio.sleep(0)
        good = asyncio.ensure_future(inbox.put(event("good"), ("h",)))
        bad = asyncio.ensure_future(inbox.put(event("bad"), (object(),)))  # type: ignore[arg-type]
        also_good = asyncio.ensure_future(inbox.put(event("also-good"), ("h",)))
        await asyncio.sleep(0)
        blocker.execute("COMMIT")
        await first
        assert await good is True and await also_good is True
        with pytest.raises(Unavailable):
            await bad
        assert inbox.stats().pending == 2
        assert await inbox.put(event("bad"), ("h",)) is True  # nothing of it was kept
    finally:
        blocker.close()
        await inbox.close()


async def test_put_without_handlers_stores_event_and_deduplicates(inbox: SqliteInbox) -> None:
    assert await inbox.put(event("lonely"), ()) is True
    assert await inbox.put(event("lonely"), ()) is False
    assert inbox.stats().pending == 0


KILL_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from receiver.events import parse
    from receiver.inbox.sqlite import SqliteInbox
    from receiver.testing import make_event_body

    async def main():
        inbox = SqliteInbox(sys.argv[1])
        await inbox.open()
        counter = iter(range(10**9))

        async def pusher():
            for i in counter:
                event = parse(make_event_body("touch", event_id=f"k{sys.argv[2]}-{i}"))
                if await inbox.put(event, ("sqlite",)):
                    sys.stdout.write(event.event_id + "\\n")
                    sys.stdout.flush()

        await asyncio.gather(*(pusher() for _ in range(16)))

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("kill_after", [1, 150, 700])
def test_put_kill_9_every_acknowledged_event_survives(tmp_path: Path, kill_after: int) -> None:
    path = tmp_path / "inbox.db"
    acknowledged: list[str] = []
    for round_ in range(2):  # the second round also appends to a file that survived a kill
        with subprocess.Popen(
            [sys.executable, "-c", KILL_SCRIPT, str(path), str(round_)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            try:
                while len(acknowledged) < (round_ + 1) * kill_after:
                    line = proc.stdout.readline()
                    if not line:
                        raise AssertionError(proc.stderr.read().decode())
                    acknowledged.append(line.decode().strip())
                proc.send_signal(signal.SIGKILL)
                rest = proc.stdout.read()  # acknowledged before the kill landed
            finally:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL
        acknowledged += rest.decode().split("\n")[:-1]

    with sqlite3.connect(path) as conn:
        stored = {row[0] for row in conn.execute("SELECT event_id FROM events")}
    assert len(acknowledged) >= 2 * kill_after
    assert set(acknowledged) <= stored


async def test_put_at_max_pending_new_event_unavailable_duplicate_false(tmp_path: Path) -> None:
    inbox = SqliteInbox(tmp_path / "inbox.db", max_pending=3)
    await inbox.open()
    try:
        assert await inbox.put(event("a"), ("h1", "h2")) is True
        assert await inbox.put(event("b"), ("h1",)) is True
        with pytest.raises(Unavailable) as refused:
            await inbox.put(event("c"), ("h1",))
        assert refused.value.retry_after == 5
        assert await inbox.put(event("a"), ("h1", "h2")) is False

        # a dead letter no longer counts as pending
        [delivery] = await inbox.claim({"h2": 5}, owner="w", lease_seconds=30)
        inbox.dead(delivery.event_id, "h2", owner="w", attempts=12, error="RuntimeError: no")
        await inbox.flush()
        assert inbox.stats().pending == 2
        assert await inbox.put(event("c"), ("h1",)) is True
    finally:
        await inbox.close()


async def test_put_after_close_is_unavailable(tmp_path: Path) -> None:
    inbox = SqliteInbox(tmp_path / "inbox.db")
    await inbox.open()
    await inbox.close()
    assert not inbox.ready()
    with pytest.raises(Unavailable):
        await inbox.put(event("late"), ("sqlite",))
    with pytest.raises(Unavailable):
        await inbox.quarantine(b"{}", "missing_event")


async def test_put_not_durable_in_time_is_unavailable_then_lands(tmp_path: Path) -> None:
    path = tmp_path / "inbox.db"
    inbox = SqliteInbox(path, put_timeout=0.3, busy_timeout=30)
    await inbox.open()
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(Unavailable) as refused:
            await inbox.put(event("stuck"), ("sqlite",))
        assert refused.value.reason == "inbox_timeout"
        assert refused.value.retry_after == 5
        blocker.execute("COMMIT")
        # the write was queued and lands: DT's retry is answered "duplicate"
        assert await inbox.put(event("stuck"), ("sqlite",)) is False
    finally:
        blocker.close()
        await inbox.close()


async def test_open_unusable_path_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(ConfigError, match=r"inbox\.path"):
        await SqliteInbox(tmp_path / "file" / "inbox.db").open()
    (tmp_path / "junk.db").write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(ConfigError, match=r"inbox\.path"):
        await SqliteInbox(tmp_path / "junk.db").open()


async def test_quarantine_is_a_dead_letter_of_quarantine(inbox: SqliteInbox) -> None:
    await inbox.quarantine(b"not json at all", "not_json")
    [letter] = await inbox.list_dead()
    assert letter.handler == QUARANTINE
    assert letter.event_id is None and letter.event_type is None
    assert letter.last_error == "not_json"
    assert letter.raw == b"not json at all"
    assert inbox.stats().dead_letters == {QUARANTINE: 1}
    assert await inbox.list_dead(handler=QUARANTINE) == [letter]
    assert await inbox.replay(all=True) == 0  # a body that is no event cannot be delivered
    assert await inbox.purge() == 1
    assert await inbox.list_dead() == []
    assert inbox.stats().dead_letters == {}


async def test_claim_leases_rows_so_a_second_worker_gets_none_until_expiry(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "inbox.db"
    one = SqliteInbox(path, clock=clock)
    two = SqliteInbox(path, clock=clock)
    await one.open()
    await two.open()
    try:
        assert await one.put(event("shared"), ("sqlite",))
        assert len(await one.claim({"sqlite": 10}, owner="one", lease_seconds=30)) == 1
        assert await two.claim({"sqlite": 10}, owner="two", lease_seconds=30) == []
        clock.now += 31  # the first worker died holding it
        [delivery] = await two.claim({"sqlite": 10}, owner="two", lease_seconds=30)
        assert delivery.event_id == "shared"
        # the late first worker can no longer record a failure over the new owner's lease
        one.retry("shared", "sqlite", owner="one", attempts=1, error="late", delay=0)
        await one.flush()
        assert await one.claim({"sqlite": 10}, owner="one", lease_seconds=30) == []
    finally:
        await one.close()
        await two.close()


async def test_attach_inserts_new_deliveries_leased_to_the_owner(inbox: SqliteInbox) -> None:
    inbox.attach("me", ["sqlite"], lease_seconds=30)
    assert await inbox.put(event("fresh"), ("sqlite", "log"))
    claimed = await inbox.claim({"sqlite": 5, "log": 5}, owner="other", lease_seconds=30)
    assert [(d.event_id, d.handler) for d in claimed] == [("fresh", "log")]
    inbox.release_all("me")
    await inbox.flush()
    [released] = await inbox.claim({"sqlite": 5}, owner="other", lease_seconds=30)
    assert released.event_id == "fresh"


async def test_done_retry_release_record_the_delivery(tmp_path: Path) -> None:
    clock = Clock()
    inbox = SqliteInbox(tmp_path / "inbox.db", clock=clock)
    await inbox.open()
    try:
        await inbox.put(event("x"), ("h",))
        await inbox.put(event("y"), ("h",))
        await inbox.claim({"h": 5}, owner="w", lease_seconds=30)
        inbox.done("x", "h")
        inbox.retry("y", "h", owner="w", attempts=1, error="RuntimeError: boom", delay=10)
        await inbox.flush()
        assert inbox.stats().pending == 1
        assert await inbox.claim({"h": 5}, owner="w", lease_seconds=30) == []
        clock.now += 10
        [again] = await inbox.claim({"h": 5}, owner="w", lease_seconds=30)
        assert (again.event_id, again.attempts) == ("y", 1)
        inbox.release("y", "h", owner="w")
        await inbox.flush()
        [released] = await inbox.claim({"h": 5}, owner="w2", lease_seconds=30)
        assert released.event_id == "y"
    finally:
        await inbox.close()


async def test_prune_forgets_done_events_after_the_dedup_window(tmp_path: Path) -> None:
    clock = Clock()
    inbox = SqliteInbox(tmp_path / "inbox.db", dedup_window_seconds=3600, clock=clock)
    await inbox.open()
    try:
        await inbox.put(event("done"), ("h",))
        await inbox.put(event("pending"), ("h",))
        await inbox.put(event("dead"), ("g",))
        await inbox.claim({"h": 1, "g": 1}, owner="w", lease_seconds=30)  # oldest due first
        inbox.done("done", "h")
        inbox.dead("dead", "g", owner="w", attempts=3, error="RuntimeError: no")
        await inbox.flush()

        clock.now += 3599
        assert await inbox.prune() == 0
        assert await inbox.put(event("done"), ("h",)) is False  # still inside the window

        clock.now += 2
        assert await inbox.prune() == 1
        assert await inbox.put(event("done"), ("h",)) is True  # outside it: accepted again
        assert await inbox.put(event("pending"), ("h",)) is False
        assert await inbox.put(event("dead"), ("g",)) is False
    finally:
        await inbox.close()


async def test_prune_spans_many_events_and_keeps_pending_ones_among_them(tmp_path: Path) -> None:
    clock = Clock()
    inbox = SqliteInbox(tmp_path / "inbox.db", dedup_window_seconds=60, clock=clock)
    await inbox.open()
    try:
        await asyncio.gather(*(inbox.put(event(f"a-{i}"), ()) for i in range(3000)))
        await inbox.put(event("kept"), ("h",))
        await asyncio.gather(*(inbox.put(event(f"b-{i}"), ()) for i in range(3000)))
        clock.now += 61
        assert await inbox.prune() == 6000
        assert await inbox.put(event("kept"), ("h",)) is False
        assert await inbox.put(event("b-2999"), ()) is True
    finally:
        await inbox.close()


async def test_prune_runs_by_itself(tmp_path: Path) -> None:
    clock = Clock()
    inbox = SqliteInbox(
        tmp_path / "inbox.db", dedup_window_seconds=60, clock=clock, prune_interval=0.05
    )
    await inbox.open()
    try:
        await inbox.put(event("old"), ())
        clock.now += 61

        async def forgotten() -> bool:
            return await inbox.newest_received_at() is None

        await until_async(forgotten, within=10, what="the periodic prune")
        assert await inbox.put(event("old"), ()) is True
    finally:
        await inbox.close()


async def test_stats_report_pending_age_and_dead_letters(tmp_path: Path) -> None:
    clock = Clock()
    inbox = SqliteInbox(tmp_path / "inbox.db", clock=clock, stats_interval=0.05)
    await inbox.open()
    try:
        assert inbox.stats().oldest_pending_seconds == 0.0
        await inbox.put(event("old"), ("h",))
        clock.now += 90
        await inbox.put(event("new"), ("h",))
        await inbox.flush()
        await until(  # refreshed by the writer on its own timer
            lambda: inbox.stats().oldest_pending_seconds >= 90, within=10, what="oldest age"
        )
        stats = inbox.stats()
        assert stats.pending == 2
        assert stats.oldest_pending_seconds == pytest.approx(90)
    finally:
        await inbox.close()


async def test_stats_follow_writes_of_another_process(tmp_path: Path) -> None:
    path = tmp_path / "inbox.db"
    ingest = SqliteInbox(path, stats_interval=0.05)
    worker = SqliteInbox(path, stats_interval=0.05)
    await ingest.open()
    await worker.open()
    try:
        await ingest.put(event("e1"), ("h",))
        await ingest.put(event("e2"), ("h",))
        for delivery in await worker.claim({"h": 5}, owner="w", lease_seconds=30):
            worker.done(delivery.event_id, "h")
        await worker.flush()
        await until(lambda: ingest.stats().pending == 0, within=10, what="a recount")
    finally:
        await ingest.close()
        await worker.close()


async def test_replay_selectors_and_purge(inbox: SqliteInbox) -> None:
    await inbox.put(event("t1", "temperature"), ("a", "b"))
    await inbox.put(event("t2", "temperature"), ("a",))
    await inbox.put(event("u1", "touch"), ("a",))
    for delivery in await inbox.claim({"a": 10, "b": 10}, owner="w", lease_seconds=30):
        inbox.dead(delivery.event_id, delivery.handler, owner="w", attempts=12, error="E: x")
    await inbox.flush()
    assert inbox.stats().dead_letters == {"a": 3, "b": 1}
    assert inbox.stats().pending == 0

    with pytest.raises(ValueError):
        await inbox.replay()
    assert [d.event_id for d in await inbox.list_dead(event_type="touch")] == ["u1"]
    assert await inbox.replay(event_type="touch") == 1
    assert await inbox.replay(ids=["t2"]) == 1
    assert await inbox.replay(handler="b") == 1
    assert inbox.stats().dead_letters == {"a": 1}
    assert inbox.stats().pending == 3
    again = await inbox.claim({"a": 10, "b": 10}, owner="w", lease_seconds=30)
    assert sorted((d.event_id, d.handler, d.attempts) for d in again) == [
        ("t1", "b", 0),
        ("t2", "a", 0),
        ("u1", "a", 0),
    ]
    assert await inbox.replay(all=True) == 1
    for delivery in await inbox.claim({"a": 10}, owner="w", lease_seconds=30):
        inbox.dead(delivery.event_id, delivery.handler, owner="w", attempts=12, error="E: y")
    await inbox.flush()
    assert await inbox.purge() == 1
    assert await inbox.list_dead() == []


async def test_backfill_queries_newest_receive_time_and_last_event_per_device(
    tmp_path: Path,
) -> None:
    clock = Clock(1_700_000_000.0)
    inbox = SqliteInbox(tmp_path / "inbox.db", clock=clock)
    await inbox.open()
    try:
        assert await inbox.newest_received_at() is None
        early = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
        late = datetime(2024, 5, 2, 8, 30, tzinfo=UTC)
        await inbox.put(event("d1-late", device_id="dev1", timestamp=late), ())
        clock.now += 60
        await inbox.put(event("d1-early", device_id="dev1", timestamp=early), ())
        await inbox.put(event("d2", device_id="dev2", timestamp=early), ())
        await inbox.quarantine(b"junk", "not_json")
        assert await inbox.newest_received_at() == datetime.fromtimestamp(1_700_000_060.0, tz=UTC)
        assert await inbox.last_event_time_by_device() == {"dev1": late, "dev2": early}
    finally:
        await inbox.close()
