"""The emulator pushes the way DT does, into the real receiver on loopback (spec §9; DT-PROTOCOL
§1 to §3): signed with both headers, one POST per event, labels and event filter honoured,
retried until accepted, counted in ``:metrics``, ``SYSTEM_DISABLED`` after sustained
failure, ``:sync`` re-pushing the latest events, and the injected faults."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from receiver.dt import ACTIVE, USER_DISABLED, Client, DataConnector, HttpPushConfig, RetryPolicy
from receiver.emulator import EmulatorState, PushAttempt, PushOptions, RunningEmulator
from receiver.emulator import running_emulator as run_emulator
from receiver.emulator.catalog import EVENT_TYPES
from receiver.emulator.sensors import Rhythm
from receiver.jwks import JwksCache
from receiver.verify import Verifier
from tests.emulator.live import (
    SECRET,
    BlackHole,
    LiveReceiver,
    connect,
    emitted,
    refused_url,
)
from tests.services import free_port
from tests.waiting import until

FAST = PushOptions(
    timeout_seconds=1.0, backoff_initial_seconds=0.05, backoff_max_seconds=0.2, seed=11
)
DEADLINE = 15.0
DURATION = re.compile(r"^\d+(\.\d{3}|\.\d{6}|\.\d{9})?s$")


def seeded(**settings: Any) -> EmulatorState:
    return EmulatorState.seeded(time.time(), rng=random.Random(5), **settings)


def emulator(options: PushOptions = FAST, **kwargs: Any) -> Any:
    kwargs.setdefault("state", seeded())
    return run_emulator(push_options=options, **kwargs)


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[LiveReceiver]:
    async with LiveReceiver(tmp_path) as live:
        yield live


def client_for(emu: RunningEmulator) -> Client:
    return Client.from_env(
        emu.env, request_timeout=5, retry=RetryPolicy(backoff_initial=0.01, backoff_max=0.05)
    )


def emit_some(emu: RunningEmulator, types: tuple[str, ...]) -> list[dict[str, Any]]:
    """One event of each of `types` from devices that send them (seeded data reused)."""
    state = emu.state
    out = []
    for event_type in types:
        device, event = next(
            (d, e)
            for d in state.project(state.project_id).devices.values()
            for e in d.latest_events()
            if e["eventType"] == event_type
        )
        out.append(state.emit(device.id, event_type, event["data"], time.time()))
    return out


def pushed(emu: RunningEmulator) -> list[PushAttempt]:
    assert emu.pusher is not None
    attempts: list[PushAttempt] = []
    emu.pusher.on_attempt.append(attempts.append)
    return attempts


def outstanding(emu: RunningEmulator) -> int:
    """Pushes the emulator still has queued or in flight (an attempt ends once its answer is
    read and counted, a little after the receiver saw the request)."""
    assert emu.pusher is not None
    return emu.pusher.outstanding()


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


async def test_sensor_events_of_all_19_types_verify_with_both_schemes_once_each(
    tmp_path: Path,
) -> None:
    async with emulator(sensors=True, rate=150, seed=3, rhythm=Rhythm.lively()) as emu:
        org = emu.state.organization_id
        env = {
            "DTPUSH_VERIFY_ASYMMETRIC": "true",
            "DTPUSH_VERIFY_OIDC_URL": emu.oidc_url,
            "DTPUSH_VERIFY_ORG_ID": org,
        }
        async with LiveReceiver(tmp_path, settings_env=env) as live:
            made = emitted(emu.state)
            connect(emu.state, live.url)
            await until(
                lambda: {e.event_type for e in live.recorder.events} >= set(EVENT_TYPES),
                within=DEADLINE,
                what="every event type",
            )
            assert emu.sensors is not None
            await emu.sensors.stop()
            await until(lambda: len(live.ids) >= len(made), within=DEADLINE, what="all events")

    assert sorted(live.ids) == sorted(e["eventId"] for e in made)
    assert set(live.outcomes()) == {"accepted"}
    assert set(live.posts_per_event().values()) == {1}


async def test_push_carries_dt_body_headers_and_only_listed_labels(
    receiver: LiveReceiver,
) -> None:
    async with emulator() as emu:
        connect(emu.state, receiver.url, labels=["name", "floor"], headers={"X-Api-Key": "k1"})
        (event,) = emit_some(emu, ("co2",))
        await receiver.recorder.wait_for(1)

    (got,) = receiver.recorder.events
    device = emu.state.find_device(got.device_id)
    assert got.raw.startswith(b'{"event":{"eventId":"' + event["eventId"].encode())
    assert got.labels == {"name": device.labels["name"]} and "room" in device.labels
    assert got.metadata is not None and got.metadata.device_type == "co2"
    (answered,) = receiver.answered
    headers = answered.headers
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Api-Key"] == "k1"
    hmac_claims = claims(headers["X-Dt-Signature"])
    assert list(hmac_claims) == ["checksum", "checksum_sha256", "exp", "iat", "jti"]
    assert hmac_claims["exp"] == hmac_claims["iat"] + 3600
    asym = claims(headers["DT-Asymmetric-Signature"])
    assert asym["iss"] == emu.url + "/data-connector"
    assert asym["sub"] == emu.state.organization_id
    assert asym["jti"] != hmac_claims["jti"]
    assert jwt.get_unverified_header(headers["DT-Asymmetric-Signature"])["kid"] == (
        emu.state.signing_keys.current.kid
    )


async def test_event_filter_forwards_only_the_listed_types_in_order(
    receiver: LiveReceiver,
) -> None:
    async with emulator(PushOptions(concurrency=1)) as emu:
        attempts = pushed(emu)
        connect(emu.state, receiver.url, events=["temperature", "touch"])
        events = emit_some(emu, ("co2", "temperature", "humidity", "touch", "temperature"))
        await receiver.recorder.wait_for(3)
        await until(lambda: outstanding(emu) == 0, within=DEADLINE, what="answers counted")

    wanted = [e["eventId"] for e in events if e["eventType"] in ("temperature", "touch")]
    assert receiver.ids == wanted
    assert [a.event_id for a in attempts] == wanted


async def test_refused_pushes_are_retried_with_fresh_tokens_and_counted_in_metrics(
    receiver: LiveReceiver,
) -> None:
    async with emulator() as emu, client_for(emu) as client:
        attempts = pushed(emu)
        connector = connect(emu.state, receiver.url, secret="not-the-receivers-secret")
        events = emit_some(emu, ("temperature", "touch", "co2"))
        await until(lambda: len(attempts) >= 6, within=DEADLINE, what="refused attempts")
        project = emu.state.project_id
        await DataConnector.update_data_connector(
            connector.id, project, config=HttpPushConfig(signature_secret=SECRET), client=client
        )
        await until(lambda: len(receiver.ids) == 3, within=DEADLINE, what="delivery")
        await until(lambda: outstanding(emu) == 0, within=DEADLINE, what="answers counted")
        metric = await DataConnector.get_metrics(connector.id, project, client=client)

    assert sorted(receiver.ids) == sorted(e["eventId"] for e in events)
    refused = [a for a in receiver.answered if a.status == 401]
    assert refused and {a.outcome for a in refused} == {"bad_signature"}
    assert metric.success_count == 3
    assert metric.error_count == len(refused)
    assert DURATION.match(metric.latency) and metric.latency_seconds > 0


async def test_no_answer_in_time_is_an_error_retried_elsewhere_with_bounded_concurrency(
    receiver: LiveReceiver,
) -> None:
    options = PushOptions(
        timeout_seconds=0.3, backoff_initial_seconds=0.05, backoff_max_seconds=0.1, concurrency=2
    )
    async with BlackHole() as hole, emulator(options) as emu:
        connector = connect(emu.state, hole.url)
        events = emit_some(emu, ("temperature", "touch", "co2", "humidity", "motion"))
        await until(lambda: hole.accepted >= 4, within=DEADLINE, what="timed-out attempts")
        emu.state.update_connector(
            emu.state.project_id, connector.id, {"httpConfig": {"url": receiver.url}}, None
        )
        await until(lambda: len(receiver.ids) == 5, within=DEADLINE, what="delivery")
        await until(lambda: outstanding(emu) == 0, within=DEADLINE, what="answers counted")
        metrics = emu.state.connector_metrics(emu.state.project_id, connector.id, time.time())

    assert hole.most_open == 2
    assert sorted(receiver.ids) == sorted(e["eventId"] for e in events)
    assert metrics["metrics"]["errorCount"] >= 4
    assert metrics["metrics"]["successCount"] == 5


async def test_receiver_down_past_disable_after_system_disables_and_queues_nothing(
    receiver: LiveReceiver,
) -> None:
    async with emulator(state=seeded(disable_after_seconds=1.0)) as emu, client_for(emu) as c:
        assert emu.pusher is not None
        project, state = emu.state.project_id, emu.state
        connector = connect(state, receiver.url)
        await receiver.stop()
        lost = emit_some(emu, ("temperature", "touch"))
        await until(
            lambda: state.get_connector(project, connector.id).status == "SYSTEM_DISABLED",
            within=DEADLINE,
            what="SYSTEM_DISABLED",
        )
        assert emu.pusher.outstanding(connector.id) == 0
        lost += emit_some(emu, ("co2",))
        assert emu.pusher.outstanding(connector.id) == 0
        await receiver.start()
        updated = await DataConnector.update_data_connector(
            connector.id, project, status=ACTIVE, client=c
        )
        fresh = emit_some(emu, ("humidity",))
        await until(lambda: len(receiver.ids) == 1, within=DEADLINE, what="a new event")
        assert emu.pusher.outstanding(connector.id) == 0

    assert updated.status == ACTIVE
    assert receiver.ids == [fresh[0]["eventId"]]
    assert not {e["eventId"] for e in lost} & set(receiver.posts_per_event())


async def test_user_disabled_connector_gets_nothing_until_reenabled(
    receiver: LiveReceiver,
) -> None:
    async with emulator() as emu, client_for(emu) as client:
        assert emu.pusher is not None
        project = emu.state.project_id
        connector = connect(emu.state, receiver.url)
        await DataConnector.update_data_connector(
            connector.id, project, status=USER_DISABLED, client=client
        )
        skipped = emit_some(emu, ("temperature",))
        assert emu.pusher.outstanding() == 0
        await DataConnector.update_data_connector(
            connector.id, project, status=ACTIVE, client=client
        )
        fresh = emit_some(emu, ("touch",))
        await receiver.recorder.wait_for(1)

    assert receiver.ids == [fresh[0]["eventId"]]
    assert skipped[0]["eventId"] not in receiver.posts_per_event()


async def test_sync_repushes_latest_event_per_device_and_type_with_original_ids(
    receiver: LiveReceiver,
) -> None:
    async with emulator() as emu, client_for(emu) as client:
        project = emu.state.project_id
        devices = emu.state.project(project).devices.values()
        latest = {e["eventId"]: (d.id, e["eventType"]) for d in devices for e in d.latest_events()}
        connector = connect(emu.state, receiver.url)
        await DataConnector.sync_data_connector(connector.id, project, client=client)
        await until(lambda: len(receiver.ids) == len(latest), within=DEADLINE, what="sync")
        await DataConnector.sync_data_connector(connector.id, project, client=client)
        await until(
            lambda: len(receiver.answered) == 2 * len(latest), within=DEADLINE, what="resync"
        )

    assert set(receiver.ids) == set(latest)
    assert len(set(latest.values())) == len(latest)  # one per (device, type)
    outcomes = receiver.outcomes()
    assert set(outcomes[: len(latest)]) == {"accepted"}
    assert set(outcomes[len(latest) :]) == {"duplicate"}


async def test_duplicates_fault_pushes_each_event_twice_and_receiver_answers_duplicate(
    receiver: LiveReceiver,
) -> None:
    async with emulator(PushOptions(duplicates=1.0, concurrency=1)) as emu:
        connect(emu.state, receiver.url)
        events = emit_some(emu, ("temperature", "touch", "co2"))
        await until(lambda: len(receiver.answered) == 6, within=DEADLINE, what="all pushes")

    assert receiver.ids == [e["eventId"] for e in events]
    assert set(receiver.posts_per_event().values()) == {2}
    assert Counter(receiver.outcomes()) == {"accepted": 3, "duplicate": 3}


async def test_reorder_fault_lets_later_pushes_overtake_and_all_arrive(
    receiver: LiveReceiver,
) -> None:
    options = PushOptions(reorder=0.5, reorder_delay_seconds=0.3, concurrency=1, seed=2)
    async with emulator(options) as emu:
        connect(emu.state, receiver.url)
        events = emit_some(emu, EVENT_TYPES[:8])
        await until(lambda: len(receiver.ids) == 8, within=DEADLINE, what="all pushes")

    sent = [e["eventId"] for e in events]
    assert sorted(receiver.ids) == sorted(sent)
    assert receiver.ids != sent


async def test_pushes_older_than_max_age_are_dropped_without_disabling() -> None:
    options = PushOptions(
        max_age_seconds=0.5, backoff_initial_seconds=0.05, backoff_max_seconds=0.1
    )
    async with emulator(options) as emu:
        assert emu.pusher is not None
        connector = connect(emu.state, refused_url())
        emit_some(emu, ("temperature", "touch"))
        delivery = emu.state.delivery_for(connector.id)
        pusher = emu.pusher
        # the attempt task leaves the in-flight set one loop turn after counting the drop
        await until(
            lambda: delivery.dropped == 2 and pusher.outstanding(connector.id) == 0,
            within=DEADLINE,
            what="both pushes dropped and nothing left queued or in flight",
        )

        assert emu.state.get_connector(emu.state.project_id, connector.id).status == ACTIVE


async def test_key_rotation_is_followed_without_a_refusal(tmp_path: Path) -> None:
    options = PushOptions(rotate_keys_every_seconds=0.4, seed=4)
    async with emulator(options, sensors=True, rate=40, seed=8) as emu:

        def verifier() -> Verifier:
            return Verifier(key_source=JwksCache(None, emu.oidc_url, refetch_interval=0.1))

        env = {"DTPUSH_VERIFY_SECRETS": ""}
        async with LiveReceiver(tmp_path, settings_env=env, verifier=verifier) as live:
            connect(emu.state, live.url, secret="")

            def kids() -> set[str]:
                return {
                    jwt.get_unverified_header(a.headers["DT-Asymmetric-Signature"])["kid"]
                    for a in live.answered
                }

            await until(lambda: len(kids()) >= 3, within=DEADLINE, what="three signing keys")

    assert {a.status for a in live.answered} == {200}
    assert all("X-Dt-Signature" not in a.headers for a in live.answered)


async def test_stop_returns_when_a_push_is_queued_as_it_stops() -> None:
    # A push queued wakes the connector's queue loop just as stop() cancels that loop; the
    # loop must not miss its cancellation (asyncio.wait_for on Python 3.11 did, when it was
    # waiting with a timeout), or stop() would wait for it forever.
    options = PushOptions(backoff_initial_seconds=30.0, backoff_max_seconds=30.0, seed=3)
    async with emulator(options) as emu:
        assert emu.pusher is not None
        attempts = pushed(emu)
        connect(emu.state, f"http://127.0.0.1:{free_port()}/events")  # nothing listens there
        emit_some(emu, ("temperature",))
        await until(lambda: len(attempts) == 1, within=DEADLINE, what="a refused attempt")
        # its retry is queued 30 s ahead: the loop waits for it with a timeout
        emit_some(emu, ("touch",))
        async with asyncio.timeout(DEADLINE):
            await emu.pusher.stop()
        assert len(attempts) == 1
