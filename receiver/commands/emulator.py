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

from receiver.emulator import EmulatorState, running_emulator


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
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_serve(args.host, args.port, args.seed, args.token_ttl))
    except OSError as exc:
        print(
            f"dtpush emulator: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1


async def _serve(host: str, port: int, seed: int | None, token_ttl: float) -> int:
    rng = random.Random(seed) if seed is not None else None
    state = EmulatorState.seeded(time.time(), rng=rng, token_ttl_seconds=token_ttl)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running_emulator(host, port, state=state) as emulator:
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
