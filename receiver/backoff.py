"""The retry schedule of deliveries: exponential backoff with jitter, as a pure function.

After the n-th failed attempt a delivery waits a random time between `initial` and
`min(maximum, initial * 2 ** (n - 1))` seconds ("full jitter" above a floor of `initial`, so
a failing handler is never retried in a hot loop, and retries of many events that failed
together spread out instead of arriving in waves).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 1.0
    maximum: float = 600.0

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < self.initial:
            raise ValueError("backoff needs 0 <= initial <= maximum")

    def ceiling(self, failures: int) -> float:
        """The longest wait after `failures` failed attempts (at least 1)."""
        if failures < 1:
            raise ValueError("failures counts from 1")
        if failures > 64:  # 2 ** 63 times anything positive is past any sane maximum
            return self.maximum
        return min(self.maximum, self.initial * float(2 ** (failures - 1)))

    def delay(self, failures: int, draw: float) -> float:
        """The wait after `failures` failed attempts, for a uniform `draw` in [0, 1)."""
        ceiling = self.ceiling(failures)
        return self.initial + draw * (ceiling - self.initial)
