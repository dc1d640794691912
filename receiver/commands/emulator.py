"""`dtpush emulator`: the local DT cloud alone, on loopback, until Ctrl-C or SIGTERM.

It prints, before anything else, the shell lines that point the official SDK, our client
and `dtpush serve --bootstrap` at it::

    export DT_API_URL=http://127.0.0.1:PORT/v2
    export DT_TOKEN_URL=http://127.0.0.1:PORT/oauth2/token
    export DT_SERVICE_ACCOUNT_KEY_ID=…
    export DT_SERVICE_ACCOUNT_SECRET=…
    export DT_SERVICE_ACCOUNT_EMAIL=…
    export DTPUSH_CONNECTOR_PROJECT_ID=…

(The service account is the emulator's own, made up at start; printing it is the point.)

Its virtual sensors make events on DT's rhythm (``--rate R``: about R events per second
overall, ``--speed X``: X times faster than life; ``--no-sensors``: none), pushed to every
``ACTIVE`` connector, with injectable faults: ``--duplicates P`` (push some events twice),
``--reorder P`` (hold some back so later ones overtake them), ``--delay S`` (every push S
seconds late), ``--rotate-keys-every S`` (a new ES256 signing key every S seconds) and
``--disable-after S`` (``SYSTEM_DISABLED`` after S seconds of failures, instead of DT's 5
days).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shlex
import signal
import sys
import time
from typing import Any

from receiver.emulator import EmulatorState, PushOptions, running_emulator
from receiver.emulator.delivery import DISABLE_AFTER_SECONDS


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from exc
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {port}")
    return port


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not 0 < value < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a positive number: {text}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1: {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"cannot be negative: {text}")
    if value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be finite: {text}")
    return value


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "emulator",
        help="run the local DT cloud emulator (REST API, token endpoint, OpenID/JWKS)",
        description="Serve a local Disruptive Technologies cloud on loopback and print the "
        "export lines that point the SDK, the client and `dtpush serve` at it.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=_port, default=0, help="port to listen on; 0 picks a free one (default)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed for ids and credentials, so a restart prints the same ones (local use only)",
    )
    parser.add_argument(
        "--token-ttl",
        type=_positive,
        default=3600.0,
        metavar="SECONDS",
        help="lifetime of access tokens (default 3600, as DT)",
    )
    sensors = parser.add_argument_group("virtual sensors")
    pace = sensors.add_mutually_exclusive_group()
    pace.add_argument(
        "--rate",
        type=_positive,
        metavar="R",
        help="about R events per second overall (default: DT's own rhythm, a heartbeat "
        "every ~15 min per sensor)",
    )
    pace.add_argument(
        "--speed", type=_positive, metavar="X", help="run the sensors X times faster than life"
    )
    pace.add_argument(
        "--no-sensors", action="store_true", help="no virtual sensors (pushes on :sync only)"
    )
    faults = parser.add_argument_group("pushes and injected faults")
    faults.add_argument(
        "--duplicates",
        type=_probability,
        default=0.0,
        metavar="P",
        help="push each event twice with probability P",
    )
    faults.add_argument(
        "--reorder",
        type=_probability,
        default=0.0,
        metavar="P",
        help="hold each push back (2 s) with probability P, so later ones overtake it",
    )
    faults.add_argument(
        "--delay",
        type=_seconds,
        default=0.0,
        metavar="S",
        help="send every push S seconds after its event",
    )
    faults.add_argument(
        "--rotate-keys-every",
        type=_positive,
        metavar="S",
        help="rotate the ES256 signing key every S seconds (the old one stays in the JWKS "
        "for a while)",
    )
    faults.add_argument(
        "--disable-after",
        type=_positive,
        default=DISABLE_AFTER_SECONDS,
        metavar="S",
        help="SYSTEM_DISABLE a connector after S seconds of failures without a success "
        "(default: 5 days, as DT)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_serve(args))
    except OSError as exc:
        print(
            f"dtpush emulator: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1


async def _serve(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed) if args.seed is not None else None
    state = EmulatorState.seeded(
        time.time(),
        rng=rng,
        token_ttl_seconds=args.token_ttl,
        disable_after_seconds=args.disable_after,
    )
    options = PushOptions(
        duplicates=args.duplicates,
        reorder=args.reorder,
        delay_seconds=args.delay,
        rotate_keys_every_seconds=args.rotate_keys_every,
        seed=args.seed,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running_emulator(
            args.host,
            args.port,
            state=state,
            push_options=options,
            sensors=not args.no_sensors,
            rate=args.rate,
            speed=args.speed,
            seed=args.seed,
        ) as emulator:
            for name, value in emulator.env.items():
                print(f"export {name}={shlex.quote(value)}")
            sys.stdout.flush()
            print(
                f"dtpush emulator: serving {emulator.url} (Ctrl-C stops)",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    print("dtpush emulator: stopped", file=sys.stderr, flush=True)
    return 0
