"""Injected faults for the REST side: failed answers, slow answers, lost answers.

Tests (and later the demo's fault flags) arm rules; every request takes the first armed
rule that matches its method and path, which counts down by one.

- `fail_next(n, status, retry_after=, body=)`: the next `n` matching requests are answered
  `status` *without being processed* (DT's error body, or `body` as-is when given, e.g. a
  proxy's HTML page), with ``Retry-After`` when asked.
- `delay_next(n, seconds)`: the next `n` matching requests are processed, then answered
  `seconds` later (longer than a client's timeout = an answer lost after the server acted).
- `drop_next(n)`: the next `n` matching requests are processed, then the connection is
  closed without an answer. (aiohttp's client silently retries an idempotent request once
  after such a drop; arm two drops to make a GET fail.)
- `delay_all(seconds)`: every answer is delayed (0 turns it off).

Expiring every access token is `EmulatorState.expire_tokens()`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FaultRule:
    kind: str  # "fail" | "delay" | "drop"
    remaining: int
    method: str | None = None
    path_prefix: str = "/"
    status: int = 503
    retry_after: str | None = None
    body: bytes | None = None
    seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and (self.method is None or self.method.upper() == method.upper())
            and path.startswith(self.path_prefix)
        )


class Faults:
    """The armed fault rules of one emulator."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self.delay_seconds = 0.0

    def fail_next(
        self,
        count: int,
        status: int,
        *,
        retry_after: int | str | None = None,
        body: bytes | None = None,
        method: str | None = None,
        path_prefix: str = "/",
    ) -> FaultRule:
        rule = FaultRule(
            "fail",
            count,
            method,
            path_prefix,
            status=status,
            retry_after=None if retry_after is None else str(retry_after),
            body=body,
        )
        self.rules.append(rule)
        return rule

    def delay_next(
        self, count: int, seconds: float, *, method: str | None = None, path_prefix: str = "/"
    ) -> FaultRule:
        rule = FaultRule("delay", count, method, path_prefix, seconds=seconds)
        self.rules.append(rule)
        return rule

    def drop_next(
        self, count: int, *, method: str | None = None, path_prefix: str = "/"
    ) -> FaultRule:
        rule = FaultRule("drop", count, method, path_prefix)
        self.rules.append(rule)
        return rule

    def delay_all(self, seconds: float) -> None:
        self.delay_seconds = max(seconds, 0.0)

    def take(self, method: str, path: str) -> FaultRule | None:
        """The rule this request triggers (counted down), if any."""
        for rule in self.rules:
            if rule.matches(method, path):
                rule.remaining -= 1
                if rule.remaining == 0:
                    self.rules.remove(rule)
                return rule
        return None

    def clear(self) -> None:
        self.rules.clear()
        self.delay_seconds = 0.0
