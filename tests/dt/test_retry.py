"""The retry schedule of the DT client (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from receiver.dt.retry import RetryPolicy, parse_retry_after

POLICY = RetryPolicy(retries=3, backoff_initial=0.5, backoff_max=4.0)


def test_retry_after_in_seconds() -> None:
    assert parse_retry_after("7") == 7.0


def test_retry_after_as_http_date_is_seconds_from_now() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

    assert parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now=now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-3", "1.5e9x"])
def test_retry_after_absent_or_unreadable_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_server_errors_back_off_exponentially_up_to_the_cap() -> None:
    waits = [POLICY.delay(retry=n, waited=0, status=503) for n in range(3)]

    assert waits == [0.5, 1.0, 2.0]
    assert RetryPolicy(retries=9, backoff_max=4.0).delay(retry=8, waited=0, status=500) == 4.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_every_documented_server_error_is_retried(status: int) -> None:
    assert POLICY.delay(retry=0, waited=0, status=status) is not None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 418])
def test_client_errors_are_not_retried(status: int) -> None:
    assert POLICY.delay(retry=0, waited=0, status=status) is None


def test_too_many_requests_waits_retry_after_capped() -> None:
    assert POLICY.delay(retry=0, waited=0, status=429, retry_after=3.0) == 3.0
    assert POLICY.delay(retry=0, waited=0, status=429, retry_after=3600.0) == 60.0


def test_too_many_requests_without_retry_after_waits_the_default() -> None:
    assert POLICY.delay(retry=0, waited=0, status=429) == 5.0


def test_retries_stop_after_the_configured_number() -> None:
    assert POLICY.delay(retry=3, waited=0, status=503) is None
    assert RetryPolicy(retries=0).delay(retry=0, waited=0, status=503) is None


def test_a_wait_beyond_the_budget_ends_the_retries() -> None:
    policy = RetryPolicy(budget=10.0)

    assert policy.delay(retry=0, waited=8.0, status=429, retry_after=5.0) is None
    assert policy.delay(retry=0, waited=4.0, status=429, retry_after=5.0) == 5.0


def test_request_that_may_have_arrived_is_not_resent_when_not_resendable() -> None:
    assert POLICY.delay(retry=0, waited=0, maybe_sent=True, resendable=False) is None
    assert POLICY.delay(retry=0, waited=0, maybe_sent=False, resendable=False) == 0.5
    assert POLICY.delay(retry=0, waited=0, maybe_sent=True, resendable=True) == 0.5


def test_service_unavailable_with_retry_after_waits_that_long() -> None:
    assert POLICY.delay(retry=0, waited=0, status=503, retry_after=7.0) == 7.0
    assert POLICY.delay(retry=0, waited=0, status=503, retry_after=999.0) == 60.0
