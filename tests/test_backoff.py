"""The retry schedule: exponential growth, capped, jittered, never a hot loop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.backoff import Backoff


def test_backoff_ceiling_doubles_per_failure_until_the_maximum() -> None:
    backoff = Backoff(initial=1.0, maximum=600.0)
    assert [backoff.ceiling(n) for n in range(1, 12)] == [
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 600.0,
    ]  # fmt: skip


def test_backoff_delay_spans_initial_to_ceiling_with_the_draw() -> None:
    backoff = Backoff(initial=1.0, maximum=600.0)
    assert backoff.delay(4, 0.0) == 1.0
    assert backoff.delay(4, 0.5) == 4.5
    assert backoff.delay(4, 0.999) == pytest.approx(7.993)


def test_backoff_huge_failure_count_stays_at_the_maximum() -> None:
    assert Backoff(initial=1.0, maximum=600.0).ceiling(10_000) == 600.0


@given(
    initial=st.floats(min_value=0.0, max_value=100.0),
    extra=st.floats(min_value=0.0, max_value=10_000.0),
    failures=st.integers(min_value=1, max_value=500),
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_backoff_delay_any_input_stays_within_initial_and_maximum(
    initial: float, extra: float, failures: int, draw: float
) -> None:
    backoff = Backoff(initial=initial, maximum=initial + extra)
    delay = backoff.delay(failures, draw)
    assert initial <= delay <= backoff.maximum
    assert delay <= backoff.ceiling(failures)


@given(failures=st.integers(min_value=1, max_value=60))
def test_backoff_ceiling_never_shrinks_with_more_failures(failures: int) -> None:
    backoff = Backoff(initial=0.5, maximum=300.0)
    assert backoff.ceiling(failures + 1) >= backoff.ceiling(failures)


def test_backoff_invalid_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(initial=5.0, maximum=1.0)
    with pytest.raises(ValueError):
        Backoff(initial=-1.0, maximum=1.0)
    with pytest.raises(ValueError):
        Backoff().ceiling(0)
