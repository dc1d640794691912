"""`dtpush demo`: the local DT cloud and the receiver, wired as in production, on one laptop.

The emulator (§9) runs with its virtual sensors and push side; the receiver runs on the
embedded default (SQLite inbox and `sqlite` store) with `serve --bootstrap`'s wiring, so it is
the bootstrap — not this command — that creates the connector in the emulated project; from
then on the emulator pushes signed events to it, as DT would. A live display shows events
per type, the receiver's answers, the store, and the connector as DT sees it.

`--events N` stops the sensors once the store holds N events, waits for every push to be
answered, and exits 0 only if every event the emulator delivered is in the store exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import secrets
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path

from receiver.app import create_app
from receiver.commands import settings_from
from receiver.config import Secret, Settings
from receiver.dt import Client
from receiver.emulator import running_emulator
from receiver.emulator.pusher import PushAttempt, Pusher, PushOptions
from receiver.logs import configure_logging
from receiver.metrics import PUSH_OUTCOMES
from receiver.running import RunningReceiver, running_receiver
from receiver.runtime import wait_for_stop_signal

DEMO_MONITOR_SECONDS = 5.0
DRAIN_SECONDS = 60.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the local DT cloud and the receiver with bootstrap, with a live display",
        description="Run the DT cloud emulator (virtual sensors of every type) and the "
        "receiver on the embedded default; the receiver creates its Data Connector in the "
        "emulator and the emulator pushes signed events to it. Ctrl-C stops it.",
    )
    parser.add_argument("--events", type=int, metavar="N", help="stop after N stored events")
    parser.add_argument(
        "--rate", type=float, default=20.0, metavar="R", help="sensor events per second (20)"
    )
    parser.add_argument("--port", type=int, default=0, help="receiver port (default: any free)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.events is not None and args.events < 1:
        print("dtpush: error: --events: must be at least 1", file=sys.stderr)
        return 2
    if not args.rate > 0:
        print("dtpush: error: --rate: must be positive", file=sys.stderr)
        return 2
    settings = settings_from(args, **{"server.host": "127.0.0.1", "server.port": args.port})
    configure_logging("WARNING")
    try:
        return asyncio.run(_demo(settings, args.events, args.rate))
    except KeyboardInterrupt:
        return 0


def _demo_settings(settings: Settings, project_id: str) -> Settings:
    verify = settings.verify
    if not verify.secrets:
        verify = dataclasses.replace(verify, secrets=(Secret(secrets.token_urlsafe(32)),))
    connector = dataclasses.replace(
        settings.connector,
        project_id=settings.connector.project_id or project_id,
        monitor_interval_seconds=min(
            settings.connector.monitor_interval_seconds, DEMO_MONITOR_SECONDS
        ),
    )
    return dataclasses.replace(settings, verify=verify, connector=connector)


def store_path(settings: Settings) -> Path | None:
    if "sqlite" not in settings.handlers.enabled:
        return None
    options = settings.handlers.options.get("sqlite", {})
    return Path(str(options.get("path", "dtpush-data/events.db")))


def stored_ids(path: Path | None) -> list[str]:
    if path is None or not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        return [row[0] for row in db.execute("SELECT event_id FROM events")]


class Tally:
    """What the emulator pushed to our connector, as its pusher reports each attempt."""

    def __init__(self) -> None:
        self.connector_id: str | None = None
        self.by_type: Counter[str] = Counter()
        self.delivered: set[str] = set()
        self.attempts = 0

    def __call__(self, attempt: PushAttempt) -> None:
        # The emulated project is fresh: the bootstrap's connector is its only one.
        self.attempts += 1
        if attempt.ok:
            if attempt.event_id not in self.delivered:
                self.by_type[attempt.event_type] += 1
            self.delivered.add(attempt.event_id)


async def _demo(settings: Settings, events: int | None, rate: float) -> int:
    tally = Tally()
    options = PushOptions(duplicates=0.02)  # DT delivers at least once: show duplicates
    async with running_emulator(sensors=True, rate=rate, push_options=options) as emu:
        settings = _demo_settings(settings, emu.state.project_id)
        store = store_path(settings)
        baseline = set(stored_ids(store))
        assert emu.pusher is not None
        emu.pusher.on_attempt.append(tally)
        app = create_app(settings)
        async with (
            Client.from_env(emu.env) as client,
            running_receiver(app, settings, client=client, public_url_from_socket=True) as rx,
        ):
            assert rx.bootstrap is not None
            tally.connector_id = rx.bootstrap.monitor.connector_id
            print(
                f"dtpush demo: DT cloud emulator at {emu.url}, receiver at {rx.url}, "
                f"store {store}\nconnector {tally.connector_id} created by the bootstrap; "
                "Ctrl-C stops",
                flush=True,
            )
            display = asyncio.create_task(_display(rx, tally, store, baseline))
            finished = asyncio.create_task(_until_stored(store, baseline, events))
            stopper = asyncio.create_task(wait_for_stop_signal())
            await asyncio.wait({finished, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if emu.sensors is not None:
                await emu.sensors.stop()
            if events is not None and finished.done():
                await _drain(emu.pusher, tally, store)
            await emu.pusher.stop()  # nothing reaches the receiver while it stops
            finished.cancel()
            display.cancel()
            _print_status(rx, tally, store, baseline, final=True)
    if events is None:
        return 0
    return _verdict(tally, store, baseline, events)


async def _until_stored(store: Path | None, baseline: set[str], events: int | None) -> None:
    """Return once the store holds `events` new events (never, without a number)."""
    while True:  # the store is another thread's file: poll it
        if events is not None and len(set(stored_ids(store)) - baseline) >= events:
            return
        await asyncio.sleep(0.25)


async def _drain(pusher: Pusher, tally: Tally, store: Path | None) -> None:
    """Wait until the emulator has nothing left for us and the store holds what it delivered."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline:
        if not pusher.outstanding() and tally.delivered <= set(stored_ids(store)):
            return
        await asyncio.sleep(0.25)


