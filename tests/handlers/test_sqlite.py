"""The built-in `sqlite` handler: columns, idempotency, newest-wins `latest`, grouped commits."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.sqlite import SCHEMA, SqliteHandler, utc_text
from receiver.errors import HandlerError
from receiver.events import Event
from tests.handlers.samples import KEYS, SAMPLE_TYPES, TIMES, body, sample, variant


def query(path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(sql, args).fetchall()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteHandler]:
    handler = SqliteHandler(path=str(tmp_path / "events.db"))
    handler.name = "sqlite"
    await handler.start()
    yield handler
    await handler.close()


@pytest.mark.parametrize("event_type", SAMPLE_TYPES)
async def test_sqlite_sample_of_each_type_is_stored_with_its_columns(
    store: SqliteHandler, event_type: str
) -> None:
    event = sample(event_type)
    before = utc_text(datetime.now(UTC))
    await store.handle(event)
    after = utc_text(datetime.now(UTC))

    [row] = query(store.path, "SELECT * FROM events")
    event_id, type_, device, project, timestamp, received_at, labels, data = row
    pushed = orjson.loads(body(event_type))
    assert event_id == pushed["event"]["eventId"]
    assert type_ == event_type
    assert device == pushed["metadata"]["deviceId"]
    assert project == pushed["metadata"]["projectId"]
    assert timestamp == utc_text(event.timestamp)
    assert timestamp.endswith("Z")
    assert before <= received_at <= after
    assert orjson.loads(labels) == pushed["labels"]
    assert orjson.loads(data) == pushed["event"]["data"]
    assert isinstance(data, str)

    latest = query(
        store.path, "SELECT device_id, event_type, event_id, timestamp, data FROM latest"
    )
    assert latest == [(device, event_type, event_id, timestamp, data)]


def test_utc_text_is_fixed_width_utc_with_microseconds() -> None:
    whole = datetime(2025, 5, 8, 7, 53, 2, tzinfo=UTC)
    offset = datetime(2025, 5, 8, 9, 53, 2, 5, tzinfo=timezone(timedelta(hours=2)))
    early = datetime(999, 1, 1, tzinfo=UTC)
    assert utc_text(whole) == "2025-05-08T07:53:02.000000Z"
    assert utc_text(offset) == "2025-05-08T07:53:02.000005Z"
    assert utc_text(early) == "0999-01-01T00:00:00.000000Z"


async def test_sqlite_redelivered_event_changes_nothing(store: SqliteHandler) -> None:
    event = sample("temperature")
    await store.handle(event)
    first = query(store.path, "SELECT * FROM events")
    latest = query(store.path, "SELECT * FROM latest")
    altered = variant(
        "temperature",
        event_id=event.event_id,
        timestamp=event.timestamp + timedelta(hours=1),
        data={"temperature": {"value": 99}},
    )
    await store.handle(event)
    await store.handle(altered)
    assert query(store.path, "SELECT * FROM events") == first
    assert query(store.path, "SELECT * FROM latest") == latest


async def test_sqlite_older_event_does_not_replace_latest(store: SqliteHandler) -> None:
    now = datetime(2024, 1, 1, 12, tzinfo=UTC)
    newer = variant("touch", event_id="newer", timestamp=now)
    older = variant("touch", event_id="older", timestamp=now - timedelta(microseconds=1))
    await store.handle(newer)
    await store.handle(older)
    assert query(store.path, "SELECT event_id FROM latest") == [("newer",)]
    assert query(store.path, "SELECT count(*) FROM events") == [(2,)]


@settings(max_examples=40, deadline=None)
@given(
    times=st.tuples(*(st.lists(TIMES, min_size=1, max_size=6, unique=True) for _ in KEYS)),
    order=st.randoms(use_true_random=False),
    chunk=st.integers(min_value=1, max_value=24),
    batched=st.booleans(),
)
def test_sqlite_latest_is_newest_per_device_and_type_in_any_delivery_order(
    times: tuple[list[datetime], ...], order: Any, chunk: int, batched: bool
) -> None:
    events: list[Event] = []
    newest: dict[tuple[str, str], tuple[str, str]] = {}
    for (device, type_), stamps in zip(KEYS, times, strict=True):
        for i, stamp in enumerate(stamps):
            event_id = f"{device}-{type_}-{i}"
            events.append(variant(type_, event_id=event_id, device_id=device, timestamp=stamp))
        top = max(range(len(stamps)), key=lambda i: stamps[i])
        newest[(device, type_)] = (f"{device}-{type_}-{top}", utc_text(stamps[top]))
    order.shuffle(events)

    async def deliver(path: Path) -> None:
        handler = SqliteHandler(path=path)
        await handler.start()
        try:  # some concurrently (one transaction), some one after the other
            for start in range(0, len(events), chunk):
                some = events[start : start + chunk]
                if batched:
                    await handler.handle_batch(some)
                else:
                    await asyncio.gather(*(handler.handle(e) for e in some))
        finally:
            await handler.close()

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "events.db"
        asyncio.run(deliver(path))
        latest = query(path, "SELECT device_id, event_type, event_id, timestamp FROM latest")
        stored = query(path, "SELECT count(*) FROM events")
    assert {(d, t): (i, s) for d, t, i, s in latest} == newest
    assert stored == [(len(events),)]


async def test_sqlite_concurrent_events_all_committed_in_fewer_commits(
    store: SqliteHandler,
) -> None:
    events = [variant("touch", event_id=f"burst-{i:04d}") for i in range(1000)]
    await asyncio.gather(*(store.handle(e) for e in events))
    assert query(store.path, "SELECT count(*) FROM events") == [(1000,)]
    assert 1 <= store.commits < 1000


async def test_sqlite_batch_of_any_size_stores_each_event_once_in_one_commit(
    store: SqliteHandler,
) -> None:
    for size in (1, 3, 64, 85, 300):  # rows go in statements of 64, 16, 4 and 1
        events = [variant("co2", event_id=f"batch{size}-{i:03d}") for i in range(size)]
        before = store.commits
        await store.handle_batch([*events, events[0]])  # one repeated: still stored once
        assert store.commits == before + 1
    stored = query(store.path, "SELECT count(*), count(DISTINCT event_id) FROM events")
    assert stored == [(453, 453)]


async def test_sqlite_events_survive_reopen_and_stay_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    event = sample("humidity")
    first = SqliteHandler(path=path)
    await first.start()
    await first.handle(event)
    await first.close()

    second = SqliteHandler(path=path)
    await second.start()
    await second.handle(event)
    await second.handle(sample("touch"))
    await second.close()
    assert query(path, "SELECT event_id FROM events ORDER BY event_type") == [
        (event.event_id,),
        (sample("touch").event_id,),
    ]


async def test_sqlite_database_is_in_wal_mode(store: SqliteHandler) -> None:
    assert query(store.path, "PRAGMA journal_mode") == [("wal",)]


async def test_sqlite_missing_parent_directories_are_created(tmp_path: Path) -> None:
    handler = SqliteHandler(path=tmp_path / "a" / "b" / "events.db")
    await handler.start()
    await handler.handle(sample("touch"))
    await handler.close()
    assert query(tmp_path / "a" / "b" / "events.db", "SELECT count(*) FROM events") == [(1,)]


async def test_sqlite_ready_only_between_start_and_close(tmp_path: Path) -> None:
    handler = SqliteHandler(path=tmp_path / "events.db")
    assert not handler.ready()
    await handler.start()
    assert handler.ready()
    await handler.close()
    assert not handler.ready()


async def test_sqlite_unopenable_path_fails_start_and_is_not_ready(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    handler = SqliteHandler(path=tmp_path / "file" / "events.db")
    handler.name = "sqlite"
    with pytest.raises(HandlerError, match="handler 'sqlite': cannot open"):
        await handler.start()
    assert not handler.ready()


async def test_sqlite_handle_after_close_is_refused(tmp_path: Path) -> None:
    handler = SqliteHandler(path=tmp_path / "events.db")
    await handler.start()
    await handler.close()
    with pytest.raises(RuntimeError, match="not running"):
        await handler.handle(sample("touch"))


async def test_sqlite_failed_write_fails_its_events_then_recovers(store: SqliteHandler) -> None:
    with sqlite3.connect(store.path) as connection:
        connection.execute("DROP TABLE events")
    with pytest.raises(RuntimeError, match="sqlite write failed: no such table: events"):
        await store.handle(sample("touch"))
    assert not store.ready()
    assert query(store.path, "SELECT count(*) FROM latest") == [(0,)]  # rolled back together

    with sqlite3.connect(store.path) as connection:
        connection.executescript(SCHEMA)
    await store.handle(sample("touch"))
    assert store.ready()
    assert query(store.path, "SELECT count(*) FROM events") == [(1,)]


@pytest.mark.parametrize("path", ["", 3, None])
def test_sqlite_path_option_that_is_not_a_path_is_refused(path: Any) -> None:
    with pytest.raises(ValueError, match=r"^path: expected a file path"):
        SqliteHandler(path=path)
