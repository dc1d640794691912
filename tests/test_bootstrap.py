"""Bootstrap against the emulator: `ensure`, `dtpush connector ensure`, `serve --bootstrap`."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from receiver.app import SERVICE_KEY, create_app
from receiver.backfill import outage_window, push_body
from receiver.commands import connector as connector_command
from receiver.connector import Desired, ensure, reconcile
from receiver.dt import AmbiguousConnectors, Device
from receiver.emulator import PushOptions, Rhythm, VirtualSensors
from receiver.emulator.connectors import Connector
from receiver.events import parse
from receiver.inbox.sqlite import SqliteInbox
from receiver.monitor import Bootstrap, inbox_snapshot
from receiver.service import Service
from tests.emulated import PUBLIC_URL, SECRET, Cloud, bootstrapped_receiver, emulated_cloud
from tests.recording import RecordingHandler
from tests.waiting import until


def patch_in_dt(cloud: Cloud, body: dict[str, Any], mask: str) -> Connector:
    """Change the connector in DT as a person would (not through our client)."""
    dc = cloud.only_connector()
    return cloud.emu.state.update_connector(cloud.project_id, dc.id, body, tuple(mask.split(",")))


async def test_ensure_creates_the_connector_once_and_requests_a_sync(tmp_path: Path) -> None:
    async with emulated_cloud() as cloud:
        settings = cloud.settings(tmp_path)
        created = await ensure(cloud.client, settings)

        dc = cloud.only_connector()
        assert created.data_connector_id == dc.id
        assert (dc.display_name, dc.http_config.url, dc.status) == ("dtpush", PUBLIC_URL, "ACTIVE")
        assert dc.http_config.signature_secret == SECRET
        assert (dc.events, dc.labels) == ((), ("name",))
        assert len(cloud.emu.state.delivery_for(dc.id).sync_requests) == 1

        cloud.requests.clear()
        again = await reconcile(cloud.client, Desired.from_settings(settings))
        assert again.action == "nothing"
        assert again.connector.data_connector_id == dc.id
        assert cloud.requests.writes == []
        assert len(cloud.connectors()) == 1
        assert len(cloud.emu.state.delivery_for(dc.id).sync_requests) == 1


@pytest.mark.parametrize(
    ("body", "mask", "fields"),
    [
        (
            {"httpConfig": {"url": "https://moved.example.com/x"}},
            "httpConfig.url",
            "httpConfig.url",
        ),
        (
            {"httpConfig": {"signatureSecret": "changed-in-studio"}},
            "httpConfig.signatureSecret",
            "httpConfig.signatureSecret",
        ),
        ({"events": ["touch"]}, "events", "events"),
        ({"labels": ["room"]}, "labels", "labels"),
        (
            {
                "httpConfig": {"url": "https://moved.example.com/x", "signatureSecret": "other"},
                "events": ["co2", "touch"],
                "labels": [],
            },
            "httpConfig.url,httpConfig.signatureSecret,events,labels",
            "httpConfig.url,httpConfig.signatureSecret,events,labels",
        ),
    ],
    ids=["url", "secret", "event-types", "labels", "all-four"],
)
async def test_ensure_restores_drift_with_one_patch_naming_exactly_the_drifted_fields(
    tmp_path: Path, body: dict[str, Any], mask: str, fields: str
) -> None:
    async with emulated_cloud() as cloud:
        settings = cloud.settings(tmp_path)
        await ensure(cloud.client, settings)
        before = cloud.only_connector()
        patch_in_dt(cloud, body, mask)
        cloud.requests.clear()

        done = await reconcile(cloud.client, Desired.from_settings(settings))

        assert [p.param("update_mask") for p in cloud.requests.patches] == [fields]
        assert [w.method for w in cloud.requests.writes] == ["PATCH"]
        assert done.fields == tuple(fields.split(","))
        assert cloud.only_connector() == before


async def test_ensure_restores_drift_but_leaves_user_disabled_as_a_person_set_it(
    tmp_path: Path,
) -> None:
    async with emulated_cloud() as cloud:
        settings = cloud.settings(tmp_path)
        await ensure(cloud.client, settings)
        patch_in_dt(cloud, {"status": "USER_DISABLED", "labels": []}, "status,labels")
        cloud.requests.clear()

        await ensure(cloud.client, settings)

        assert [p.param("update_mask") for p in cloud.requests.patches] == ["labels"]
        dc = cloud.only_connector()
        assert (dc.status, dc.labels) == ("USER_DISABLED", ("name",))


async def test_ensure_with_two_connectors_of_the_display_name_names_both_and_changes_nothing(
    tmp_path: Path,
) -> None:
    async with emulated_cloud() as cloud:
        state = cloud.emu.state
        body = {
            "displayName": "dtpush",
            "type": "HTTP_PUSH",
            "httpConfig": {"url": "https://old.example.com/events"},
        }
        first = state.create_connector(cloud.project_id, body, 0)
        second = state.create_connector(cloud.project_id, body, 0)
        cloud.requests.clear()

        with pytest.raises(AmbiguousConnectors) as caught:
            await ensure(cloud.client, cloud.settings(tmp_path))

        assert first.id in str(caught.value) and second.id in str(caught.value)
        assert set(caught.value.ids) == {first.id, second.id}
        assert cloud.requests.writes == []
        assert state.list_connectors(cloud.project_id) == [first, second]


async def test_ensure_adopts_the_connector_of_a_create_whose_answer_was_lost(
    tmp_path: Path,
) -> None:
    async with emulated_cloud(request_timeout=0.5) as cloud:
        collection = f"/v2/projects/{cloud.project_id}/dataconnectors"
        cloud.emu.state.faults.delay_next(1, 3.0, method="POST", path_prefix=collection)

        adopted = await ensure(cloud.client, cloud.settings(tmp_path))

        dc = cloud.only_connector()
        assert adopted.data_connector_id == dc.id
        creates = [s for s in cloud.requests.api("POST") if s.path == collection]
        assert len(creates) == 1  # never re-sent
        assert len(cloud.emu.state.delivery_for(dc.id).sync_requests) == 1


async def test_ensure_never_logs_the_signature_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with emulated_cloud() as cloud:
        settings = cloud.settings(tmp_path)
        await ensure(cloud.client, settings)
        patch_in_dt(cloud, {"httpConfig": {"signatureSecret": "x"}}, "httpConfig.signatureSecret")
        await ensure(cloud.client, settings)
    assert caplog.records
    for record in caplog.records:
        text = record.getMessage() + repr(getattr(record, "fields", ""))
        assert SECRET not in text


# -- dtpush connector ensure --------------------------------------------------------------


def run_connector_ensure(env: dict[str, str], *extra: str) -> tuple[int, str, str]:
    from receiver.cli import build_parser

    args = build_parser().parse_args(["connector", "ensure", *extra])
    out, err = io.StringIO(), io.StringIO()
    code = connector_command.run(args, environ=env, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


async def test_connector_ensure_command_creates_then_reports_nothing_to_do(
    tmp_path: Path,
) -> None:
    async with emulated_cloud() as cloud:
        env = cloud.env(tmp_path)
        code, out, err = await asyncio.to_thread(run_connector_ensure, env)
        dc = cloud.only_connector()
        assert (code, err) == (0, "")
        assert out.strip() == f"created connector {dc.id} ('dtpush') and requested a sync"

        patch_in_dt(cloud, {"labels": []}, "labels")
        code, out, _ = await asyncio.to_thread(run_connector_ensure, env, "--json")
        doc = orjson.loads(out)
        assert (code, doc["action"], doc["fields"]) == (0, "patch", ["labels"])
        assert doc["connector"]["httpConfig"]["signatureSecret"] == "***"

        code, out, _ = await asyncio.to_thread(run_connector_ensure, env)
        assert (code, out.strip()) == (
            0,
            f"connector {dc.id} ('dtpush') is as configured (status ACTIVE)",
        )
        assert SECRET not in out


async def test_connector_ensure_command_without_public_url_exits_2_naming_it(
    tmp_path: Path,
) -> None:
    async with emulated_cloud() as cloud:
        env = cloud.env(tmp_path)
        del env["DTPUSH_CONNECTOR_PUBLIC_URL"]
        code, out, err = await asyncio.to_thread(run_connector_ensure, env)
    assert (code, out) == (2, "")
    assert err.startswith("dtpush: error: connector.public_url: not set")
    assert cloud.connectors() == []


async def test_connector_ensure_command_with_ambiguous_name_exits_1_naming_the_ids(
    tmp_path: Path,
) -> None:
    async with emulated_cloud() as cloud:
        body = {"displayName": "dtpush", "type": "HTTP_PUSH", "httpConfig": {"url": PUBLIC_URL}}
        ids = [cloud.emu.state.create_connector(cloud.project_id, body, 0).id for _ in range(2)]
        code, _, err = await asyncio.to_thread(run_connector_ensure, cloud.env(tmp_path))
    assert code == 1
    assert err.count("\n") == 1 and all(i in err for i in ids)


# -- dtpush serve --bootstrap -------------------------------------------------------------


class Serve:
    """`dtpush serve --bootstrap` as a real process; its JSON log lines on stderr."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "receiver", "serve", "--port", "0", *args],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []

    async def read_until(self, event: str, within: float = 20.0) -> dict[str, Any]:
        assert self.process.stderr is not None
        stderr = self.process.stderr

        async def next_line() -> str:
            return await asyncio.to_thread(stderr.readline)

        deadline = asyncio.get_running_loop().time() + within
        while True:
            left = deadline - asyncio.get_running_loop().time()
            line = await asyncio.wait_for(next_line(), max(left, 0.01))
            if not line:
                raise AssertionError(f"serve ended before {event!r}: {self.lines}")
            self.lines.append(line)
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if record.get("event") == event:
                return dict(record)

    async def finish(self, within: float = 20.0) -> tuple[int, str]:
        _, rest = await asyncio.wait_for(asyncio.to_thread(self.process.communicate), within)
        return self.process.returncode, "".join(self.lines) + rest

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)


