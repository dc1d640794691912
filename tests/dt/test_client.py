"""The DT client's transport against a recording server on loopback: authentication,
retries, faults and errors."""

from __future__ import annotations

import logging
import socket

import jwt
import pytest

from receiver.dt import (
    BadRequest,
    Client,
    ConfigurationError,
    Conflict,
    ConnectionFailed,
    DataConnector,
    InternalServerError,
    NotFound,
    Timeout,
    TooManyRequests,
    Unauthorized,
    UnknownError,
)
from tests.dt.conftest import EMAIL, KEY_ID, KEY_SECRET, PROJECT, FakeDt, Sleeps, make_client
from tests.dt.recorder import API, TOKEN_PATH, Answer, connector_json, dt_error

LIST = f"{API}/projects/{PROJECT}/dataconnectors"
ONE = f"{LIST}/dc1"


def listing(*ids: str, next_page: str = "") -> Answer:
    return Answer(
        json={
            "dataConnectors": [connector_json(PROJECT, i) for i in ids],
            "nextPageToken": next_page,
        }
    )


async def test_token_exchange_is_a_form_encoded_jwt_bearer_grant(
    dt: FakeDt, client: Client
) -> None:
    dt.recorder.always("GET", ONE, Answer(json=connector_json(PROJECT, "dc1")))

    await DataConnector.get_data_connector("dc1", PROJECT, client=client)

    (token_request,) = dt.recorder.token_requests
    assert token_request.method == "POST"
    assert token_request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = token_request.form
    assert set(form) == {"assertion", "grant_type"}
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    header = jwt.get_unverified_header(form["assertion"])
    claims = jwt.decode(form["assertion"], KEY_SECRET, algorithms=["HS256"], audience=dt.token_url)
    assert header["kid"] == KEY_ID
    assert claims["iss"] == EMAIL
    assert claims["exp"] - claims["iat"] <= 3600


async def test_api_requests_carry_the_bearer_token_which_is_reused(
    dt: FakeDt, client: Client
) -> None:
    dt.recorder.always("GET", ONE, Answer(json=connector_json(PROJECT, "dc1")))

    await DataConnector.get_data_connector("dc1", PROJECT, client=client)
    await DataConnector.get_data_connector("dc1", PROJECT, client=client)

    assert len(dt.recorder.token_requests) == 1
    gets = dt.recorder.to("GET", ONE)
    assert [r.headers["authorization"] for r in gets] == ["Bearer token-1", "Bearer token-1"]
    assert all(r.headers["accept"] == "application/json" for r in gets)


async def test_token_endpoint_refusing_the_credentials_raises_unauthorized(
    dt: FakeDt, client: Client
) -> None:
    dt.recorder.on("POST", TOKEN_PATH, dt_error(400, "invalid_grant"))

    with pytest.raises(Unauthorized) as caught:
        await DataConnector.list_data_connectors(PROJECT, client=client)

    assert "could not authenticate" in str(caught.value)
    assert dt.recorder.api_requests == []


async def test_expired_token_mid_run_is_replaced_once_and_the_call_succeeds(
    dt: FakeDt, client: Client
) -> None:
    dt.recorder.on("GET", ONE, Answer(json=connector_json(PROJECT, "dc1")))
    dt.recorder.on("GET", ONE, dt_error(401, "token expired"))
    dt.recorder.on("GET", ONE, Answer(json=connector_json(PROJECT, "dc1")))

    await DataConnector.get_data_connector("dc1", PROJECT, client=client)
    connector = await DataConnector.get_data_connector("dc1", PROJECT, client=client)

    assert connector.data_connector_id == "dc1"
    assert len(dt.recorder.token_requests) == 2
    auths = [r.headers["authorization"] for r in dt.recorder.to("GET", ONE)]
    assert auths == ["Bearer token-1", "Bearer token-1", "Bearer token-2"]


async def test_a_second_401_with_a_fresh_token_raises_unauthorized(
    dt: FakeDt, client: Client
) -> None:
    dt.recorder.always("GET", ONE, dt_error(401, "no access"))

    with pytest.raises(Unauthorized):
        await DataConnector.get_data_connector("dc1", PROJECT, client=client)

    assert len(dt.recorder.to("GET", ONE)) == 2
    assert len(dt.recorder.token_requests) == 2


