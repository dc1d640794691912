"""The connector monitor against the emulator: gauges, status logs, drift, re-enable, backfill."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from receiver.backfill import OVERLAP, Backfill, outage_window, push_body
from receiver.connector import Desired, ensure
from receiver.dt import Client, Device, RetryPolicy
from receiver.events import Event, parse
from receiver.inbox.sqlite import SqliteInbox
from receiver.metrics import Metrics
from receiver.monitor import Monitor
from tests.emulated import Cloud, emulated_cloud
from tests.waiting import until

STATUSES = ("ACTIVE", "USER_DISABLED", "SYSTEM_DISABLED")


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Ready:
    value: bool = True

    def __call__(self) -> bool:
        return self.value


@dataclass
class Accepted:
    """`accept` for the backfill: the inbox's put, remembering what was new."""

    inbox: SqliteInbox
    new: dict[str, Event] = field(default_factory=dict)

    async def __call__(self, event: Event) -> bool:
        added = await self.inbox.put(event, ["recorder"])
        if added:
            self.new[event.event_id] = event
        return added


@dataclass
class Setup:
    cloud: Cloud
    monitor: Monitor
    metrics: Metrics
    ready: Ready
    clock: Clock
    accepted: Accepted

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    def up(self, connector_id: str) -> dict[str, float | None]:
        return {
            status: self.registry.get_sample_value(
                "dtpush_connector_up", {"connector": connector_id, "status": status}
            )
            for status in STATUSES
        }

    def set_status(self, status: str) -> None:
        dc = self.cloud.only_connector()
        self.cloud.emu.state.set_connector_status(self.cloud.project_id, dc.id, status)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    async with emulated_cloud() as cloud:
        settings = cloud.settings(tmp_path)
        await ensure(cloud.client, settings)
        metrics = Metrics(CollectorRegistry())
        inbox = SqliteInbox(tmp_path / "inbox.db")
        await inbox.open()
        accepted = Accepted(inbox)
        ready, clock = Ready(), Clock()
        monitor = Monitor(
            cloud.client,
            Desired.from_settings(settings),
            metrics=metrics,
            ready=ready,
            inbox=inbox,
            backfill=Backfill(
                cloud.client,
                project_id=cloud.project_id,
                accept=accepted,
                metrics=metrics,
                labels=("name",),
            ),
            interval=0.05,
            clock=clock,
        )
        cloud.requests.clear()
        try:
            yield Setup(cloud, monitor, metrics, ready, clock, accepted)
        finally:
            await monitor.stop()
            await inbox.close()


def status_logs(caplog: pytest.LogCaptureFixture) -> list[dict[str, str]]:
    return [
        dict(getattr(r, "fields", {}))
        for r in caplog.records
        if r.getMessage() == "connector_status"
    ]


async def test_monitor_round_exports_status_and_dt_metrics_labelled_with_the_connector_id(
    setup: Setup,
) -> None:
    dc = setup.cloud.only_connector()
    delivery = setup.cloud.emu.state.delivery_for(dc.id)
    for ok in (True, True, True, False):
        delivery.record_attempt(time.time(), ok=ok, latency=0.25)

    await setup.monitor.round()

    assert setup.up(dc.id) == {"ACTIVE": 1.0, "USER_DISABLED": 0.0, "SYSTEM_DISABLED": 0.0}
    labels = {"connector": dc.id}
    value = setup.registry.get_sample_value
    assert value("dtpush_connector_success_count", labels) == 3
    assert value("dtpush_connector_error_count", labels) == 1
    assert value("dtpush_connector_latency_p99_seconds", labels) == 0.25


async def test_monitor_round_restores_drift_made_in_dt_with_one_patch(setup: Setup) -> None:
    dc = setup.cloud.only_connector()
    setup.cloud.emu.state.update_connector(
        setup.cloud.project_id,
        dc.id,
        {"httpConfig": {"url": "https://moved.example.com/"}, "events": ["touch"]},
        ("httpConfig.url", "events"),
    )

    await setup.monitor.round()

    patches = setup.cloud.requests.patches
    assert [p.param("update_mask") for p in patches] == ["httpConfig.url,events"]
    assert setup.cloud.only_connector() == dc


async def test_monitor_user_disabled_is_logged_and_exported_but_not_overridden(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "dtpush.monitor")
    await setup.monitor.round()
    setup.set_status("USER_DISABLED")

    await setup.monitor.round()
    await setup.monitor.round()

    dc = setup.cloud.only_connector()
    assert dc.status == "USER_DISABLED"
    assert setup.cloud.requests.patches == []
    assert setup.up(dc.id) == {"ACTIVE": 0.0, "USER_DISABLED": 1.0, "SYSTEM_DISABLED": 0.0}
    changes = [(f["status"], f.get("previous")) for f in status_logs(caplog)]
    assert changes == [("ACTIVE", None), ("USER_DISABLED", "ACTIVE")]


async def test_monitor_reenables_a_system_disabled_connector_when_the_receiver_is_ready(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "dtpush.monitor")
    setup.set_status("SYSTEM_DISABLED")

    seen = await setup.monitor.round()

    dc = setup.cloud.only_connector()
    assert seen is not None and seen.status == dc.status == "ACTIVE"
    assert [p.param("update_mask") for p in setup.cloud.requests.patches] == ["status"]
    assert setup.up(dc.id)["ACTIVE"] == 1.0
    changes = [(f["status"], f.get("previous")) for f in status_logs(caplog)]
    assert changes == [("SYSTEM_DISABLED", None), ("ACTIVE", "SYSTEM_DISABLED")]
    assert "connector_reenabled" in [r.getMessage() for r in caplog.records]