def server_env(cloud: Cloud, tmp_path: Path) -> dict[str, str]:
    return cloud.env(tmp_path, DTPUSH_CONNECTOR_MONITOR_INTERVAL_SECONDS="0.2")


async def test_serve_bootstrap_creates_the_connector_and_exports_its_gauges(
    tmp_path: Path,
) -> None:
    async with emulated_cloud() as cloud:
        serve = Serve(server_env(cloud, tmp_path), "--bootstrap")
        try:
            listening = await serve.read_until("listening")
            await serve.read_until("connector_ensured")
            dc = cloud.only_connector()
            assert len(cloud.emu.state.delivery_for(dc.id).sync_requests) == 1
            base = listening["url"].removesuffix("/events")
            async with aiohttp.ClientSession() as http:

                async def scrape() -> str:
                    async with http.get(base + "/metrics") as answer:
                        return await answer.text()

                text = await scrape()
            up = f'dtpush_connector_up{{connector="{dc.id}",status="ACTIVE"}} 1.0'
            assert up in text
            assert (
                f'dtpush_connector_up{{connector="{dc.id}",status="SYSTEM_DISABLED"}} 0.0' in text
            )
            # the monitor keeps polling: drift made in DT is restored while serving
            patch_in_dt(cloud, {"labels": []}, "labels")
            await until(
                lambda: cloud.only_connector().labels == ("name",),
                within=15,
                what="the monitor to restore the labels",
            )
        finally:
            serve.stop()
        code, log = await serve.finish()
    assert code == 0
    assert SECRET not in log
    assert len(cloud.connectors()) == 1