async def test_too_many_requests_waits_retry_after_then_succeeds(
    dt: FakeDt, client: Client, sleeps: Sleeps
) -> None:
    dt.recorder.on("GET", LIST, Answer(429, json={"error": "slow down", "code": 429}))
    dt.recorder.on(
        "GET", LIST, Answer(429, json={"error": "slow down"}, headers={"Retry-After": "2"})
    )
    dt.recorder.on("GET", LIST, listing("dc1"))

    connectors = await DataConnector.list_data_connectors(PROJECT, client=client)

    assert [c.data_connector_id for c in connectors] == ["dc1"]
    assert sleeps.delays == [5.0, 2.0]  # the default without Retry-After, then DT's value


async def test_too_many_requests_beyond_the_retries_raises_with_retry_after(
    dt: FakeDt, sleeps: Sleeps
) -> None:
    dt.recorder.always("GET", LIST, Answer(429, json={"error": "x"}, headers={"Retry-After": "1"}))

    async with make_client(dt, sleeps, request_attempts=1) as client:
        with pytest.raises(TooManyRequests) as caught:
            await DataConnector.list_data_connectors(PROJECT, client=client)

    assert caught.value.retry_after == 1.0
    assert len(dt.recorder.to("GET", LIST)) == 2


async def test_service_unavailable_then_success(dt: FakeDt, client: Client, sleeps: Sleeps) -> None:
    dt.recorder.on("GET", LIST, dt_error(503, "unavailable"), dt_error(502, "bad gateway"))
    dt.recorder.on("GET", LIST, listing("dc1"))

    connectors = await DataConnector.list_data_connectors(PROJECT, client=client)

    assert len(connectors) == 1
    assert len(sleeps.delays) == 2
    assert sleeps.delays[1] > sleeps.delays[0]


async def test_server_errors_beyond_the_retries_raise_the_typed_error(
    dt: FakeDt, client: Client
) -> None:
    dt.recorder.always("GET", LIST, dt_error(500, "boom"))

    with pytest.raises(InternalServerError) as caught:
        await DataConnector.list_data_connectors(PROJECT, client=client)

    assert caught.value.status == 500
    assert len(dt.recorder.to("GET", LIST)) == 4  # first try + request_attempts (3)


async def test_timeout_then_success(dt: FakeDt, sleeps: Sleeps) -> None:
    dt.recorder.on("GET", LIST, Answer(json={"dataConnectors": []}, delay=5.0))
    dt.recorder.on("GET", LIST, listing("dc1"))

    async with make_client(dt, sleeps, request_timeout=0.3) as client:
        connectors = await DataConnector.list_data_connectors(PROJECT, client=client)

    assert [c.data_connector_id for c in connectors] == ["dc1"]
    assert len(dt.recorder.to("GET", LIST)) == 2


async def test_persistent_timeouts_raise_timeout(dt: FakeDt, sleeps: Sleeps) -> None:
    dt.recorder.always("GET", LIST, Answer(json={}, delay=5.0))

    async with make_client(dt, sleeps, request_timeout=0.2, request_attempts=1) as client:
        with pytest.raises(Timeout) as caught:
            await DataConnector.list_data_connectors(PROJECT, client=client)

    assert caught.value.maybe_sent
    assert len(dt.recorder.to("GET", LIST)) == 2


