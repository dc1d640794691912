"""The Data Connector resource, devices and event history: the exact requests DT documents,
and a create whose answer is lost."""

from __future__ import annotations

from typing import Any

import pytest

from receiver.dt import (
    ACTIVE,
    HTTP_PUSH,
    TEMPERATURE,
    TOUCH,
    USER_DISABLED,
    AmbiguousConnectors,
    Client,
    ConfigurationError,
    ConnectionFailed,
    DataConnector,
    HttpPushConfig,
    InternalServerError,
    Metric,
    Timeout,
    UnexpectedResponse,
    outcome_unknown,
)
from receiver.dt.connector import update_body
from tests.dt.conftest import PROJECT, FakeDt, Sleeps, make_client
from tests.dt.recorder import API, Answer, Recorded, connector_json, dt_error

LIST = f"{API}/projects/{PROJECT}/dataconnectors"
ONE = f"{LIST}/dc1"
URL = "https://receiver.example.com/events"


def echo_created(store: list[dict[str, Any]], **answer: Any) -> Any:
    """A create that really creates (keeps the connector), then answers as told."""

    def create(request: Recorded) -> Answer:
        body = request.json
        connector = {
            "name": f"projects/{PROJECT}/dataconnectors/dc{len(store) + 1}",
            "displayName": body.get("displayName", ""),
            "type": body["type"],
            "status": body["status"],
            "events": body["events"],
            "labels": body["labels"],
            "httpConfig": {"headers": {}, "signatureSecret": "", **body["httpConfig"]},
        }
        store.append(connector)
        return Answer(**({"json": connector} | answer))

    return create


def list_store(store: list[dict[str, Any]]) -> Any:
    return lambda request: Answer(json={"dataConnectors": list(store), "nextPageToken": ""})


async def test_list_follows_every_page_with_page_tokens(dt: FakeDt, client: Client) -> None:
    dt.recorder.on(
        "GET",
        LIST,
        Answer(json={"dataConnectors": [connector_json(PROJECT, "a")], "nextPageToken": "p2"}),
        Answer(json={"dataConnectors": [connector_json(PROJECT, "b")], "nextPageToken": "p3"}),
        Answer(json={"dataConnectors": [connector_json(PROJECT, "c")], "nextPageToken": ""}),
        Answer(json={"dataConnectors": [connector_json(PROJECT, "a")], "nextPageToken": ""}),
    )

    first = await DataConnector.list_data_connectors(PROJECT, client=client)
    second = await DataConnector.list_data_connectors(PROJECT, client=client)

    assert [c.data_connector_id for c in first] == ["a", "b", "c"]
    assert [c.data_connector_id for c in second] == ["a"]
    queries = [r.query for r in dt.recorder.to("GET", LIST)]
    # the second listing starts afresh: no page token leaks from the first (the SDK's bug)
    assert queries == [[], [("pageToken", "p2")], [("pageToken", "p3")], []]


async def test_a_page_token_that_repeats_is_an_error_not_a_loop(dt: FakeDt, client: Client) -> None:
    dt.recorder.always("GET", LIST, Answer(json={"dataConnectors": [], "nextPageToken": "same"}))

    with pytest.raises(UnexpectedResponse):
        await DataConnector.list_data_connectors(PROJECT, client=client)


async def test_get_gives_the_sdk_attributes(dt: FakeDt, client: Client) -> None:
    raw = connector_json(
        PROJECT,
        "dc1",
        display_name="mine",
        url=URL,
        secret="zq-secret",
        events=[TOUCH],
        labels=["a"],
    )
    raw["httpConfig"]["headers"] = {"X-Api-Key": "zq-key"}
    dt.recorder.always("GET", ONE, Answer(json=raw))

    dc = await DataConnector.get_data_connector("dc1", PROJECT, client=client)

    assert dc.data_connector_id == "dc1"
    assert dc.project_id == PROJECT
    assert dc.display_name == "mine"
    assert dc.data_connector_type == HTTP_PUSH == DataConnector.HTTP_PUSH
    assert dc.status == ACTIVE == DataConnector.ACTIVE
    assert dc.event_types == [TOUCH]
    assert dc.labels == ["a"]
    assert dc.config == HttpPushConfig(
        url=URL, signature_secret="zq-secret", headers={"X-Api-Key": "zq-key"}
    )
    assert dc.raw == raw
    assert "zq-" not in repr(dc)


