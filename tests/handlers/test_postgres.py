"""The built-in `postgres` handler against the real PostgreSQL on loopback (spec §11, §13)."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from handlers.postgres import PostgresHandler, mask_dsn
from receiver.app import create_app
from receiver.config import load_settings
from receiver.errors import HandlerError
from receiver.events import Event
from receiver.registry import load_handlers
from receiver.testing import Signer, make_event_body
from tests.handlers.samples import KEYS, SAMPLE_TYPES, TIMES, body, sample, variant
from tests.services import TcpRelay, free_port, needs
from tests.waiting import until, until_async

DSN = os.environ.get("DTPUSH_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
PORT = urlsplit(DSN).port or 5432

pytestmark = needs("PostgreSQL", PORT)

PASSWORD = "pw-Secret-4711"  # trust authentication on loopback ignores it; it must never show


def with_password(dsn: str, password: str = PASSWORD, port: int | None = None) -> str:
    parts = urlsplit(dsn)
    host = f"{parts.hostname}:{port or parts.port or 5432}"
    netloc = f"{parts.username or 'postgres'}:{password}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def new_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}_"


async def fetch(sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(DSN)
    try:
        return await connection.fetch(sql, *args)
    finally:
        await connection.close()


async def drop(prefix: str) -> None:
    await fetch(f"DROP TABLE IF EXISTS {prefix}events, {prefix}latest")


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    chosen = new_prefix()
    yield chosen
    await drop(chosen)


@pytest.fixture
async def store(prefix: str) -> AsyncIterator[PostgresHandler]:
    handler = PostgresHandler(dsn=DSN, table_prefix=prefix)
    handler.name = "postgres"
    await handler.start()
    yield handler
    await handler.close()


@pytest.mark.parametrize("event_type", SAMPLE_TYPES)
async def test_postgres_sample_of_each_type_is_stored_with_its_columns(
    store: PostgresHandler, prefix: str, event_type: str
) -> None:
    event = sample(event_type)
    before = datetime.now(UTC)
    await store.handle(event)
    after = datetime.now(UTC)

    [row] = await fetch(f"SELECT * FROM {prefix}events")
    pushed = orjson.loads(body(event_type))
    assert row["event_id"] == pushed["event"]["eventId"]
    assert row["event_type"] == event_type
    assert row["device_id"] == pushed["metadata"]["deviceId"]
    assert row["project_id"] == pushed["metadata"]["projectId"]
    assert row["timestamp"] == event.timestamp
    assert row["timestamp"].tzinfo is not None
    assert before <= row["received_at"] <= after
    assert orjson.loads(row["labels"]) == pushed["labels"]
    assert orjson.loads(row["data"]) == pushed["event"]["data"]

    types = await fetch(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1",
        f"{prefix}events",
    )
    assert {r["column_name"]: r["data_type"] for r in types} == {
        "event_id": "text",
        "event_type": "text",
        "device_id": "text",
        "project_id": "text",
        "timestamp": "timestamp with time zone",
        "received_at": "timestamp with time zone",
        "labels": "jsonb",
        "data": "jsonb",
    }
    latest = await fetch(
        f"SELECT device_id, event_type, event_id, timestamp, data FROM {prefix}latest"
    )
    assert [tuple(r) for r in latest] == [
        (row["device_id"], event_type, row["event_id"], row["timestamp"], row["data"])
    ]


async def test_postgres_jsonb_data_can_be_queried_by_field(
    store: PostgresHandler, prefix: str
) -> None:
    await store.handle(sample("temperature"))
    pushed = orjson.loads(body("temperature"))
    [value] = await fetch(f"SELECT data->'temperature'->'value' AS v FROM {prefix}events")
    assert orjson.loads(value["v"]) == pushed["event"]["data"]["temperature"]["value"]


async def test_postgres_redelivered_event_changes_nothing(
    store: PostgresHandler, prefix: str
) -> None:
    event = sample("temperature")
    await store.handle(event)
    first = await fetch(f"SELECT * FROM {prefix}events")
    latest = await fetch(f"SELECT * FROM {prefix}latest")
    altered = variant(
        "temperature",
        event_id=event.event_id,
        timestamp=event.timestamp + timedelta(hours=1),
        data={"temperature": {"value": 99}},
    )
    await store.handle(event)
    await store.handle(altered)
    await asyncio.gather(store.handle(event), store.handle(altered))  # one batch, twice
    assert await fetch(f"SELECT * FROM {prefix}events") == first
    assert await fetch(f"SELECT * FROM {prefix}latest") == latest


async def test_postgres_older_event_does_not_replace_latest(
    store: PostgresHandler, prefix: str
) -> None:
    now = datetime(2024, 1, 1, 12, tzinfo=UTC)
    newer = variant("touch", event_id="newer", timestamp=now)
    older = variant("touch", event_id="older", timestamp=now - timedelta(microseconds=1))
    await store.handle(newer)
    await store.handle(older)
    assert [tuple(r) for r in await fetch(f"SELECT event_id FROM {prefix}latest")] == [("newer",)]
    assert [tuple(r) for r in await fetch(f"SELECT count(*) FROM {prefix}events")] == [(2,)]


@settings(max_examples=15, deadline=None)
@given(
    times=st.tuples(*(st.lists(TIMES, min_size=1, max_size=5, unique=True) for _ in KEYS)),
    order=st.randoms(use_true_random=False),
    chunk=st.integers(min_value=1, max_value=8),
)
def test_postgres_latest_is_newest_per_device_and_type_in_any_delivery_order(
    times: tuple[list[datetime], ...], order: Any, chunk: int
) -> None:
    events: list[Event] = []
    newest: dict[tuple[str, str], tuple[str, datetime]] = {}
    for (device, type_), stamps in zip(KEYS, times, strict=True):
        for i, stamp in enumerate(stamps):
            event_id = f"{device}-{type_}-{i}"
            events.append(variant(type_, event_id=event_id, device_id=device, timestamp=stamp))
        top = max(range(len(stamps)), key=lambda i: stamps[i])
        newest[(device, type_)] = (f"{device}-{type_}-{top}", stamps[top])
    order.shuffle(events)

    async def deliver(prefix: str) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
        handler = PostgresHandler(dsn=DSN, table_prefix=prefix)
        await handler.start()
        try:  # some concurrently (one transaction), some one after the other
            for start in range(0, len(events), chunk):
                await asyncio.gather(*(handler.handle(e) for e in events[start : start + chunk]))
            return (
                await fetch(
                    f"SELECT device_id, event_type, event_id, timestamp FROM {prefix}latest"
                ),
                await fetch(f"SELECT count(*) FROM {prefix}events"),
            )
        finally:
            await handler.close()
            await drop(prefix)

    latest, stored = asyncio.run(deliver(new_prefix()))
    assert {(r[0], r[1]): (r[2], r[3]) for r in latest} == newest
    assert stored[0][0] == len(events)


async def test_postgres_concurrent_events_all_committed_in_fewer_transactions(
    store: PostgresHandler, prefix: str
) -> None:
    events = [variant("touch", event_id=f"burst-{i:04d}") for i in range(300)]
    await asyncio.gather(*(store.handle(e) for e in events))
    assert (await fetch(f"SELECT count(*) FROM {prefix}events"))[0][0] == 300
    assert 1 <= store.commits < 300
    assert store.commits >= 300 // store.batch_size


async def test_postgres_batch_size_bounds_each_transaction(prefix: str) -> None:
    handler = PostgresHandler(dsn=DSN, table_prefix=prefix, batch_size="10")
    await handler.start()
    try:
        events = [variant("touch", event_id=f"small-{i:03d}") for i in range(50)]
        await asyncio.gather(*(handler.handle(e) for e in events))
    finally:
        await handler.close()
    assert handler.batch_size == 10
    assert handler.commits >= 5
    assert (await fetch(f"SELECT count(*) FROM {prefix}events"))[0][0] == 50


async def test_postgres_batch_call_commits_all_its_events_in_one_transaction(
    store: PostgresHandler, prefix: str
) -> None:
    assert store.takes_batches and store.max_batch == store.batch_size == 100
    events = [variant("co2", event_id=f"batch-{i:03d}") for i in range(100)]
    before = store.commits
    await store.handle_batch([*events[:60], events[0]])  # one repeated: still stored once
    await store.handle_batch(events[60:])
    assert store.commits == before + 2
    assert (await fetch(f"SELECT count(*) FROM {prefix}events"))[0][0] == 100


async def test_postgres_events_survive_restart_and_stay_idempotent(prefix: str) -> None:
    event = sample("humidity")
    first = PostgresHandler(dsn=DSN, table_prefix=prefix)
    await first.start()
    await first.handle(event)
    await first.close()

    second = PostgresHandler(dsn=DSN, table_prefix=prefix)
    await second.start()
    await second.handle(event)
    await second.handle(sample("touch"))
    await second.close()
    rows = await fetch(f"SELECT event_id FROM {prefix}events ORDER BY event_type")
    assert [r[0] for r in rows] == [event.event_id, sample("touch").event_id]


async def test_postgres_ready_only_between_start_and_close(prefix: str) -> None:
    handler = PostgresHandler(dsn=DSN, table_prefix=prefix)
    assert not handler.ready()
    await handler.start()
    assert handler.ready()
    await handler.close()
    assert not handler.ready()
    with pytest.raises(RuntimeError, match="not running"):
        await handler.handle(sample("touch"))


async def test_postgres_unreachable_database_fails_start_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dsn = with_password(DSN, port=free_port())
    handler = PostgresHandler(dsn=dsn)
    handler.name = "postgres"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(HandlerError, match="handler 'postgres': cannot connect to") as caught:
        await handler.start()
    assert not handler.ready()
    assert PASSWORD not in str(caught.value)
    assert "***" in str(caught.value)
    assert PASSWORD not in repr(handler)
    assert PASSWORD not in caplog.text


async def test_postgres_failed_write_fails_its_events_then_recovers(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    handler = PostgresHandler(dsn=with_password(DSN), table_prefix=prefix)
    handler.name = "postgres"
    caplog.set_level(logging.DEBUG)
    await handler.start()
    try:
        assert PASSWORD not in repr(handler)
        await fetch(f"DROP TABLE {prefix}events")
        with pytest.raises(RuntimeError, match=r"postgres write failed: .*does not exist") as err:
            await handler.handle(sample("touch"))
        assert PASSWORD not in str(err.value)
        assert not handler.ready()
        assert (await fetch(f"SELECT count(*) FROM {prefix}latest"))[0][0] == 0

        await fetch(
            f"CREATE TABLE {prefix}events (event_id text PRIMARY KEY, event_type text NOT NULL,"
            " device_id text NOT NULL, project_id text NOT NULL, timestamp timestamptz NOT NULL,"
            " received_at timestamptz NOT NULL, labels jsonb NOT NULL, data jsonb NOT NULL)"
        )
        await until(handler.ready, within=15, what="the probe to find the table again")
        await handler.handle(sample("touch"))
        assert (await fetch(f"SELECT count(*) FROM {prefix}events"))[0][0] == 1
    finally:
        await handler.close()
    assert "postgres_write_failed" in caplog.text
    assert PASSWORD not in caplog.text


async def test_postgres_outage_fails_handle_and_readiness_until_it_is_back(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with TcpRelay(PORT) as relay:
        handler = PostgresHandler(dsn=with_password(DSN, port=relay.port), table_prefix=prefix)
        await handler.start()
        try:
            await handler.handle(variant("touch", event_id="before"))
            await relay.cut()
            with pytest.raises(RuntimeError, match="postgres write failed"):
                await handler.handle(variant("touch", event_id="during"))
            assert not handler.ready()

            await relay.restore()
            await until(handler.ready, within=15, what="the handler to see the database again")
            await handler.handle(variant("touch", event_id="during"))
        finally:
            await handler.close()
    rows = await fetch(f"SELECT event_id FROM {prefix}events ORDER BY event_id")
    assert [r[0] for r in rows] == ["before", "during"]
    assert PASSWORD not in caplog.text


def test_postgres_mask_dsn_hides_passwords_only() -> None:
    assert mask_dsn("postgresql://u:p%40ss@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert mask_dsn("postgres://u@db/x") == "postgres://u@db/x"
    assert mask_dsn("postgresql://db/x?user=u&password=pw") == (
        "postgresql://db/x?user=u&password=***"
    )


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"dsn": ""}, r"^dsn: expected postgresql://"),
        ({"dsn": "mysql://u:hunter2@h/x"}, r"^dsn: expected a postgresql:// or postgres:// URL"),
        ({"dsn": "postgresql://u:hunter2@h:99999/x"}, r"^dsn: the port is not a number"),
        ({"dsn": DSN, "table_prefix": "x; DROP TABLE y; --"}, r"^table_prefix: expected"),
        ({"dsn": DSN, "table_prefix": "Dt_"}, r"^table_prefix: expected"),
        ({"dsn": DSN, "table_prefix": "1a"}, r"^table_prefix: expected"),
        ({"dsn": DSN, "batch_size": 0}, r"^batch_size: expected a whole number from 1 to"),
        ({"dsn": DSN, "batch_size": "many"}, r"^batch_size: expected a whole number"),
        ({"dsn": DSN, "batch_size": True}, r"^batch_size: expected a whole number"),
    ],
)
def test_postgres_bad_options_are_refused_naming_the_option(
    options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        PostgresHandler(**options)
    assert "hunter2" not in str(caught.value)


def test_postgres_options_from_the_environment_are_coerced() -> None:
    handlers = load_handlers(
        ["postgres"], {"postgres": {"dsn": DSN, "table_prefix": "dt_", "batch_size": "25"}}
    )
    handler = handlers["postgres"]
    assert isinstance(handler, PostgresHandler)
    assert (handler.name, handler.table_prefix, handler.batch_size) == ("postgres", "dt_", 25)


def test_postgres_bad_option_through_the_registry_names_the_setting() -> None:
    with pytest.raises(HandlerError, match=r"handlers\.postgres\.batch_size: expected"):
        load_handlers(["postgres"], {"postgres": {"dsn": DSN, "batch_size": "-1"}})
    with pytest.raises(HandlerError, match=r"missing option handlers\.postgres\.dsn"):
        load_handlers(["postgres"], {"postgres": {}})


SECRET = "postgres-test-secret-0123456789abcdef"
Client = TestClient[web.Request, web.Application]


async def test_postgres_signed_pushes_through_the_app_are_stored(
    aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path, prefix: str
) -> None:
    settings = load_settings(
        env={"DTPUSH_VERIFY_SECRETS": SECRET, "DTPUSH_INBOX_PATH": str(tmp_path / "inbox.db")},
        cwd=tmp_path,
    )
    handlers = load_handlers(
        ["postgres"], {"postgres": {"dsn": with_password(DSN), "table_prefix": prefix}}
    )
    client = await aiohttp_client(
        create_app(settings, registry=CollectorRegistry(), handlers=handlers)
    )
    signer = Signer(SECRET)
    sent = []
    for event_type in ("temperature", "touch", "humidity", "objectPresent"):
        push = make_event_body(event_type)
        answer = await client.post(
            settings.server.path,
            data=push,
            headers={"Content-Type": "application/json", **signer.headers(push)},
        )
        assert answer.status == 200, await answer.text()
        sent.append(orjson.loads(push)["event"])

    async def all_stored() -> bool:
        rows = await fetch(f"SELECT count(*) FROM {prefix}events")
        return bool(rows[0][0] == len(sent))

    await until_async(all_stored, within=20, what="every push to reach PostgreSQL")
    rows = await fetch(f"SELECT event_id, data FROM {prefix}events")
    assert {r["event_id"]: orjson.loads(r["data"]) for r in rows} == {
        e["eventId"]: e["data"] for e in sent
    }
    ready = await client.get("/readyz")
    assert ready.status == 200, await ready.text()
