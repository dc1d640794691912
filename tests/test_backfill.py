"""Backfill from DT's event history (emulator) into the inbox, and `dtpush backfill`."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from receiver.app import SERVICE_KEY, create_app
from receiver.backfill import (
    OVERLAP,
    Backfill,
    Progress,
    needs_startup_backfill,
    outage_window,
    parse_time,
    push_body,
)
from receiver.cli import build_parser
from receiver.commands import backfill as backfill_command
from receiver.dt import Device
from receiver.events import Event, parse
from receiver.inbox.sqlite import SqliteInbox
from receiver.metrics import Metrics
from tests.emulated import Cloud, emulated_cloud
from tests.recording import RecordingHandler

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


# -- pure ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("12h", NOW - timedelta(hours=12)),
        ("7d", NOW - timedelta(days=7)),
        ("90s", NOW - timedelta(seconds=90)),
        ("1.5h", NOW - timedelta(minutes=90)),
        ("2024-04-30T08:15:00Z", datetime(2024, 4, 30, 8, 15, tzinfo=UTC)),
        ("2024-04-30T10:15:00.250+02:00", datetime(2024, 4, 30, 8, 15, 0, 250000, tzinfo=UTC)),
    ],
)
def test_parse_time_takes_rfc3339_or_a_duration_back_from_now(
    text: str, expected: datetime
) -> None:
    parsed = parse_time(text, NOW)
    assert parsed == expected and parsed.tzinfo is not None


@pytest.mark.parametrize(
    "text", ["", "yesterday", "12x", "-3h", "h", "2024-04-30T08:15:00", "2024-04-30", "3 days"]
)
def test_parse_time_refuses_anything_else_saying_what_it_takes(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339 .* 30m, 12h or 7d"):
        parse_time(text, NOW)


def test_needs_startup_backfill_only_beyond_dts_12_hour_horizon() -> None:
    assert not needs_startup_backfill(None, NOW)  # an empty inbox: nothing
    assert not needs_startup_backfill(NOW - timedelta(hours=11, minutes=59), NOW)
    assert needs_startup_backfill(NOW - timedelta(hours=12, seconds=1), NOW)


def test_outage_window_reaches_back_to_a_devices_older_newest_event_with_overlap() -> None:
    early, late = NOW - timedelta(hours=5), NOW - timedelta(minutes=5)
    reference = NOW - timedelta(hours=1)
    since, starts = outage_window(reference, {"a": early, "b": late})
    assert since == reference - OVERLAP == NOW - timedelta(hours=1, minutes=15)
    assert starts == {"a": early - OVERLAP}


DEVICE = Device(
    {
        "name": "projects/p1/devices/emu123",
        "type": "temperature",
        "labels": {"name": "Fridge 3", "room": "kitchen", "secret-ish": "x"},
        "productNumber": "102081",
    }
)
HISTORY_EVENT = {
    "eventId": "c82gg9catj3vmh4248og",
    "targetName": "projects/p1/devices/emu123",
    "eventType": "temperature",
    "data": {"temperature": {"value": 21.5, "updateTime": "2024-05-01T11:00:00.000000Z"}},
    "timestamp": "2024-05-01T11:00:00.000000Z",
}


def test_push_body_has_dts_push_shape_with_only_the_connectors_label_keys() -> None:
    body = push_body(HISTORY_EVENT, DEVICE, ["name", "room", "absent"])
    assert orjson.loads(body) == {
        "event": HISTORY_EVENT,
        "labels": {"name": "Fridge 3", "room": "kitchen"},
        "metadata": {
            "deviceId": "emu123",
            "projectId": "p1",
            "deviceType": "temperature",
            "productNumber": "102081",
        },
    }
    event = parse(body)
    assert (event.event_id, event.device_id, event.project_id) == (
        "c82gg9catj3vmh4248og",
        "emu123",
        "p1",
    )
    assert event.data.celsius == 21.5


# -- against the emulator ------------------------------------------------------------------


@dataclass
class Store:
    """`accept` into a real SQLite inbox, remembering what was new."""

    inbox: SqliteInbox
    new: list[Event] = field(default_factory=list)
    calls: int = 0

    async def __call__(self, event: Event) -> bool:
        self.calls += 1
        added = await self.inbox.put(event, ["recorder"])
        if added:
            self.new.append(event)
        return added


@pytest.fixture
async def cloud() -> AsyncIterator[Cloud]:
    async with emulated_cloud() as c:
        yield c


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    inbox = SqliteInbox(tmp_path / "inbox.db")
    await inbox.open()
    try:
        yield Store(inbox)
    finally:
        await inbox.close()


def history(
    cloud: Cloud, start: datetime, end: datetime, types: tuple[str, ...] = ()
) -> dict[str, dict[str, Any]]:
    """The emulator's own record: every event in the window, by id."""
    return {
        event["eventId"]: event
        for device in cloud.emu.state.list_devices(cloud.project_id)
        for event in device.history(start.timestamp(), end.timestamp(), types)
    }


