"""Fault hooks: failed answers, non-JSON bodies, late answers and lost answers."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from receiver.emulator import EmulatorState
from tests.emulator.conftest import Clock

BODY = {"type": "HTTP_PUSH", "httpConfig": {"url": "https://example.com/e"}}


def _base(state: EmulatorState) -> str:
    return f"/v2/projects/{state.project_id}/dataconnectors"


async def test_fail_next_answers_429_with_retry_after_then_recovers(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    state.faults.fail_next(2, 429, retry_after=3, path_prefix="/v2")

    answers = [await client.get(_base(state), headers=headers) for _ in range(3)]

    assert [a.status for a in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "3"
    assert await answers[0].json() == {
        "error": "too many requests",
        "code": 429,
        "help": "https://docs.d21s.com/error/#429",
    }


async def test_fail_next_does_not_process_the_request(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    state.faults.fail_next(1, 503, method="POST", path_prefix="/v2")

    failed = await client.post(_base(state), json=BODY, headers=headers)

    assert failed.status == 503
    assert state.list_connectors(state.project_id) == []


async def test_fail_next_with_body_answers_it_verbatim(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    state.faults.fail_next(1, 502, body=b"<html>bad gateway</html>")

    response = await client.get(_base(state), headers=headers)

    assert response.status == 502
    assert await response.read() == b"<html>bad gateway</html>"


async def test_fail_next_matches_only_its_method_and_path(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    state.faults.fail_next(1, 500, method="POST", path_prefix="/v2")

    listed = await client.get(_base(state), headers=headers)
    created = await client.post(_base(state), json=BODY, headers=headers)

    assert listed.status == 200
    assert created.status == 500


async def test_delay_next_processes_then_answers_late(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    state.faults.delay_next(1, 5.0, method="POST")

    with pytest.raises(asyncio.TimeoutError):
        await client.post(
            _base(state), json=BODY, headers=headers, timeout=aiohttp.ClientTimeout(total=0.3)
        )

    assert len(state.list_connectors(state.project_id)) == 1
    later = await client.get(_base(state), headers=headers)
    assert later.status == 200


async def test_drop_next_processes_then_closes_without_answer(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    state.faults.drop_next(1, method="POST", path_prefix="/v2")

    with pytest.raises(aiohttp.ClientError):
        await client.post(_base(state), json=BODY, headers=headers)

    assert len(state.list_connectors(state.project_id)) == 1
    assert (await client.get(_base(state), headers=headers)).status == 200


async def test_fault_rules_are_used_up_in_order(state: EmulatorState) -> None:
    state.faults.fail_next(1, 503)
    state.faults.fail_next(1, 429)

    statuses = [
        rule.status if (rule := state.faults.take("GET", "/v2/x")) else None for _ in range(3)
    ]

    assert statuses == [503, 429, None]


async def test_token_endpoint_can_be_failed_too(
    client: TestClient[Any, Any], state: EmulatorState, clock: Clock
) -> None:
    state.faults.fail_next(1, 503, path_prefix="/oauth2/token")

    response = await client.post("/oauth2/token", data={})

    assert response.status == 503
