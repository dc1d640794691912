"""`dtpush backfill --since TIME [--until TIME]`: fetch DT's event history into the inbox.

TIME is RFC 3339 (``2024-05-01T12:00:00Z``) or a duration back from now (``30m``, ``12h``,
``7d``). Every device of `connector.project_id` is read, its events in the window (of the
connector's event types) go into the inbox with its dedup by ``eventId``, one pending
delivery per enabled handler that wants them; the running (or next) ``serve``/``worker``
delivers them. Progress goes to stderr, the summary to stdout. DT credentials come from
``DT_SERVICE_ACCOUNT_*`` (``DT_API_URL``/``DT_TOKEN_URL`` point elsewhere).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TextIO

from receiver.app import build_inbox
from receiver.backfill import Backfill, Progress, Result, parse_time
from receiver.config import Settings, load_settings
from receiver.dt import Client, DtApiError
from receiver.errors import ConfigError, HandlerError, Unavailable
from receiver.events import Event
from receiver.logs import configure_logging
from receiver.registry import load_handlers


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "backfill",
        help="fetch missed events from DT's event history into the inbox",
        description="Fetch the events of every device of connector.project_id between --since "
        "and --until from DT's event history into the inbox (deduplicated by eventId); the "
        "running or next `dtpush serve`/`dtpush worker` delivers them. TIME is RFC 3339 "
        "(2024-05-01T12:00:00Z) or a duration back from now (30m, 12h, 7d).",
    )
    parser.add_argument("--since", required=True, metavar="TIME", help="start of the window")
    parser.add_argument("--until", metavar="TIME", help="end of the window (default: now)")
    parser.add_argument("--project", help="project id (default: connector.project_id)")
    parser.set_defaults(run=run)


def run(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    now: datetime | None = None,
) -> int:
    """Run the backfill; return the exit code (2: usage or configuration, 1: DT or inbox)."""
    env = os.environ if environ is None else environ
    out = stdout if stdout is not None else sys.stdout
    if stderr is None:
        configure_logging("WARNING")
    err = stderr if stderr is not None else sys.stderr
    try:
        settings = load_settings(getattr(args, "config", None), env=env)
        since, until = window(args.since, args.until, now or datetime.now(UTC))
        project_id = args.project or settings.connector.project_id
        if not project_id:
            raise ConfigError(
                "connector.project_id: not set (set DTPUSH_CONNECTOR_PROJECT_ID or --project)"
            )
        client = Client.from_env(env)
        if client.auth is None:
            raise ConfigError(
                "DT_SERVICE_ACCOUNT_KEY_ID: DT credentials not set (DT_SERVICE_ACCOUNT_KEY_ID, "
                "DT_SERVICE_ACCOUNT_SECRET, DT_SERVICE_ACCOUNT_EMAIL)"
            )
        result = asyncio.run(_backfill(settings, project_id, client, since, until, err))
    except (ConfigError, HandlerError) as exc:
        print(f"dtpush: error: {_one_line(exc)}", file=err)
        return 2
    except (DtApiError, Unavailable) as exc:
        print(f"dtpush: error: {_one_line(exc)}", file=err)
        return 1
    print(
        f"backfill: {result.devices} devices, {result.fetched} events fetched, "
        f"{result.new} new written to the inbox ({settings.inbox.path})",
        file=out,
    )
    return 0


def window(since: str, until: str | None, now: datetime) -> tuple[datetime, datetime]:
    """The window from the flags; `ConfigError` naming the flag when it is unusable."""
    try:
        start = parse_time(since, now)
    except ValueError as exc:
        raise ConfigError(f"--since: {exc}") from None
    end = now
    if until is not None:
        try:
            end = parse_time(until, now)
        except ValueError as exc:
            raise ConfigError(f"--until: {exc}") from None
    if start >= end:
        raise ConfigError("--since: must be before --until (or now)")
    return start, end


async def _backfill(
    settings: Settings,
    project_id: str,
    client: Client,
    since: datetime,
    until: datetime,
    err: TextIO,
) -> Result:
    handlers = load_handlers(settings.handlers.enabled, settings.handlers.options)
    inbox = build_inbox(settings)

    async def accept(event: Event) -> bool:
        wanted = [name for name, handler in handlers.items() if handler.wants(event.event_type)]
        return await inbox.put(event, wanted)

    def progress(step: Progress) -> None:
        print(
            f"backfill: {step.devices_done}/{step.devices_total} devices, "
            f"{step.fetched} events fetched, {step.new} new",
            file=err,
            flush=True,
        )

    await inbox.open()
    try:
        async with client:
            backfill = Backfill(
                client,
                project_id=project_id,
                accept=accept,
                event_types=settings.connector.event_types,
                labels=settings.connector.labels,
                progress=progress,
            )
            return await backfill.run(since, until)
    finally:
        await inbox.close()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
