"""A real handler for the crash test: appends each delivered event id to a file (it takes
batches, as the built-in `sqlite` handler does, so the test covers batched delivery).

Each line is written with one `os.write` on an `O_APPEND` descriptor, so a SIGKILL of the
process never leaves half a line and never loses a line already written (the page cache
belongs to the kernel, not to the killed process).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from receiver.events import Event
from receiver.registry import Handler


class AppendLog(Handler):
    def __init__(self, *, path: str, **options: Any) -> None:
        super().__init__(**options)
        self.path = path
        self.fd = -1

    async def start(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    async def handle(self, event: Event) -> None:
        os.write(self.fd, event.event_id.encode() + b"\n")

    async def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    async def handle_batch(self, events: Sequence[Event]) -> None:
        os.write(self.fd, b"".join(event.event_id.encode() + b"\n" for event in events))