async def test_unreachable_api_raises_connection_failed_after_retries(
    dt: FakeDt, sleeps: Sleeps
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with Client(
        dt.auth(), base_url=f"http://127.0.0.1:{port}/v2", request_timeout=2, sleep=sleeps
    ) as client:
        with pytest.raises(ConnectionFailed) as caught:
            await DataConnector.list_data_connectors(PROJECT, client=client)

    assert not caught.value.maybe_sent
    assert len(sleeps.delays) == 3


async def test_non_json_error_body_gives_the_typed_error_with_a_short_excerpt(
    dt: FakeDt, client: Client
) -> None:
    page = "<html><body>" + "Bad Gateway " * 100 + "</body></html>"
    dt.recorder.always("GET", ONE, Answer(409, text=page))

    with pytest.raises(Conflict) as caught:
        await DataConnector.get_data_connector("dc1", PROJECT, client=client)

    assert caught.value.status == 409
    assert caught.value.error is None
    assert caught.value.excerpt is not None
    assert caught.value.excerpt.startswith("<html><body>Bad Gateway")
    assert len(str(caught.value)) < 300


async def test_dt_error_body_fields_are_carried(dt: FakeDt, client: Client) -> None:
    dt.recorder.always("GET", ONE, dt_error(404, "data connector not found"))

    with pytest.raises(NotFound) as caught:
        await DataConnector.get_data_connector("dc1", PROJECT, client=client)

    error = caught.value
    assert (error.status, error.error, error.code) == (404, "data connector not found", 404)
    assert error.help == "https://docs.d21s.com/error/#404"
    assert "data connector not found" in str(error)


async def test_bad_request_is_not_retried(dt: FakeDt, client: Client) -> None:
    dt.recorder.always("GET", ONE, dt_error(400, "invalid id"))

    with pytest.raises(BadRequest):
        await DataConnector.get_data_connector("dc1", PROJECT, client=client)

    assert len(dt.recorder.to("GET", ONE)) == 1


async def test_undocumented_status_is_an_unknown_error(dt: FakeDt, client: Client) -> None:
    dt.recorder.always("GET", ONE, Answer(418, text="teapot"))

    with pytest.raises(UnknownError) as caught:
        await DataConnector.get_data_connector("dc1", PROJECT, client=client)

    assert caught.value.status == 418


async def test_any_2xx_is_success_even_204_without_a_body(dt: FakeDt, client: Client) -> None:
    dt.recorder.always("DELETE", ONE, Answer(204))
    dt.recorder.always("POST", ONE + ":sync", Answer(202, json={}))

    await DataConnector.delete_data_connector("dc1", PROJECT, client=client)
    await DataConnector.sync_data_connector("dc1", PROJECT, client=client)

    assert len(dt.recorder.api_requests) == 2


async def test_missing_credentials_raise_a_configuration_error_before_any_request(
    dt: FakeDt,
) -> None:
    async with Client(None, base_url=dt.base_url) as client:
        with pytest.raises(ConfigurationError, match="DT_SERVICE_ACCOUNT_KEY_ID"):
            await DataConnector.list_data_connectors(PROJECT, client=client)

    assert dt.recorder.requests == []


@pytest.mark.parametrize(
    "options",
    [{"request_timeout": 0}, {"request_timeout": -1}, {"request_attempts": -1}],
)
def test_unusable_client_options_are_configuration_errors(options: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        Client(None, **options)  # type: ignore[arg-type]


async def test_no_secret_or_token_ever_reaches_the_logs(
    dt: FakeDt, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dt.recorder.on("GET", LIST, dt_error(503, "busy"), listing("dc1"))
    dt.recorder.on("GET", ONE, dt_error(401, "expired"))
    dt.recorder.always("GET", ONE, Answer(json=connector_json(PROJECT, "dc1", secret="push-s3c")))
    dt.recorder.always("PATCH", ONE, Answer(json=connector_json(PROJECT, "dc1", secret="push-s3c")))

    await DataConnector.list_data_connectors(PROJECT, client=client)
    await DataConnector.get_data_connector("dc1", PROJECT, client=client)
    await DataConnector.update_data_connector(
        "dc1",
        PROJECT,
        config=DataConnector.HttpPushConfig(signature_secret="push-s3c"),
        client=client,
    )
    with pytest.raises(NotFound):
        await DataConnector.get_data_connector("nope", PROJECT, client=client)

    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert "dt_request_retry" in logged  # the log was captured at all
    for forbidden in (KEY_SECRET, "push-s3c", "token-1", "token-2"):
        assert forbidden not in logged
    tokens = [r.form["assertion"] for r in dt.recorder.token_requests]
    assert all(t not in logged for t in tokens)
