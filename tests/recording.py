"""A real handler that records what it is given, for tests (registered like any other)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from receiver.events import Event
from receiver.registry import Handler


class RecordingHandler(Handler):
    """Records every event it handles; can be told to fail its first calls or always."""

    def __init__(self, *, fail_first: int = 0, always_fail: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.fail_first = fail_first
        self.always_fail = always_fail
        self.calls = 0
        self.events: list[Event] = []
        self._changed = asyncio.Condition()

    async def handle(self, event: Event) -> None:
        self.calls += 1
        if self.always_fail or self.calls <= self.fail_first:
            raise RuntimeError(f"planned failure {self.calls}")
        self.events.append(event)
        async with self._changed:
            self._changed.notify_all()

    @property
    def ids(self) -> list[str]:
        return [event.event_id for event in self.events]

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Event]:
        """Wait until at least `count` events were handled, or fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while len(self.events) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"handled {len(self.events)} events, wanted {count}")
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except TimeoutError:
                    continue
        return self.events
