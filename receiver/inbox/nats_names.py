"""Names in NATS for the JetStream inbox: subject tokens, consumer names, header values.

Event types, handler names and event ids come from pushes and configuration; none of them
may break a subject (`.`, `*`, `>`, whitespace), a consumer name or a header line. A value
made only of letters, digits, `_` and `-` is used as it is; any other value becomes `_x`
followed by the hex of its UTF-8 bytes (which no plain value starts with, so the mapping
is reversible). Header values are percent-encoded.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

_PLAIN = re.compile(r"[A-Za-z0-9-][A-Za-z0-9_-]{0,63}")
_MARK = "_x"

# headers of an event message and of a dead letter
EVENT_ID = "Dtpush-Event-Id"
EVENT_TYPE = "Dtpush-Event-Type"
DEVICE_ID = "Dtpush-Device-Id"
EVENT_TIME = "Dtpush-Event-Time"
HANDLERS = "Dtpush-Handlers"  # the handlers subscribed when it was put
ONLY = "Dtpush-Only-Handler"  # a replay: for this handler alone
HANDLER = "Dtpush-Handler"
ATTEMPTS = "Dtpush-Attempts"
ERROR = "Dtpush-Error"
RECEIVED_AT = "Dtpush-Received-At"
MSG_ID = "Nats-Msg-Id"


def token(value: str) -> str:
    """`value` as one subject token (and consumer-name part), reversibly."""
    if _PLAIN.fullmatch(value):
        return value
    return _MARK + value.encode().hex()


def untoken(text: str) -> str:
    if text.startswith(_MARK):
        try:
            return bytes.fromhex(text[len(_MARK) :]).decode()
        except ValueError:
            return text
    return text


def header(value: str) -> str:
    return quote(value, safe="")


def unheader(value: str | None) -> str | None:
    return None if value is None else unquote(value)


class Names:
    """The subjects, streams and consumer names of one deployment (stream, subject prefix)."""

    def __init__(self, stream: str, prefix: str) -> None:
        self.stream = stream
        self.dead_stream = f"{stream}_DLQ"
        self.prefix = prefix
        self.events = f"{prefix}.events.>"
        self.dead = f"{prefix}.dead.>"
        self._consumer_prefix = re.sub(r"[^A-Za-z0-9_-]", "_", prefix)

    def event_subject(self, event_type: str) -> str:
        return f"{self.prefix}.events.{token(event_type)}"

    def dead_subject(self, handler: str) -> str:
        return f"{self.prefix}.dead.{token(handler)}"

    def handler_of_dead_subject(self, subject: str) -> str:
        return untoken(subject.rsplit(".", 1)[-1])

    def consumer(self, handler: str) -> str:
        return f"{self._consumer_prefix}-{token(handler)}"
