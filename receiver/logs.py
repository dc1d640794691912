"""Logging set-up: one line per fact, `event_name key=value …` on a terminal, JSON otherwise.

Call sites log a snake_case event name as the message and put their fields in
`extra={"fields": {...}}`; they never log a body, a token or a secret.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

import orjson

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


class KeyValueFormatter(logging.Formatter):
    """`12:00:01 info push_refused reason=bad_signature` — for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        parts = [stamp, record.levelname.lower(), record.getMessage()]
        parts += [f"{key}={value}" for key, value in _fields(record).items()]
        if record.exc_info:
            parts.append(self.formatException(record.exc_info).replace("\n", " | "))
        return " ".join(str(part) for part in parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line — for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(
    level: str | int = "INFO", *, json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Send dtpush's logs to `stream` (stderr), as JSON unless it is a terminal."""
    stream = stream or sys.stderr
    if json is None:
        json = not stream.isatty()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if json else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
