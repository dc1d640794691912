"""The token endpoint checks the service-account JWT; the API wants a valid bearer token."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from receiver.emulator import EmulatorState
from receiver.emulator.auth import DT_TOKEN_URL, GRANT_TYPE
from tests.emulator.conftest import Clock, assertion, bearer, exchange, token_url

HELP_400 = "https://docs.d21s.com/error/#400"


def _api(state: EmulatorState) -> str:
    return f"/v2/projects/{state.project_id}/dataconnectors"


async def test_token_valid_assertion_answers_bearer_token_for_an_hour(
    client: TestClient[Any, Any], state: EmulatorState, clock: Clock
) -> None:
    response = await exchange(
        client, assertion(state.service_account, aud=token_url(client), now=clock())
    )

    assert response.status == 200
    body = await response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    api = await client.get(_api(state), headers={"Authorization": f"Bearer {body['access_token']}"})
    assert api.status == 200


async def test_token_dt_audience_is_accepted_too(
    client: TestClient[Any, Any], state: EmulatorState, clock: Clock
) -> None:
    response = await exchange(
        client, assertion(state.service_account, aud=DT_TOKEN_URL, now=clock())
    )

    assert response.status == 200


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"secret": "not-the-secret-but-just-as-long-0123456789"}, "bad signature"),
        ({"kid": "unknownkeyid000000000"}, "unknown key id"),
        ({"iss": "someone@else.example"}, "iss"),
        ({"aud": "https://example.com/oauth2/token"}, "aud"),
        ({"exp_offset": -600.0}, "expired"),
        ({"exp_offset": 7200.0}, "1 hour"),
        ({"drop": ("exp",)}, "missing claim exp"),
        ({"drop": ("iss",)}, "missing claim iss"),
        ({"algorithm": "HS512", "secret": "k" * 64}, "HS256"),
    ],
)
async def test_token_bad_assertion_answers_400_with_dt_error_body(
    client: TestClient[Any, Any],
    state: EmulatorState,
    clock: Clock,
    overrides: dict[str, Any],
    message: str,
) -> None:
    options = dict(overrides)
    aud = options.pop("aud", token_url(client))
    exp_offset = options.pop("exp_offset", None)
    exp = None if exp_offset is None else clock() + exp_offset
    token = assertion(state.service_account, aud=aud, now=clock(), exp=exp, **options)

    response = await exchange(client, token)

    assert response.status == 400
    body = await response.json()
    assert body["code"] == 400
    assert body["help"] == HELP_400
    assert message in body["error"]
    assert state.service_account.secret not in body["error"]


async def test_token_unsigned_assertion_is_refused(
    client: TestClient[Any, Any], state: EmulatorState, clock: Clock
) -> None:
    token = assertion(state.service_account, aud=token_url(client), now=clock())
    header, claims, _ = token.split(".")
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","kid":"x"}').rstrip(b"=").decode()

    response = await exchange(client, f"{none_header}.{claims}.")

    assert response.status == 400
    assert header != none_header


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": GRANT_TYPE},
        {"assertion": "a.b.c", "grant_type": "client_credentials"},
        {"assertion": "not a jwt", "grant_type": GRANT_TYPE},
        {},
    ],
)
async def test_token_malformed_request_answers_400(
    client: TestClient[Any, Any], form: dict[str, str]
) -> None:
    response = await client.post("/oauth2/token", data=form)

    assert response.status == 400
    assert (await response.json())["code"] == 400


async def test_token_json_body_instead_of_form_answers_400(client: TestClient[Any, Any]) -> None:
    response = await client.post("/oauth2/token", json={"assertion": "x", "grant_type": GRANT_TYPE})

    assert response.status == 400


async def test_api_without_authorization_answers_401_with_dt_error_body(
    client: TestClient[Any, Any], state: EmulatorState
) -> None:
    response = await client.get(_api(state))

    assert response.status == 401
    body = await response.json()
    assert body["code"] == 401
    assert body["help"] == "https://docs.d21s.com/error/#401"
    assert body["error"]


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer made-up-token",
        "Bearer ",
        "Token abc",
        "Basic !!!",
        "Basic " + base64.b64encode(b"k:s").decode(),
    ],
)
async def test_api_invalid_authorization_answers_401(
    client: TestClient[Any, Any], state: EmulatorState, authorization: str
) -> None:
    response = await client.get(_api(state), headers={"Authorization": authorization})

    assert response.status == 401


async def test_api_access_token_expires_after_its_lifetime(
    client: TestClient[Any, Any], state: EmulatorState, clock: Clock
) -> None:
    headers = await bearer(client, state, clock)
    clock.advance(3599)
    assert (await client.get(_api(state), headers=headers)).status == 200

    clock.advance(2)

    assert (await client.get(_api(state), headers=headers)).status == 401


async def test_api_token_lifetime_is_configurable(
    client: TestClient[Any, Any], state: EmulatorState, clock: Clock
) -> None:
    state.token_ttl_seconds = 5
    response = await exchange(
        client, assertion(state.service_account, aud=token_url(client), now=clock())
    )
    body = await response.json()
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    clock.advance(6)

    assert body["expires_in"] == 5
    assert (await client.get(_api(state), headers=headers)).status == 401


async def test_api_expire_tokens_fault_invalidates_every_token_now(
    client: TestClient[Any, Any], state: EmulatorState, clock: Clock
) -> None:
    headers = await bearer(client, state, clock)

    state.expire_tokens()

    assert (await client.get(_api(state), headers=headers)).status == 401
    fresh = await bearer(client, state, clock)
    assert (await client.get(_api(state), headers=fresh)).status == 200


async def test_api_basic_auth_with_key_id_and_secret_is_accepted(
    client: TestClient[Any, Any], state: EmulatorState
) -> None:
    account = state.service_account
    credentials = base64.b64encode(f"{account.key_id}:{account.secret}".encode()).decode()

    response = await client.get(_api(state), headers={"Authorization": f"Basic {credentials}"})

    assert response.status == 200


def test_service_account_repr_hides_the_secret(state: EmulatorState) -> None:
    assert state.service_account.secret not in repr(state.service_account)
