"""`dtpush demo`: the receiver on the embedded default, fed a steady stream of signed pushes.

The receiver runs in this process with its SQLite inbox and the `sqlite` handler; a feeder
posts signed sample events of every DT event type over real HTTP on loopback, with a few
duplicates and a few badly signed pushes mixed in, and a live line shows what happened.
`--events N` stops after N new events and exits 0 only when the store holds all N.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from receiver.app import create_app
from receiver.commands import settings_from
from receiver.config import Secret, Settings
from receiver.events import EVENT_TYPES
from receiver.logs import configure_logging
from receiver.runtime import serving, wait_for_stop_signal
from receiver.testing import Signer, make_event_body

DUPLICATE_EVERY = 25
FORGED_EVERY = 40


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the receiver and feed it signed events, with a live display",
        description="Run the receiver on the embedded default (SQLite inbox and store) and "
        "feed it signed events of every DT event type until Ctrl-C.",
    )
    parser.add_argument("--events", type=int, metavar="N", help="stop after N new events")
    parser.add_argument("--rate", type=float, default=20.0, metavar="R", help="pushes per second")
    parser.add_argument("--port", type=int, default=0, help="receiver port (default: any free)")
    parser.set_defaults(run=run)


@dataclass
class Tally:
    answers: Counter[str] = field(default_factory=Counter)
    by_type: Counter[str] = field(default_factory=Counter)
    sent_ids: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.answers["accepted"]


def run(args: argparse.Namespace) -> int:
    if args.events is not None and args.events < 1:
        print("dtpush: error: --events: must be at least 1", file=sys.stderr)
        return 2
    if args.rate <= 0:
        print("dtpush: error: --rate: must be positive", file=sys.stderr)
        return 2
    settings = settings_from(args, **{"server.host": "127.0.0.1", "server.port": args.port})
    if not settings.verify.secrets:
        settings = _with_secret(settings, secrets.token_urlsafe(32))
    configure_logging("WARNING")
    try:
        return asyncio.run(_demo(settings, args.events, args.rate))
    except KeyboardInterrupt:
        return 0


def _with_secret(settings: Settings, secret: str) -> Settings:
    from dataclasses import replace

    return replace(settings, verify=replace(settings.verify, secrets=(Secret(secret),)))


def store_path(settings: Settings) -> Path | None:
    if "sqlite" not in settings.handlers.enabled:
        return None
    options = settings.handlers.options.get("sqlite", {})
    return Path(str(options.get("path", "dtpush-data/events.db")))


def stored_count(path: Path | None, ids: list[str] | None = None) -> int | None:
    """Events in the store: all of them, or those among `ids`."""
    if path is None or not path.exists():
        return None
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        if ids is None:
            return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
        found = 0
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT count(*) FROM events WHERE event_id IN ({marks})"
            found += int(db.execute(query, chunk).fetchone()[0])
        return found


async def _demo(settings: Settings, events: int | None, rate: float) -> int:
    app = create_app(settings)
    store = store_path(settings)
    tally = Tally()
    secret = settings.verify.secrets[0].reveal()
    async with (
        serving(app, host="127.0.0.1", port=settings.server.port) as base,
        aiohttp.ClientSession() as session,
    ):
        url = base + settings.server.path
        print(f"dtpush demo: receiver at {url}, store {store}; Ctrl-C stops", flush=True)
        baseline = stored_count(store) or 0
        feeder = asyncio.create_task(_feed(session, url, secret, rate, events, tally))
        display = asyncio.create_task(_display(tally, store, baseline))
        stopper = asyncio.create_task(wait_for_stop_signal())
        await asyncio.wait({feeder, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if events is not None and feeder.done() and not feeder.cancelled():
            feeder.result()
            ok = await _await_stored(store, tally.sent_ids, deadline=30.0)
        else:
            feeder.cancel()
            ok = True
        display.cancel()
        _print_line(tally, store, baseline, final=True)
    if events is not None:
        found = stored_count(store, tally.sent_ids) or 0
        print(f"dtpush demo: {found} of {len(tally.sent_ids)} new events are in the store")
        return 0 if ok and found == len(tally.sent_ids) == events else 1
    return 0


async def _feed(
    session: aiohttp.ClientSession,
    url: str,
    secret: str,
    rate: float,
    events: int | None,
    tally: Tally,
) -> None:
    signer = Signer(secret)
    forger = Signer(secrets.token_urlsafe(16))
    rng = random.Random()
    sent: list[bytes] = []
    number = 0
    started = time.monotonic()
    while events is None or len(tally.sent_ids) < events:
        number += 1
        if sent and number % DUPLICATE_EVERY == 0:
            body, sign = rng.choice(sent), signer
        elif number % FORGED_EVERY == 0:
            body, sign = make_event_body(rng.choice(EVENT_TYPES)), forger
        else:
            event_type = EVENT_TYPES[number % len(EVENT_TYPES)]
            body, sign = make_event_body(event_type), signer
        headers = {"Content-Type": "application/json", **sign.headers(body)}
        try:
            async with session.post(url, data=body, headers=headers) as response:
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, ValueError):
            tally.answers["failed"] += 1
            continue
        status = answer.get("status") or ("refused" if response.status == 401 else "other")
        tally.answers[status] += 1
        if status == "accepted":
            tally.sent_ids.append(answer["eventId"])
            tally.by_type[body.split(b'"eventType":"', 1)[1].split(b'"', 1)[0].decode()] += 1
            sent.append(body)
        wait = started + number / rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)


async def _await_stored(store: Path | None, ids: list[str], *, deadline: float) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if (stored_count(store, ids) or 0) >= len(ids):
            return True
        await asyncio.sleep(0.2)
    return False


async def _display(tally: Tally, store: Path | None, baseline: int) -> None:
    while True:
        _print_line(tally, store, baseline)
        await asyncio.sleep(0.5 if sys.stdout.isatty() else 5.0)


def _print_line(tally: Tally, store: Path | None, baseline: int, *, final: bool = False) -> None:
    stored = stored_count(store)
    shown = "-" if stored is None else str(stored - baseline)
    answers = tally.answers
    line = (
        f"accepted {answers['accepted']:>6}  duplicate {answers['duplicate']:>4}  "
        f"refused {answers['refused']:>4}  stored {shown:>6}  types {len(tally.by_type)}/{len(EVENT_TYPES)}"
    )
    if sys.stdout.isatty():
        print("\r" + line, end="\n" if final else "", flush=True)
    else:
        print(line, flush=True)