async def test_serve_bootstrap_without_public_url_exits_2_naming_the_setting(
    tmp_path: Path,
) -> None:
    async with emulated_cloud() as cloud:
        env = cloud.env(tmp_path)
        env["DTPUSH_CONNECTOR_PUBLIC_URL"] = ""
        serve = Serve(env, "--bootstrap")
        code, log = await serve.finish()
    assert code == 2
    assert log.strip().splitlines() == [
        "dtpush: error: connector.public_url: not set (the URL DT pushes to; "
        "e.g. DTPUSH_CONNECTOR_PUBLIC_URL)"
    ]


async def test_serve_bootstrap_with_ambiguous_connectors_exits_1_with_one_line(
    tmp_path: Path,
) -> None:
    async with emulated_cloud() as cloud:
        body = {"displayName": "dtpush", "type": "HTTP_PUSH", "httpConfig": {"url": PUBLIC_URL}}
        ids = [cloud.emu.state.create_connector(cloud.project_id, body, 0).id for _ in range(2)]
        serve = Serve(server_env(cloud, tmp_path), "--bootstrap")
        code, log = await serve.finish()
    assert code == 1
    errors = [line for line in log.splitlines() if line.startswith("dtpush: error:")]
    assert len(errors) == 1 and all(i in errors[0] for i in ids)
    assert len(cloud.connectors()) == 2