async def test_other_connector_types_have_no_config(dt: FakeDt, client: Client) -> None:
    raw = {
        "name": f"projects/{PROJECT}/dataconnectors/dc1",
        "displayName": "bus",
        "type": "AZURE_SERVICE_BUS",
        "status": "ACTIVE",
        "events": [],
        "labels": [],
        "azureServiceBusConfig": {"url": "sb://x"},
    }
    dt.recorder.always("GET", ONE, Answer(json=raw))

    dc = await DataConnector.get_data_connector("dc1", PROJECT, client=client)

    assert dc.config is None
    assert dc.data_connector_type == "AZURE_SERVICE_BUS"


async def test_create_posts_the_sdk_body_to_the_collection(dt: FakeDt, client: Client) -> None:
    store: list[dict[str, Any]] = []
    dt.recorder.always("POST", LIST, echo_created(store))

    dc = await DataConnector.create_data_connector(
        PROJECT,
        DataConnector.HttpPushConfig(url=URL, signature_secret="sig", headers={"X-A": "1"}),
        display_name="dtpush",
        event_types=[TOUCH, TEMPERATURE],
        labels=["name"],
        client=client,
    )

    (create,) = dt.recorder.to("POST", LIST)
    assert create.headers["content-type"] == "application/json"
    assert create.json == {
        "status": "ACTIVE",
        "events": ["touch", "temperature"],
        "labels": ["name"],
        "displayName": "dtpush",
        "type": "HTTP_PUSH",
        "httpConfig": {"url": URL, "signatureSecret": "sig", "headers": {"X-A": "1"}},
    }
    assert dc.data_connector_id == "dc1"
    assert dc.config is not None
    assert dc.config.url == URL


async def test_create_without_display_name_leaves_it_out(dt: FakeDt, client: Client) -> None:
    dt.recorder.always("POST", LIST, echo_created([]))

    await DataConnector.create_data_connector(PROJECT, HttpPushConfig(url=URL), client=client)

    (create,) = dt.recorder.to("POST", LIST)
    assert "displayName" not in create.json
    assert create.json["events"] == []
    assert create.json["labels"] == []


async def test_update_sends_only_the_given_fields_with_an_update_mask(
    dt: FakeDt, client: Client
) -> None:
    dt.recorder.always("PATCH", ONE, Answer(json=connector_json(PROJECT, "dc1")))

    await DataConnector.update_data_connector(
        "dc1",
        PROJECT,
        config=HttpPushConfig(url=URL, signature_secret="new", headers={}),
        display_name="renamed",
        status=USER_DISABLED,
        event_types=[],
        labels=["name", "room"],
        client=client,
    )
    await DataConnector.update_data_connector(
        "dc1", PROJECT, config=HttpPushConfig(signature_secret="newer"), client=client
    )

    full, secret_only = dt.recorder.to("PATCH", ONE)
    assert full.query == [
        (
            "update_mask",
            "displayName,httpConfig.url,httpConfig.signatureSecret,httpConfig.headers,"
            "status,events,labels",
        )
    ]
    assert full.json == {
        "displayName": "renamed",
        "httpConfig": {"url": URL, "signatureSecret": "new", "headers": {}},
        "status": "USER_DISABLED",
        "events": [],
        "labels": ["name", "room"],
    }
    assert secret_only.query == [("update_mask", "httpConfig.signatureSecret")]
    assert secret_only.json == {"httpConfig": {"signatureSecret": "newer"}}


def test_update_with_nothing_to_change_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        update_body(None, None, None, None, None)


@pytest.mark.parametrize("bad", ["touch", [1]])
def test_event_types_must_be_a_list_of_strings(bad: Any) -> None:
    with pytest.raises(ConfigurationError):
        update_body(None, None, None, bad, None)


