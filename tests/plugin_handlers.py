"""Handlers that the registry tests enable by `module:attribute` (`tests.plugin_handlers:…`)."""

from __future__ import annotations

from typing import Any

from receiver import Event, Handler, handler

calls: list[str] = []


@handler("temperature", "humidity")
async def warm(event: Event) -> None:
    calls.append(event.event_id)


@handler
async def everything(event: Event) -> None:
    calls.append(event.event_id)


async def undecorated(event: Event) -> None:
    calls.append(event.event_id)


not_a_handler = 42


class Recording(Handler):
    """Keeps what it handles; `limit` is an int option (a string from the environment is fine)."""

    event_types = ("temperature",)

    def __init__(self, limit: int | str = 10, *, label: str = "") -> None:
        super().__init__()
        try:
            self.limit = int(limit)
        except (TypeError, ValueError):
            raise ValueError(f"limit: expected an integer, got {limit!r}") from None
        self.label = label
        self.events: list[Event] = []

    async def handle(self, event: Event) -> None:
        self.events.append(event)


class NeedsDsn(Handler):
    def __init__(self, dsn: str) -> None:
        super().__init__()
        self.dsn = dsn

    async def handle(self, event: Event) -> None:
        pass


class Flexible(Handler):
    """Takes any options."""

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.options = options

    async def handle(self, event: Event) -> None:
        pass


class Bare(Handler):
    """No `__init__` of its own: takes no options."""

    async def handle(self, event: Event) -> None:
        pass


class Exploding(Handler):
    def __init__(self) -> None:
        super().__init__()
        raise RuntimeError("cannot reach the\nbackend")

    async def handle(self, event: Event) -> None:
        pass


instance = Bare()
