"""Dead letters of the NATS inbox: the messages of the `<stream>_DLQ` stream, read and written.

A dead letter is the event's body on `<prefix>.dead.<handler>` with headers saying which
event, which handler, how many attempts, the last error and when the event was received
(the time it failed is the message's own stream time). Quarantined bodies are dead letters
of the handler "quarantine" without an event id.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from receiver.inbox import nats_names as names
from receiver.inbox.base import QUARANTINE, DeadLetter


def burial_headers(
    event_headers: Mapping[str, str],
    handler: str,
    attempts: int,
    error: str,
    received_at: datetime | None,
) -> dict[str, str]:
    """The headers of the dead letter of an event message (whose headers are given)."""
    headers = {k: v for k, v in event_headers.items() if k not in (names.MSG_ID, names.ONLY)}
    headers.update(
        {
            names.HANDLER: names.header(handler),
            names.ATTEMPTS: str(attempts),
            names.ERROR: names.header(error),
            names.RECEIVED_AT: (received_at or datetime.now(UTC)).isoformat(),
        }
    )
    return headers


def quarantine_headers(reason: str) -> dict[str, str]:
    return {
        names.HANDLER: names.header(QUARANTINE),
        names.ATTEMPTS: "0",
        names.ERROR: names.header(reason),
        names.RECEIVED_AT: datetime.now(UTC).isoformat(),
    }


def replay_headers(letter: DeadLetter) -> dict[str, str]:
    """Headers making the event pending again for `letter.handler` alone (a fresh msg id)."""
    assert letter.event_id is not None
    mine = names.token(letter.handler)
    return {
        names.MSG_ID: f"{letter.event_id}/replay/{uuid.uuid4().hex}",
        names.EVENT_ID: names.header(letter.event_id),
        names.EVENT_TYPE: names.header(letter.event_type or ""),
        names.HANDLERS: mine,
        names.ONLY: mine,
    }


async def read(
    js: JetStreamContext, where: names.Names, handler: str | None
) -> list[tuple[int, DeadLetter]]:
    """Every dead letter (of `handler`, or all) with its stream sequence, oldest first."""
    subject = where.dead if handler is None else where.dead_subject(handler)
    letters: list[tuple[int, DeadLetter]] = []
    seq = 1
    while True:
        try:
            raw = await js.get_msg(where.dead_stream, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return letters
        assert raw.seq is not None
        seq = raw.seq + 1
        letters.append((raw.seq, letter(raw)))


def letter(raw: js_api.RawStreamMsg) -> DeadLetter:
    headers: dict[str, str] = raw.headers or {}
    failed_at = raw.time or datetime.now(UTC)
    received_at = parse_time(headers.get(names.RECEIVED_AT)) or failed_at
    return DeadLetter(
        event_id=names.unheader(headers.get(names.EVENT_ID)),
        event_type=names.unheader(headers.get(names.EVENT_TYPE)),
        handler=names.unheader(headers.get(names.HANDLER)) or QUARANTINE,
        attempts=int(headers.get(names.ATTEMPTS, "0") or 0),
        last_error=names.unheader(headers.get(names.ERROR)) or "",
        failed_at=failed_at,
        received_at=received_at,
        raw=raw.data or b"",
    )


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 time as Go or Python writes it (nanoseconds are cut to microseconds)."""
    if not text:
        return None
    text = text.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        rest = digits[:6] + rest[len(digits) :]
        text = f"{head}.{rest}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