async def test_delete_sync_and_metrics_use_the_documented_paths(dt: FakeDt, client: Client) -> None:
    dt.recorder.always("DELETE", ONE, Answer(json={}))
    dt.recorder.always("POST", ONE + ":sync", Answer(json={}))
    dt.recorder.always(
        "GET",
        ONE + ":metrics",
        Answer(json={"metrics": {"successCount": 12, "errorCount": "3", "latency99p": "0.25s"}}),
    )

    await DataConnector.sync_data_connector("dc1", PROJECT, client=client)
    metric = await DataConnector.get_metrics("dc1", PROJECT, client=client)
    await DataConnector.delete_data_connector("dc1", PROJECT, client=client)

    assert [(r.method, r.path) for r in dt.recorder.api_requests] == [
        ("POST", ONE + ":sync"),
        ("GET", ONE + ":metrics"),
        ("DELETE", ONE),
    ]
    assert dt.recorder.api_requests[0].body == b""
    assert isinstance(metric, Metric)
    assert (metric.success_count, metric.error_count) == (12, 3)
    assert metric.latency == "0.25s"
    assert metric.latency_seconds == 0.25


async def test_metrics_with_an_unreadable_latency_is_an_unexpected_response(
    dt: FakeDt, client: Client
) -> None:
    dt.recorder.always(
        "GET",
        ONE + ":metrics",
        Answer(json={"metrics": {"successCount": 1, "errorCount": 0, "latency99p": "fast"}}),
    )

    with pytest.raises(UnexpectedResponse):
        await DataConnector.get_metrics("dc1", PROJECT, client=client)


async def test_create_whose_answer_times_out_is_not_sent_again(dt: FakeDt, sleeps: Sleeps) -> None:
    store: list[dict[str, Any]] = []
    dt.recorder.always("POST", LIST, echo_created(store, delay=5.0))

    async with make_client(dt, sleeps, request_timeout=0.3) as client:
        with pytest.raises(Timeout) as caught:
            await DataConnector.create_data_connector(
                PROJECT, HttpPushConfig(url=URL), display_name="dtpush", client=client
            )

    assert outcome_unknown(caught.value)
    assert len(dt.recorder.to("POST", LIST)) == 1
    assert len(store) == 1


async def test_create_whose_connection_drops_is_adopted_from_the_listing(
    dt: FakeDt, client: Client
) -> None:
    store: list[dict[str, Any]] = []
    dt.recorder.always("POST", LIST, echo_created(store, drop=True))
    dt.recorder.always("GET", LIST, list_store(store))

    dc = await DataConnector.create_or_adopt(
        PROJECT, HttpPushConfig(url=URL, signature_secret="s"), display_name="dtpush",
        client=client,
    )  # fmt: skip

    assert len(dt.recorder.to("POST", LIST)) == 1
    assert len(store) == 1
    assert dc.data_connector_id == "dc1"
    assert dc.display_name == "dtpush"


async def test_create_or_adopt_raises_the_lost_answer_when_nothing_was_created(
    dt: FakeDt, client: Client
) -> None:
    store: list[dict[str, Any]] = []
    dt.recorder.always("POST", LIST, Answer(drop=True))
    dt.recorder.always("GET", LIST, list_store(store))

    with pytest.raises(ConnectionFailed):
        await DataConnector.create_or_adopt(
            PROJECT, HttpPushConfig(url=URL), display_name="dtpush", client=client
        )

    assert len(dt.recorder.to("POST", LIST)) == 1


async def test_create_or_adopt_with_several_matches_names_them(dt: FakeDt, client: Client) -> None:
    store = [
        connector_json(PROJECT, "x1", display_name="dtpush", url=URL),
        connector_json(PROJECT, "x2", display_name="dtpush", url=URL),
    ]
    dt.recorder.always("POST", LIST, dt_error(504, "gateway timeout"))
    dt.recorder.always("GET", LIST, list_store(store))

    with pytest.raises(AmbiguousConnectors) as caught:
        await DataConnector.create_or_adopt(
            PROJECT, HttpPushConfig(url=URL), display_name="dtpush", client=client
        )

    assert caught.value.ids == ("x1", "x2")
    assert len(dt.recorder.to("POST", LIST)) == 1


async def test_create_answered_500_is_not_sent_again(dt: FakeDt, client: Client) -> None:
    dt.recorder.always("POST", LIST, dt_error(500, "internal"))

    with pytest.raises(InternalServerError) as caught:
        await DataConnector.create_data_connector(PROJECT, HttpPushConfig(url=URL), client=client)

    assert outcome_unknown(caught.value)
    assert len(dt.recorder.to("POST", LIST)) == 1