def make_backfill(cloud: Cloud, store: Store, **options: Any) -> Backfill:
    options.setdefault("labels", ("name",))
    return Backfill(cloud.client, project_id=cloud.project_id, accept=store, **options)


async def test_backfill_fetches_every_event_of_the_window_once_and_counts_the_new_ones(
    cloud: Cloud, store: Store
) -> None:
    until = datetime.now(UTC)
    since = until - timedelta(hours=6)
    expected = history(cloud, since, until)
    metrics = Metrics(CollectorRegistry())
    backfill = make_backfill(cloud, store, metrics=metrics)

    first = await backfill.run(since, until)
    second = await backfill.run(since, until)

    assert len(expected) > 50
    assert sorted(e.event_id for e in store.new) == sorted(expected)
    assert (first.fetched, first.new, first.devices) == (len(expected), len(expected), 13)
    assert (second.fetched, second.new) == (len(expected), 0)
    assert metrics.registry.get_sample_value("dtpush_backfilled_events_total") == len(expected)


async def test_backfill_does_not_duplicate_events_already_in_the_inbox(
    cloud: Cloud, store: Store
) -> None:
    until = datetime.now(UTC)
    since = until - timedelta(hours=4)
    expected = history(cloud, since, until)
    devices = {d.id: Device(d.to_json()) for d in cloud.emu.state.list_devices(cloud.project_id)}
    held = sorted(expected)[::3]
    for event_id in held:  # as if DT had pushed these
        event = expected[event_id]
        device = devices[event["targetName"].rsplit("/", 1)[1]]
        assert await store.inbox.put(parse(push_body(event, device, ["name"])), ["recorder"])

    result = await make_backfill(cloud, store).run(since, until)

    assert result.new == len(expected) - len(held)
    assert {e.event_id for e in store.new} == set(expected) - set(held)


async def test_backfill_follows_every_page_of_the_history(cloud: Cloud, store: Store) -> None:
    until = datetime.now(UTC)
    since = until - timedelta(hours=3)
    backfill = make_backfill(cloud, store, page_size=2)
    cloud.requests.clear()

    result = await backfill.run(since, until)

    assert result.new == len(history(cloud, since, until))
    page_tokens = [s for s in cloud.requests.api("GET") if s.param("pageToken")]
    assert len(page_tokens) > 13


async def test_backfill_fetches_only_the_event_types_the_connector_forwards(
    cloud: Cloud, store: Store
) -> None:
    until = datetime.now(UTC)
    since = until - timedelta(hours=12)
    types = ("temperature", "touch")

    await make_backfill(cloud, store, event_types=types).run(since, until)

    assert {e.event_type for e in store.new} == set(types)
    assert sorted(e.event_id for e in store.new) == sorted(history(cloud, since, until, types))


async def test_backfill_bodies_carry_the_devices_labels_and_metadata_like_a_push(
    cloud: Cloud, store: Store
) -> None:
    until = datetime.now(UTC)
    await make_backfill(cloud, store, labels=("name", "room")).run(
        until - timedelta(hours=2), until
    )

    devices = {d.id: d for d in cloud.emu.state.list_devices(cloud.project_id)}
    assert store.new
    for event in store.new:
        device = devices[event.device_id]
        wanted = {k: v for k, v in device.labels.items() if k in ("name", "room")}
        assert event.labels == wanted
        assert event.metadata is not None
        assert (event.metadata.device_type, event.project_id) == (device.type, cloud.project_id)
        assert (
            orjson.loads(event.raw)["event"]
            == history(cloud, until - timedelta(hours=2), until)[event.event_id]
        )


async def test_backfill_per_device_start_reaches_further_back_for_that_device_only(
    cloud: Cloud, store: Store
) -> None:
    until = datetime.now(UTC)
    since = until - timedelta(hours=1)
    device = next(
        d for d in cloud.emu.state.list_devices(cloud.project_id) if d.type == "temperature"
    )
    early = until - timedelta(hours=6)

    await make_backfill(cloud, store).run(since, until, since_by_device={device.id: early})

    expected = set(history(cloud, since, until)) | {
        e["eventId"] for e in device.history(early.timestamp(), until.timestamp())
    }
    assert {e.event_id for e in store.new} == expected