async def test_monitor_waits_for_the_receiver_to_be_ready_before_reenabling(
    setup: Setup,
) -> None:
    setup.ready.value = False
    setup.set_status("SYSTEM_DISABLED")

    await setup.monitor.round()
    await setup.monitor.round()
    dc = setup.cloud.only_connector()
    assert dc.status == "SYSTEM_DISABLED"
    assert setup.cloud.requests.patches == []
    assert setup.up(dc.id)["SYSTEM_DISABLED"] == 1.0

    setup.ready.value = True
    await setup.monitor.round()
    assert setup.cloud.only_connector().status == "ACTIVE"


async def test_monitor_with_reenable_off_leaves_system_disabled(setup: Setup) -> None:
    setup.monitor.reenable = False
    setup.set_status("SYSTEM_DISABLED")

    await setup.monitor.round()

    assert setup.cloud.only_connector().status == "SYSTEM_DISABLED"
    assert setup.cloud.requests.patches == []


def history_ids(cloud: Cloud, start: datetime, end: datetime) -> set[str]:
    """Every event id the emulator's history holds in the window, over all devices."""
    return {
        event["eventId"]
        for device in cloud.emu.state.list_devices(cloud.project_id)
        for event in device.history(start.timestamp(), end.timestamp())
    }


async def test_monitor_reenable_backfills_the_gap_since_the_connector_was_last_seen_active(
    setup: Setup,
) -> None:
    real_now = setup.clock.now
    setup.clock.now = real_now - timedelta(hours=3)
    await setup.monitor.round()  # seen ACTIVE three hours ago
    setup.set_status("SYSTEM_DISABLED")
    setup.clock.now = real_now

    await setup.monitor.round()

    expected = history_ids(setup.cloud, real_now - timedelta(hours=3) - OVERLAP, real_now)
    assert len(expected) > 20
    assert set(setup.accepted.new) == expected
    assert setup.registry.get_sample_value("dtpush_backfilled_events_total") == len(expected)
    assert setup.cloud.only_connector().status == "ACTIVE"
    body = next(iter(setup.accepted.new.values()))
    assert set(body.labels) <= {"name"} and body.metadata is not None


async def test_monitor_reenable_backfill_starts_at_the_newest_inbox_event_when_earlier(
    setup: Setup,
) -> None:
    # the inbox last received an event 5 h ago; the connector was last seen ACTIVE 1 h ago
    now = setup.clock.now
    old = SqliteInbox(setup.accepted.inbox.path, clock=lambda: now.timestamp() - 5 * 3600)
    await setup.accepted.inbox.close()
    await old.open()
    setup.accepted.inbox = old
    monitor = setup.monitor
    monitor.inbox = old
    before = history_ids(setup.cloud, now - timedelta(hours=7), now - timedelta(hours=5))
    for event_id in sorted(before)[:3]:  # a few events already held
        device, event = next(
            (d, e)
            for d in setup.cloud.emu.state.list_devices(setup.cloud.project_id)
            for e in d.history(0, now.timestamp())
            if e["eventId"] == event_id
        )
        await old.put(parse(push_body(event, Device(device.to_json()), ())), ["recorder"])
    newest = await old.newest_received_at()
    assert newest is not None
    monitor.last_seen_active = now - timedelta(hours=1)
    setup.set_status("SYSTEM_DISABLED")

    last_by_device = await old.last_event_time_by_device()

    await monitor.round()

    since, starts = outage_window(newest, last_by_device)
    assert since == newest - OVERLAP and starts  # the held events are older than `newest`
    expected = {
        event["eventId"]
        for device in setup.cloud.emu.state.list_devices(setup.cloud.project_id)
        for event in device.history(starts.get(device.id, since).timestamp(), now.timestamp())
    }
    # more than the last hour: the window reaches back to what the inbox last received
    assert len(expected - history_ids(setup.cloud, now - timedelta(hours=1), now)) > 10
    held = set(sorted(before)[:3])
    assert set(setup.accepted.new) == expected - held
    assert not set(setup.accepted.new) & held


async def test_monitor_recreates_a_deleted_connector_and_drops_the_old_gauges(
    setup: Setup,
) -> None:
    await setup.monitor.round()
    old = setup.cloud.only_connector()
    setup.cloud.emu.state.delete_connector(setup.cloud.project_id, old.id)

    await setup.monitor.round()

    new = setup.cloud.only_connector()
    assert new.id != old.id
    assert len(setup.cloud.emu.state.delivery_for(new.id).sync_requests) == 1
    assert setup.up(old.id) == dict.fromkeys(STATUSES)
    assert (
        setup.registry.get_sample_value("dtpush_connector_success_count", {"connector": old.id})
        is None
    )
    assert setup.up(new.id)["ACTIVE"] == 1.0


async def test_monitor_runs_rounds_in_the_background_until_stopped(setup: Setup) -> None:
    setup.monitor.start()
    assert setup.monitor.running
    await until(lambda: setup.monitor.rounds >= 3, within=10, what="three monitor rounds")
    await setup.monitor.stop()
    assert not setup.monitor.running


async def test_monitor_round_when_dt_is_unreachable_logs_a_warning_and_carries_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with emulated_cloud() as cloud:
        settings = cloud.settings(tmp_path)
        env = cloud.emu.env
    async with Client.from_env(
        env, retry=RetryPolicy(retries=1, backoff_initial=0.01), request_timeout=1
    ) as client:
        monitor = Monitor(
            client,
            Desired.from_settings(settings),
            metrics=Metrics(CollectorRegistry()),
            ready=Ready(),
        )
        assert await monitor.round() is None
        assert await monitor.round() is None
    warnings = [r for r in caplog.records if r.getMessage() == "monitor_round_failed"]
    assert len(warnings) == 2
