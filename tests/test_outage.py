"""End to end: an outage long enough for DT to give up on the connector, healed and backfilled.

The emulator's virtual sensors produce events and its pusher posts them to the receiver,
which bootstrapped its connector. The receiver stops; the sensors go on; the pushes fail
until the emulator sets the connector ``SYSTEM_DISABLED`` (after a short test period) and
drops what it had queued. The receiver starts again (same inbox, same store, same URL): its
monitor re-enables the connector and backfills the gap from the event history. Afterwards
the store holds every event of the window exactly once.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from pathlib import Path

from receiver.emulator import EmulatorState, PushOptions, Rhythm, VirtualSensors
from tests.emulated import bootstrapped_receiver, emulated_cloud
from tests.recording import RecordingHandler
from tests.waiting import until

DISABLE_AFTER_SECONDS = 2.0
PUSHES = PushOptions(timeout_seconds=2.0, backoff_initial_seconds=0.05, backoff_max_seconds=0.3)


def stored_ids(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT event_id FROM events")]


async def test_outage_until_system_disabled_is_healed_and_the_gap_backfilled_exactly_once(
    tmp_path: Path,
) -> None:
    state = EmulatorState.seeded(time.time(), disable_after_seconds=DISABLE_AFTER_SECONDS)
    emulator = {"state": state, "push": True, "push_options": PUSHES}
    async with emulated_cloud(emulator=emulator) as cloud:
        settings = cloud.settings(tmp_path, DTPUSH_CONNECTOR_MONITOR_INTERVAL_SECONDS="0.2")
        recorder = RecordingHandler()
        sensors = VirtualSensors(state, seed=11, rhythm=Rhythm.lively(), rate=25.0)
        history = state.project(cloud.project_id).devices.values()

        def window_ids(start: float, end: float) -> set[str]:
            return {e["eventId"] for d in history for e in d.history(start, end)}

        # 1. receiving: the bootstrap creates the connector; sensor events arrive
        async with bootstrapped_receiver(cloud, settings, recorder, port=0) as (first, _, url):
            port = int(url.rsplit(":", 1)[1])
            connector = cloud.only_connector()
            assert connector.http_config.url == url + "/events"
            start = time.time()
            await sensors.start()
            await until(
                lambda: len(set(recorder.ids) & window_ids(start, time.time())) >= 20,
                within=30,
                what="20 sensor events pushed and delivered",
            )
        assert not first.inbox.ready()

        # 2. the receiver is down: pushes fail until DT gives up on the connector
        await until(
            lambda: cloud.only_connector().status == "SYSTEM_DISABLED",
            within=60,
            what="the connector to be SYSTEM_DISABLED",
        )
        disabled_at = time.time()
        await until(
            lambda: len(window_ids(disabled_at, time.time())) >= 30,
            within=30,
            what="30 events made while the connector is disabled",
        )
        missed = window_ids(start, time.time()) - set(recorder.ids)
        assert len(missed) >= 30

        # 3. the receiver is back: re-enabled by the monitor, the gap backfilled
        async with bootstrapped_receiver(cloud, settings, recorder, port=port) as (
            second,
            bootstrap,
            _,
        ):
            registry = second.metrics.registry
            await until(
                lambda: (
                    (registry.get_sample_value("dtpush_backfilled_events_total") or 0) > 0
                    and bootstrap.monitor.rounds >= 2
                ),
                within=60,
                what="the monitor to re-enable the connector and backfill",
            )
            assert cloud.only_connector().status == "ACTIVE"
            await sensors.stop()
            end = time.time()
            expected = window_ids(start, end)
            await until(
                lambda: expected <= set(recorder.ids),
                within=60,
                what="every event of the window delivered",
            )
            backfilled = registry.get_sample_value("dtpush_backfilled_events_total")
            up = registry.get_sample_value(
                "dtpush_connector_up", {"connector": connector.id, "status": "ACTIVE"}
            )

    assert missed <= expected
    assert backfilled is not None and backfilled >= len(missed)
    assert up == 1.0
    delivered = Counter(recorder.ids)
    assert [i for i, n in delivered.items() if n > 1] == []  # none twice
    stored = stored_ids(tmp_path / "events.db")
    assert len(stored) == len(set(stored))
    assert expected <= set(stored)  # none missing
