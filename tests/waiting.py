"""Waiting on a condition with a deadline — the only way tests here wait for something."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

POLL_SECONDS = 0.05


async def until(condition: Callable[[], bool], *, within: float, what: str) -> None:
    """Return as soon as `condition()` holds; fail naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(POLL_SECONDS)


async def until_async(
    condition: Callable[[], Awaitable[bool]], *, within: float, what: str
) -> None:
    """`until` for a condition that has to await (an HTTP probe, say)."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(POLL_SECONDS)