async def test_create_answered_503_or_429_is_sent_again(dt: FakeDt, client: Client) -> None:
    store: list[dict[str, Any]] = []
    dt.recorder.on("POST", LIST, dt_error(503, "busy"), dt_error(429, "slow"))
    dt.recorder.always("POST", LIST, echo_created(store))

    await DataConnector.create_data_connector(PROJECT, HttpPushConfig(url=URL), client=client)

    assert len(dt.recorder.to("POST", LIST)) == 3
    assert len(store) == 1


async def test_delete_whose_answer_was_lost_counts_a_later_404_as_deleted(
    dt: FakeDt, sleeps: Sleeps
) -> None:
    # (a timeout: aiohttp itself resends a DELETE whose reused connection drops)
    dt.recorder.on("DELETE", ONE, Answer(json={}, delay=5.0))
    dt.recorder.always("DELETE", ONE, dt_error(404, "data connector not found"))

    async with make_client(dt, sleeps, request_timeout=0.3) as client:
        await DataConnector.delete_data_connector("dc1", PROJECT, client=client)

    assert len(dt.recorder.to("DELETE", ONE)) == 2


async def test_delete_of_an_unknown_connector_raises_not_found(dt: FakeDt, client: Client) -> None:
    from receiver.dt import NotFound

    dt.recorder.always("DELETE", ONE, dt_error(404, "data connector not found"))

    with pytest.raises(NotFound):
        await DataConnector.delete_data_connector("dc1", PROJECT, client=client)


async def test_sdk_style_options_build_a_client_for_the_call(dt: FakeDt) -> None:
    dt.recorder.always("GET", LIST, Answer(json={"dataConnectors": [], "nextPageToken": ""}))

    result = await DataConnector.list_data_connectors(
        PROJECT, auth=dt.auth(), base_url=dt.base_url, request_timeout=2, request_attempts=0
    )

    assert result == []
    assert dt.recorder.to("GET", LIST)[0].headers["authorization"] == "Bearer token-1"


@pytest.mark.parametrize(
    "options",
    [{"colour": "red"}, {"client": "not a client"}],
)
async def test_unknown_or_bad_options_are_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        await DataConnector.list_data_connectors(PROJECT, **options)


async def test_client_cannot_be_combined_with_per_call_options(client: Client) -> None:
    with pytest.raises(ConfigurationError):
        await DataConnector.list_data_connectors(PROJECT, client=client, request_timeout=1)


async def test_calls_without_options_read_the_environment_once(
    dt: FakeDt, monkeypatch: pytest.MonkeyPatch
) -> None:
    from receiver.dt.options import environment_api_url, environment_auth
    from tests.dt.conftest import EMAIL, KEY_ID, KEY_SECRET

    dt.recorder.always("GET", LIST, Answer(json={"dataConnectors": [], "nextPageToken": ""}))
    for name, value in {
        "DT_API_URL": dt.base_url,
        "DT_TOKEN_URL": dt.token_url,
        "DT_SERVICE_ACCOUNT_KEY_ID": KEY_ID,
        "DT_SERVICE_ACCOUNT_SECRET": KEY_SECRET,
        "DT_SERVICE_ACCOUNT_EMAIL": EMAIL,
    }.items():
        monkeypatch.setenv(name, value)
    environment_auth.cache_clear()
    environment_api_url.cache_clear()
    try:
        await DataConnector.list_data_connectors(PROJECT)
        monkeypatch.setenv("DT_API_URL", "http://127.0.0.1:9/v2")  # too late: already read
        await DataConnector.list_data_connectors(PROJECT)
    finally:
        environment_auth.cache_clear()
        environment_api_url.cache_clear()

    assert len(dt.recorder.to("GET", LIST)) == 2
    assert len(dt.recorder.token_requests) == 1  # one token for both calls


async def test_a_session_passed_in_is_used_and_left_open(dt: FakeDt) -> None:
    import aiohttp

    dt.recorder.always("GET", LIST, Answer(json={"dataConnectors": [], "nextPageToken": ""}))
    async with aiohttp.ClientSession() as session:
        await DataConnector.list_data_connectors(
            PROJECT, auth=dt.auth(), base_url=dt.base_url, session=session
        )
        assert not session.closed
        async with Client(dt.auth(), base_url=dt.base_url, session=session) as client:
            await DataConnector.list_data_connectors(PROJECT, client=client)
        assert not session.closed

    assert len(dt.recorder.to("GET", LIST)) == 2
