"""The built-in `log` handler: one compact JSON line per event.

Option `stream`: `stdout` (default), `stderr`, or the path of a file to append to. Each line
holds `event_id`, `event_type`, `device_id`, `project_id`, `timestamp` (RFC 3339 UTC),
`labels` and `data` (the push's `event.data` object as DT sent it), and is flushed at once.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC
from pathlib import Path
from typing import IO, TYPE_CHECKING

import orjson

from receiver.errors import HandlerError
from receiver.registry import Handler

if TYPE_CHECKING:
    from receiver.events import Event

_STANDARD = ("stdout", "stderr")


class LogHandler(Handler):
    """Writes every event as one JSON line to stdout, stderr or a file."""

    def __init__(self, stream: str | os.PathLike[str] = "stdout") -> None:
        super().__init__()
        if not isinstance(stream, str | os.PathLike) or not os.fspath(stream):
            raise ValueError(f"stream: expected stdout, stderr or a file path, got {stream!r}")
        self.stream = stream
        self._out: IO[str] | None = None
        self._owned = False

    async def start(self) -> None:
        if self.stream in _STANDARD:
            self._out = sys.stdout if self.stream == "stdout" else sys.stderr
            return
        path = Path(self.stream)
        try:
            self._out = await asyncio.to_thread(_open_for_append, path)
        except OSError as exc:
            raise HandlerError(self.name or "log", f"cannot open {path}: {exc}") from exc
        self._owned = True

    async def handle(self, event: Event) -> None:
        out = self._out
        if out is None:
            raise RuntimeError("the log handler is not running")
        line = orjson.dumps(
            {
                "event_id": event.event_id,
                "event_type": event.event_type,
                "device_id": event.device_id,
                "project_id": event.project_id,
                "timestamp": event.timestamp.astimezone(UTC),
                "labels": event.labels,
                "data": event.raw_data(),
            },
            option=orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE,
        )
        out.write(line.decode())
        out.flush()

    async def close(self) -> None:
        out, self._out = self._out, None
        if out is not None and self._owned:
            out.close()

    def ready(self) -> bool:
        return self._out is not None and not self._out.closed


def _open_for_append(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a", encoding="utf-8")