async def test_serve_bootstrap_unreachable_dt_exits_1(tmp_path: Path) -> None:
    async with emulated_cloud() as cloud:
        env = server_env(cloud, tmp_path)
    # the emulator is gone now: nothing listens at DT_API_URL
    serve = Serve(env, "--bootstrap")
    code, log = await serve.finish(within=60)
    assert code == 1
    assert [line for line in log.splitlines() if line.startswith("dtpush: error:")]


# -- the start-up backfill of serve --bootstrap ----------------------------------------------

TestClientT = TestClient[web.Request, web.Application]


async def started_service(
    cloud: Cloud,
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[TestClientT]],
    received_hours_ago: float | None,
) -> tuple[Service, str | None]:
    """A receiver whose inbox last received one event `received_hours_ago` (None: empty)."""
    held = None
    if received_hours_ago is not None:
        old = SqliteInbox(
            tmp_path / "inbox.db", clock=lambda: time.time() - received_hours_ago * 3600
        )
        await old.open()
        device = cloud.emu.state.list_devices(cloud.project_id)[3]
        event = device.history(0, time.time() - (received_hours_ago + 1) * 3600)[0]
        held = event["eventId"]
        await old.put(parse(push_body(event, Device(device.to_json()), ["name"])), ["recorder"])
        await old.close()
    app = create_app(
        cloud.settings(tmp_path),
        registry=CollectorRegistry(),
        handlers={"recorder": RecordingHandler()},
    )
    return (await aiohttp_client(app)).app[SERVICE_KEY], held


async def test_bootstrap_start_backfills_when_the_inbox_last_received_over_12_hours_ago(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[TestClientT]]
) -> None:
    async with emulated_cloud() as cloud:
        service, held = await started_service(cloud, tmp_path, aiohttp_client, 20)
        snapshot = await inbox_snapshot(service.inbox)
        now = datetime.now(UTC)
        bootstrap = Bootstrap(
            cloud.client, service.settings, service, snapshot=snapshot, clock=lambda: now
        )
        try:
            await bootstrap.start()
            assert bootstrap.startup_backfill is not None
            await bootstrap.startup_backfill
        finally:
            await bootstrap.stop()
        assert snapshot.newest_received is not None
        since, starts = outage_window(snapshot.newest_received, snapshot.last_event_by_device)
        expected = {
            event["eventId"]
            for device in cloud.emu.state.list_devices(cloud.project_id)
            for event in device.history(starts.get(device.id, since).timestamp(), now.timestamp())
        }
        assert held in expected  # the window reaches back to that device's newest event
        backfilled = service.metrics.registry.get_sample_value("dtpush_backfilled_events_total")
        assert backfilled == len(expected) - 1 > 100


@pytest.mark.parametrize("received_hours_ago", [None, 11.0], ids=["empty-inbox", "11-hours"])
async def test_bootstrap_start_does_not_backfill_an_empty_or_recent_inbox(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[TestClientT]],
    received_hours_ago: float | None,
) -> None:
    async with emulated_cloud() as cloud:
        service, _ = await started_service(cloud, tmp_path, aiohttp_client, received_hours_ago)
        bootstrap = Bootstrap(
            cloud.client,
            service.settings,
            service,
            snapshot=await inbox_snapshot(service.inbox),
        )
        try:
            done = await bootstrap.start()
            assert done.action == "create"
            assert bootstrap.startup_backfill is None
        finally:
            await bootstrap.stop()
        assert cloud.requests.api("GET") and not [
            s for s in cloud.requests.api("GET") if s.path.endswith("/events")
        ]


