"""`dtpush send`: sign one push as DT would, send it, print the answer."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import aiohttp

from receiver.errors import ConfigError
from receiver.events import EVENT_TYPES
from receiver.testing import Signer, make_event_body


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "send",
        help="sign and send one push, as DT would",
        description="Sign one push with X-Dt-Signature as a DT Data Connector does, POST it, "
        "and print the answer's status and body. Exit 0 on a 200, 1 otherwise.",
    )
    parser.add_argument("--url", required=True, help="the receiver's push URL")
    parser.add_argument("--secret", required=True, help="the connector's signature secret")
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--type",
        dest="event_type",
        default="temperature",
        help=f"event type of a fresh sample event (default temperature; one of {', '.join(EVENT_TYPES)})",
    )
    what.add_argument("--body", type=Path, help="file holding the exact body bytes to send")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default 10)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.body is not None:
        try:
            body = args.body.read_bytes()
        except OSError as exc:
            raise ConfigError(f"--body: cannot read {args.body}: {exc.strerror}") from None
    else:
        if args.event_type not in EVENT_TYPES:
            raise ConfigError(f"--type: unknown event type {args.event_type!r}")
        body = make_event_body(args.event_type)
    if not args.url.startswith(("http://", "https://")):
        raise ConfigError("--url: must be an http:// or https:// URL")
    headers = {"Content-Type": "application/json", **Signer(args.secret).headers(body)}
    try:
        status, text = asyncio.run(_post(args.url, body, headers, args.timeout))
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"dtpush: send failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(status)
    print(text)
    return 0 if status == 200 else 1


async def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        return response.status, await response.text()
