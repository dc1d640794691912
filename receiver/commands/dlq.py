"""`dtpush dlq list|replay|purge`: the dead letters of the inbox (spec §5, §13)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import orjson

from receiver.app import build_inbox
from receiver.commands import settings_from
from receiver.inbox.base import DeadLetter, Inbox

T = TypeVar("T")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "dlq",
        help="list, replay or purge dead letters",
        description="The dead letters: "
        "(event, handler) pairs that failed delivery.max_attempts times, and quarantined bodies.",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    listing = verbs.add_parser("list", help="show dead letters")
    listing.add_argument("--handler", help="only this handler (or `quarantine`)")
    listing.add_argument("--event-type", help="only this event type")
    listing.add_argument("--json", action="store_true", help="one JSON document")
    listing.set_defaults(run=run_list)
    replay = verbs.add_parser(
        "replay",
        help="deliver dead letters again",
        description="Make matching dead letters pending again; the running (or next) "
        "`serve`/`worker` delivers them. Needs a selector or --all.",
    )
    replay.add_argument("--handler", help="dead letters of this handler")
    replay.add_argument("--event-type", help="dead letters of this event type")
    replay.add_argument("--id", dest="ids", action="append", metavar="EVENT_ID", help="repeatable")
    replay.add_argument("--all", action="store_true", help="every dead letter")
    replay.set_defaults(run=run_replay, replay_parser=replay)
    purge = verbs.add_parser("purge", help="delete every dead letter")
    purge.add_argument("--yes", action="store_true", help="really delete them")
    purge.set_defaults(run=run_purge, purge_parser=purge)


def _with_inbox(args: argparse.Namespace, work: Callable[[Inbox], Awaitable[T]]) -> T:
    inbox = build_inbox(settings_from(args))

    async def main() -> T:
        await inbox.open()
        try:
            return await work(inbox)
        finally:
            await inbox.close()

    return asyncio.run(main())


def _as_dict(letter: DeadLetter) -> dict[str, object]:
    return {
        "event_id": letter.event_id,
        "event_type": letter.event_type,
        "handler": letter.handler,
        "attempts": letter.attempts,
        "last_error": letter.last_error,
        "failed_at": letter.failed_at.isoformat(),
    }


def run_list(args: argparse.Namespace) -> int:
    letters = _with_inbox(args, lambda inbox: inbox.list_dead(args.handler, args.event_type))
    if args.json:
        sys.stdout.write(orjson.dumps([_as_dict(letter) for letter in letters]).decode() + "\n")
        return 0
    if not letters:
        print("no dead letters")
        return 0
    rows = [
        (
            letter.event_id or "-",
            letter.event_type or "-",
            letter.handler,
            str(letter.attempts),
            letter.failed_at.strftime("%Y-%m-%d %H:%M:%S"),
            letter.last_error,
        )
        for letter in letters
    ]
    titles = ("EVENT ID", "TYPE", "HANDLER", "ATTEMPTS", "FAILED AT (UTC)", "LAST ERROR")
    widths = [max(len(row[i]) for row in [titles, *rows]) for i in range(5)]
    for row in [titles, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
            + "  "
            + row[5]
        )
    return 0


def run_replay(args: argparse.Namespace) -> int:
    if not (args.handler or args.event_type or args.ids or args.all):
        args.replay_parser.error("say which dead letters: --handler, --event-type, --id or --all")
    count = _with_inbox(
        args,
        lambda inbox: inbox.replay(
            handler=args.handler, event_type=args.event_type, ids=args.ids, all=args.all
        ),
    )
    print(f"{count} dead letters pending again; `dtpush serve` or `dtpush worker` delivers them")
    return 0


def run_purge(args: argparse.Namespace) -> int:
    if not args.yes:
        args.purge_parser.error("purge deletes every dead letter: add --yes")
    count = _with_inbox(args, lambda inbox: inbox.purge())
    print(f"{count} dead letters deleted")
    return 0