# -- secrets: rotation and drift while DT pushes ---------------------------------------------

OLD_SECRET = "old-secret-0123456789abcdef0123456789ab"
NEW_SECRET = "new-secret-0123456789abcdef0123456789ab"
SECRET_PATH = "httpConfig.signatureSecret"
FAST_PUSHES = PushOptions(
    timeout_seconds=2.0, backoff_initial_seconds=0.05, backoff_max_seconds=0.3
)


def refusals(service: Service) -> float:
    registry = service.metrics.registry
    return sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "dtpush_signature_failures"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def test_secret_rotation_bootstrap_moves_dt_to_the_new_secret_and_refuses_no_push(
    tmp_path: Path,
) -> None:
    async with emulated_cloud(emulator={"push": True, "push_options": FAST_PUSHES}) as cloud:
        state = cloud.emu.state
        recorder = RecordingHandler()
        sensors = VirtualSensors(state, seed=5, rhythm=Rhythm.lively(), rate=25.0)
        devices = state.project(cloud.project_id).devices.values()

        def made_since(start: float) -> set[str]:
            return {e["eventId"] for d in devices for e in d.history(start, time.time())}

        before = cloud.settings(tmp_path, DTPUSH_VERIFY_SECRETS=OLD_SECRET)
        async with bootstrapped_receiver(cloud, before, recorder, port=0) as (_, _, url):
            port = int(url.rsplit(":", 1)[1])
            start = time.time()
            await sensors.start()
            await until(lambda: len(made_since(start)) >= 20, within=30, what="20 events")
        assert cloud.only_connector().http_config.signature_secret == OLD_SECRET

        # the new secret first, the old one kept while DT still signs with it
        rotated = cloud.settings(tmp_path, DTPUSH_VERIFY_SECRETS=f"{NEW_SECRET},{OLD_SECRET}")
        cloud.requests.clear()
        async with bootstrapped_receiver(cloud, rotated, recorder, port=port) as (service, _, _):
            assert cloud.only_connector().http_config.signature_secret == NEW_SECRET
            assert [p.param("update_mask") for p in cloud.requests.patches] == [
                "httpConfig.signatureSecret"
            ]
            matched_new = {"index": "0"}
            await until(
                lambda: (
                    (
                        service.metrics.registry.get_sample_value(
                            "dtpush_signature_secret_matches_total", matched_new
                        )
                        or 0
                    )
                    >= 20
                ),
                within=30,
                what="20 pushes signed with the new secret",
            )
            await sensors.stop()
            expected = made_since(start)
            await until(
                lambda: expected <= set(recorder.ids), within=30, what="every event delivered"
            )
            assert refusals(service) == 0


async def test_secret_changed_in_dt_is_restored_by_the_monitor_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    async with emulated_cloud(emulator={"push": True, "push_options": FAST_PUSHES}) as cloud:
        state = cloud.emu.state
        recorder = RecordingHandler()
        sensors = VirtualSensors(state, seed=9, rhythm=Rhythm.lively(), rate=25.0)
        devices = state.project(cloud.project_id).devices.values()
        settings = cloud.settings(
            tmp_path,
            DTPUSH_VERIFY_SECRETS=NEW_SECRET,
            DTPUSH_CONNECTOR_MONITOR_INTERVAL_SECONDS="0.5",
        )
        async with bootstrapped_receiver(cloud, settings, recorder, port=0):
            start = time.time()
            await sensors.start()
            await until(lambda: len(recorder.ids) >= 20, within=30, what="20 events delivered")
            cloud.requests.clear()
            patch_in_dt(cloud, {"httpConfig": {"signatureSecret": "set-by-someone"}}, SECRET_PATH)
            await until(
                lambda: cloud.only_connector().http_config.signature_secret == NEW_SECRET,
                within=30,
                what="the monitor to restore the secret",
            )
            await sensors.stop()
            expected = {e["eventId"] for d in devices for e in d.history(start, time.time())}
            await until(
                lambda: expected <= set(recorder.ids), within=30, what="every event delivered"
            )
        assert [p.param("update_mask") for p in cloud.requests.patches] == [SECRET_PATH]
        assert Counter(recorder.ids).most_common(1)[0][1] == 1