async def test_backfill_reports_progress_after_each_device(cloud: Cloud, store: Store) -> None:
    seen: list[Progress] = []
    until = datetime.now(UTC)

    result = await make_backfill(cloud, store, progress=seen.append).run(
        until - timedelta(hours=2), until
    )

    assert [p.devices_done for p in seen] == list(range(1, 14))
    assert {p.devices_total for p in seen} == {13}
    assert (seen[-1].fetched, seen[-1].new) == (result.fetched, result.new)
    assert [p.new for p in seen] == sorted(p.new for p in seen)


Client = TestClient[web.Request, web.Application]


async def test_backfill_through_the_service_delivers_to_the_handlers(
    cloud: Cloud,
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    recorder = RecordingHandler()
    app = create_app(
        cloud.settings(tmp_path), registry=CollectorRegistry(), handlers={"recorder": recorder}
    )
    service = (await aiohttp_client(app)).app[SERVICE_KEY]
    until = datetime.now(UTC)
    since = until - timedelta(hours=2)
    expected = history(cloud, since, until)
    backfill = Backfill.from_settings(
        cloud.client, service.settings, accept=service.accept, metrics=service.metrics
    )

    await backfill.run(since, until)
    await backfill.run(since, until)

    handled = await recorder.wait_for(len(expected))
    assert sorted(recorder.ids) == sorted(expected)
    assert len(handled) == len(expected)
    value = service.metrics.registry.get_sample_value("dtpush_backfilled_events_total")
    assert value == len(expected)


# -- dtpush backfill ------------------------------------------------------------------------


def run_command(env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(["backfill", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = backfill_command.run(args, environ=env, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


async def test_backfill_command_writes_the_window_into_the_inbox_with_progress(
    cloud: Cloud, tmp_path: Path
) -> None:
    env = cloud.env(tmp_path)
    until = datetime.now(UTC).replace(microsecond=0)
    stamp = until.isoformat().replace("+00:00", "Z")
    expected = history(cloud, until - timedelta(hours=5), until)

    code, out, err = await asyncio.to_thread(run_command, env, "--since", "5h", "--until", stamp)
    assert (code, out.strip()) == (
        0,
        f"backfill: 13 devices, {len(expected)} events fetched, {len(expected)} new "
        f"written to the inbox ({tmp_path / 'inbox.db'})",
    )
    progress = err.strip().splitlines()
    assert len(progress) == 13
    assert (
        progress[-1]
        == f"backfill: 13/13 devices, {len(expected)} events fetched, {len(expected)} new"
    )

    code, out, _ = await asyncio.to_thread(run_command, env, "--since", "5h", "--until", stamp)
    assert code == 0 and f"{len(expected)} events fetched, 0 new" in out

    inbox = SqliteInbox(tmp_path / "inbox.db")
    await inbox.open()
    try:
        assert inbox.stats().pending == len(expected)  # one sqlite delivery each, for serve
    finally:
        await inbox.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--since", "last week"], "dtpush: error: --since: 'last week' is neither"),
        (["--since", "1h", "--until", "2h"], "dtpush: error: --since: must be before --until"),
        (["--since", "1h", "--until", "soon"], "dtpush: error: --until: 'soon' is neither"),
    ],
)
async def test_backfill_command_bad_times_exit_2_naming_the_flag(
    cloud: Cloud, tmp_path: Path, argv: list[str], message: str
) -> None:
    code, out, err = await asyncio.to_thread(run_command, cloud.env(tmp_path), *argv)
    assert (code, out) == (2, "")
    assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "inbox.db").exists()


async def test_backfill_command_without_project_exits_2_naming_the_setting(
    cloud: Cloud, tmp_path: Path
) -> None:
    env = {k: v for k, v in cloud.env(tmp_path).items() if k != "DTPUSH_CONNECTOR_PROJECT_ID"}
    code, _, err = await asyncio.to_thread(run_command, env, "--since", "1h")
    assert code == 2
    assert err.startswith("dtpush: error: connector.project_id: not set")


async def test_backfill_command_when_dt_is_unreachable_exits_1(tmp_path: Path) -> None:
    async with emulated_cloud() as gone:
        env = gone.env(tmp_path)
    code, _, err = await asyncio.to_thread(run_command, env, "--since", "1h")
    assert code == 1
    assert err.startswith("dtpush: error: dt api: cannot connect")