def _verdict(tally: Tally, store: Path | None, baseline: set[str], events: int) -> int:
    rows = stored_ids(store)
    new = [event_id for event_id in rows if event_id not in baseline]
    missing = tally.delivered - set(rows)
    twice = len(rows) - len(set(rows))
    print(
        f"dtpush demo: the emulator delivered {len(tally.delivered)} events; the store holds "
        f"{len(new)} new events, {len(missing)} missing, {twice} twice"
    )
    return 0 if len(new) >= events and not missing and not twice else 1


async def _display(
    rx: RunningReceiver, tally: Tally, store: Path | None, baseline: set[str]
) -> None:
    while True:
        _print_status(rx, tally, store, baseline)
        await asyncio.sleep(1.0 if sys.stdout.isatty() else 5.0)


def _counts(rx: RunningReceiver) -> dict[str, int]:
    registry = rx.service.metrics.registry
    return {
        outcome: int(
            registry.get_sample_value("dtpush_push_requests_total", {"outcome": outcome}) or 0
        )
        for outcome in PUSH_OUTCOMES
    }


def _print_status(
    rx: RunningReceiver,
    tally: Tally,
    store: Path | None,
    baseline: set[str],
    *,
    final: bool = False,
) -> None:
    counts = _counts(rx)
    stored = len(set(stored_ids(store)) - baseline)
    monitor = rx.bootstrap.monitor if rx.bootstrap else None
    registry = rx.service.metrics.registry
    labels = {"connector": tally.connector_id or ""}
    ok = registry.get_sample_value("dtpush_connector_success_count", labels)
    errors = registry.get_sample_value("dtpush_connector_error_count", labels)
    p99 = registry.get_sample_value("dtpush_connector_latency_p99_seconds", labels)
    dt_side = (
        f"DT (3 h): {ok:.0f} ok, {errors:.0f} errors, p99 {p99 * 1000:.0f} ms"
        if ok is not None and errors is not None and p99 is not None
        else "DT metrics: waiting for the monitor"
    )
    lines = [
        f"connector {monitor.status if monitor else '?'}  {dt_side}",
        f"accepted {counts['accepted']}  duplicate {counts['duplicate']}  "
        f"refused {counts['unauthorized']}  quarantined {counts['quarantined']}  stored {stored}",
        "by type  "
        + "  ".join(f"{name} {n}" for name, n in sorted(tally.by_type.items()))
        + f"  ({len(tally.by_type)}/19 types)",
    ]
    if sys.stdout.isatty() and not final:
        print("\n".join(lines) + f"\x1b[{len(lines)}A\r", end="", flush=True)
    else:
        print("\n".join(lines), flush=True)
