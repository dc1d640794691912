"""The Data Connector endpoints answer with DT's shapes, statuses and error bodies."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from receiver.emulator import EmulatorState
from tests.emulator.conftest import Clock

URL = "https://receiver.example.com/events"


def _base(state: EmulatorState) -> str:
    return f"/v2/projects/{state.project_id}/dataconnectors"


def _body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "ACTIVE",
        "events": [],
        "labels": ["name"],
        "displayName": "dtpush",
        "type": "HTTP_PUSH",
        "httpConfig": {"url": URL, "signatureSecret": "s3cret", "headers": {"X-Api-Key": "k"}},
    }
    body.update(overrides)
    return body


async def _create(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str], **overrides: Any
) -> dict[str, Any]:
    response = await client.post(_base(state), json=_body(**overrides), headers=headers)
    assert response.status == 200, await response.text()
    created: dict[str, Any] = await response.json()
    return created


async def _error(response: Any, status: int) -> str:
    assert response.status == status, await response.text()
    body = await response.json()
    assert body == {
        "error": body["error"],
        "code": status,
        "help": f"https://docs.d21s.com/error/#{status}",
    }
    assert isinstance(body["error"], str) and body["error"]
    message: str = body["error"]
    return message


async def test_create_answers_200_with_dt_shape_and_generated_name(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    created = await _create(client, state, headers)

    prefix = f"projects/{state.project_id}/dataconnectors/"
    assert created["name"].startswith(prefix)
    assert len(created["name"].removeprefix(prefix)) == 20
    assert created == {
        "name": created["name"],
        "displayName": "dtpush",
        "type": "HTTP_PUSH",
        "status": "ACTIVE",
        "events": [],
        "labels": ["name"],
        "httpConfig": {"url": URL, "signatureSecret": "s3cret", "headers": {"X-Api-Key": "k"}},
    }


async def test_create_minimal_body_fills_dt_defaults(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    response = await client.post(
        _base(state), json={"type": "HTTP_PUSH", "httpConfig": {"url": URL}}, headers=headers
    )

    created = await response.json()
    assert response.status == 200
    assert created["displayName"] == ""
    assert created["status"] == "ACTIVE"
    assert created["events"] == [] and created["labels"] == []
    assert created["httpConfig"] == {"url": URL, "signatureSecret": "", "headers": {}}


async def test_get_returns_the_connector_with_its_secret(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    created = await _create(client, state, headers)

    response = await client.get("/v2/" + created["name"], headers=headers)

    assert response.status == 200
    assert await response.json() == created


async def test_list_returns_connectors_in_creation_order_and_empty_next_token(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    first = await _create(client, state, headers, displayName="one")
    second = await _create(client, state, headers, displayName="two")

    response = await client.get(_base(state), headers=headers)

    assert response.status == 200
    assert await response.json() == {"dataConnectors": [first, second], "nextPageToken": ""}


async def test_list_empty_project_answers_empty_list(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    response = await client.get(_base(state), headers=headers)

    assert await response.json() == {"dataConnectors": [], "nextPageToken": ""}


@pytest.mark.parametrize(
    ("size_name", "token_name"), [("pageSize", "pageToken"), ("page_size", "page_token")]
)
async def test_list_pages_through_every_connector_once(
    client: TestClient[Any, Any],
    state: EmulatorState,
    headers: dict[str, str],
    size_name: str,
    token_name: str,
) -> None:
    names = [(await _create(client, state, headers, displayName=f"c{i}"))["name"] for i in range(7)]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        params = {size_name: "3", **({token_name: token} if token else {})}
        body = await (await client.get(_base(state), params=params, headers=headers)).json()
        pages += 1
        assert len(body["dataConnectors"]) <= 3
        seen.extend(c["name"] for c in body["dataConnectors"])
        token = body["nextPageToken"]
        if not token:
            break

    assert seen == names
    assert pages == 3


@pytest.mark.parametrize(
    "params", [{"pageToken": "garbage"}, {"pageSize": "x"}, {"pageSize": "-1"}]
)
async def test_list_bad_paging_parameters_answer_400(
    client: TestClient[Any, Any],
    state: EmulatorState,
    headers: dict[str, str],
    params: dict[str, str],
) -> None:
    await _error(await client.get(_base(state), params=params, headers=headers), 400)


async def test_delete_answers_empty_object_and_connector_is_gone(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    created = await _create(client, state, headers)

    response = await client.delete("/v2/" + created["name"], headers=headers)

    assert response.status == 200
    assert await response.json() == {}
    await _error(await client.get("/v2/" + created["name"], headers=headers), 404)


async def test_sync_answers_empty_object_and_is_recorded(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str], clock: Clock
) -> None:
    created = await _create(client, state, headers)
    synced: list[str] = []
    state.on_sync.append(lambda connector: synced.append(connector.name))

    response = await client.post("/v2/" + created["name"] + ":sync", headers=headers)

    assert response.status == 200
    assert await response.json() == {}
    connector_id = created["name"].rsplit("/", 1)[1]
    assert state.delivery_for(connector_id).sync_requests == [clock()]
    assert synced == [created["name"]]


async def test_metrics_answers_dt_shape_with_duration_string(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str], clock: Clock
) -> None:
    created = await _create(client, state, headers)
    connector_id = created["name"].rsplit("/", 1)[1]
    delivery = state.delivery_for(connector_id)
    delivery.record_attempt(clock() - 60, ok=True, latency=0.411)
    delivery.record_attempt(clock() - 30, ok=False, latency=10.0)
    delivery.record_attempt(clock() - 4 * 3600, ok=True, latency=0.2)  # outside the 3 h window

    response = await client.get("/v2/" + created["name"] + ":metrics", headers=headers)

    assert response.status == 200
    assert await response.json() == {
        "metrics": {"successCount": 1, "errorCount": 1, "latency99p": "10s"}
    }


async def test_metrics_of_new_connector_are_zero(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    created = await _create(client, state, headers)

    response = await client.get("/v2/" + created["name"] + ":metrics", headers=headers)

    assert await response.json() == {
        "metrics": {"successCount": 0, "errorCount": 0, "latency99p": "0s"}
    }


@pytest.mark.parametrize(("method", "suffix"), [("POST", ":sync"), ("GET", ":metrics")])
async def test_colon_methods_of_unknown_connector_answer_404(
    client: TestClient[Any, Any],
    state: EmulatorState,
    headers: dict[str, str],
    method: str,
    suffix: str,
) -> None:
    path = _base(state) + "/aaaaaaaaaaaaaaaaaaaa" + suffix

    await _error(await client.request(method, path, headers=headers), 404)


async def test_colon_method_unknown_answers_404_and_wrong_verb_405(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    created = await _create(client, state, headers)

    await _error(await client.post("/v2/" + created["name"] + ":explode", headers=headers), 404)
    await _error(await client.get("/v2/" + created["name"] + ":sync", headers=headers), 405)
    await _error(await client.post("/v2/" + created["name"] + ":metrics", headers=headers), 405)


async def test_colon_method_on_unknown_project_answers_404_project_not_found(
    client: TestClient[Any, Any], headers: dict[str, str]
) -> None:
    message = await _error(
        await client.post("/v2/projects/nope/dataconnectors/abc:sync", headers=headers), 404
    )

    assert "project" in message


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/projects/nope/dataconnectors"),
        ("POST", "/v2/projects/nope/dataconnectors"),
        ("GET", "/v2/projects/nope/dataconnectors/abc"),
        ("DELETE", "/v2/projects/nope/dataconnectors/abc"),
    ],
)
async def test_unknown_project_answers_404(
    client: TestClient[Any, Any], headers: dict[str, str], method: str, path: str
) -> None:
    kwargs: dict[str, Any] = {"json": _body()} if method == "POST" else {}

    message = await _error(await client.request(method, path, headers=headers, **kwargs), 404)

    assert "project" in message


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_unknown_connector_answers_404(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str], method: str
) -> None:
    kwargs: dict[str, Any] = {"json": {"displayName": "x"}} if method == "PATCH" else {}

    message = await _error(
        await client.request(
            method, _base(state) + "/aaaaaaaaaaaaaaaaaaaa", headers=headers, **kwargs
        ),
        404,
    )

    assert "data connector" in message


async def test_eleventh_connector_answers_400_and_is_not_created(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    for index in range(10):
        await _create(client, state, headers, displayName=f"c{index}")

    message = await _error(await client.post(_base(state), json=_body(), headers=headers), 400)

    assert "10" in message
    assert len(state.list_connectors(state.project_id)) == 10


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"type": "SMOKE_SIGNALS"}, "type"),
        ({"type": "AWS_SQS"}, "type"),
        ({"type": None}, "type"),
        ({"status": "SYSTEM_DISABLED"}, "status"),
        ({"status": "PAUSED"}, "status"),
        ({"events": ["temperature", "teleport"]}, "events"),
        ({"events": "temperature"}, "events"),
        ({"labels": [1]}, "labels"),
        ({"displayName": 5}, "displayName"),
        ({"colour": "blue"}, "colour"),
        ({"httpConfig": None}, "httpConfig"),
        ({"httpConfig": {"signatureSecret": "s"}}, "url"),
        ({"httpConfig": {"url": ""}}, "url"),
        ({"httpConfig": {"url": "ftp://example.com/x"}}, "url"),
        ({"httpConfig": {"url": "not a url"}}, "url"),
        ({"httpConfig": {"url": "http://example.com/events"}}, "HTTP is not supported"),
        ({"httpConfig": {"url": "https://example.com:99999/x"}}, "url"),
        ({"httpConfig": {"url": URL, "headers": {"Bad Header": "x"}}}, "headers"),
        ({"httpConfig": {"url": URL, "headers": {"X-Ok": "a\r\nInjected: 1"}}}, "headers"),
        ({"httpConfig": {"url": URL, "headers": {"X-Ok": 5}}}, "headers"),
        ({"httpConfig": {"url": URL, "retries": 3}}, "retries"),
    ],
)
async def test_create_invalid_body_answers_400_naming_the_field(
    client: TestClient[Any, Any],
    state: EmulatorState,
    headers: dict[str, str],
    overrides: dict[str, Any],
    field: str,
) -> None:
    body = _body(**overrides)
    if overrides.get("type", "") is None:
        del body["type"]

    message = await _error(await client.post(_base(state), json=body, headers=headers), 400)

    assert field in message
    assert state.list_connectors(state.project_id) == []


@pytest.mark.parametrize("raw", [b"", b"{not json", b"[1, 2]", b'"text"'])
async def test_create_non_object_body_answers_400(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str], raw: bytes
) -> None:
    response = await client.post(
        _base(state), data=raw, headers={**headers, "Content-Type": "application/json"}
    )

    await _error(response, 400)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/events", "http://localhost/events", "http://[::1]:9/x"]
)
async def test_create_plain_http_to_loopback_is_accepted_for_local_receivers(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str], url: str
) -> None:
    created = await _create(client, state, headers, httpConfig={"url": url})

    assert created["httpConfig"]["url"] == url


async def test_patch_with_mask_changes_only_listed_paths(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    created = await _create(client, state, headers)
    body = {
        "displayName": "ignored",
        "httpConfig": {"url": "https://other.example.com/x", "signatureSecret": "new-secret"},
    }

    response = await client.patch(
        "/v2/" + created["name"],
        params={"update_mask": "httpConfig.signatureSecret"},
        json=body,
        headers=headers,
    )

    updated = await response.json()
    assert response.status == 200
    assert updated == {
        **created,
        "httpConfig": {**created["httpConfig"], "signatureSecret": "new-secret"},
    }


@pytest.mark.parametrize("param", ["update_mask", "updateMask"])
async def test_patch_mask_path_absent_from_body_resets_that_field(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str], param: str
) -> None:
    created = await _create(client, state, headers, events=["temperature"])

    response = await client.patch(
        "/v2/" + created["name"],
        params={param: "events,labels,displayName"},
        json={"labels": ["room"]},
        headers=headers,
    )

    updated = await response.json()
    assert updated["events"] == []
    assert updated["labels"] == ["room"]
    assert updated["displayName"] == ""
    assert updated["httpConfig"] == created["httpConfig"]


async def test_patch_mask_accepts_snake_case_paths_and_repeats(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    created = await _create(client, state, headers)

    response = await client.patch(
        "/v2/" + created["name"],
        params=[("update_mask", "display_name"), ("update_mask", "http_config.url")],
        json={"displayName": "renamed", "httpConfig": {"url": "https://new.example.com/e"}},
        headers=headers,
    )

    updated = await response.json()
    assert updated["displayName"] == "renamed"
    assert updated["httpConfig"]["url"] == "https://new.example.com/e"
    assert updated["httpConfig"]["signatureSecret"] == "s3cret"


async def test_patch_without_mask_infers_fields_from_body_down_to_http_config_leaves(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    created = await _create(client, state, headers)

    response = await client.patch(
        "/v2/" + created["name"],
        json={"status": "USER_DISABLED", "httpConfig": {"signatureSecret": "rotated"}},
        headers=headers,
    )

    updated = await response.json()
    assert updated == {
        **created,
        "status": "USER_DISABLED",
        "httpConfig": {**created["httpConfig"], "signatureSecret": "rotated"},
    }
    stored = await (await client.get("/v2/" + created["name"], headers=headers)).json()
    assert stored == updated


async def test_patch_whole_object_as_terraform_sends_it_is_accepted(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    created = await _create(client, state, headers)
    whole = {**created, "labels": ["name", "room"]}

    response = await client.patch("/v2/" + created["name"], json=whole, headers=headers)

    assert response.status == 200
    assert (await response.json())["labels"] == ["name", "room"]


@pytest.mark.parametrize(
    ("params", "body", "field"),
    [
        ({}, {"status": "SYSTEM_DISABLED"}, "SYSTEM_DISABLED"),
        ({}, {"status": "OFF"}, "status"),
        ({}, {"type": "AWS_SQS"}, "type"),
        ({}, {"httpConfig": {"url": "http://example.com/x"}}, "HTTP is not supported"),
        ({}, {"labelz": []}, "labelz"),
        ({"update_mask": "httpConfig.url"}, {"displayName": "x"}, "url"),
        ({"update_mask": "status"}, {}, "status"),
        ({"update_mask": "secret"}, {"displayName": "x"}, "update_mask"),
    ],
)
async def test_patch_invalid_answers_400_and_changes_nothing(
    client: TestClient[Any, Any],
    state: EmulatorState,
    headers: dict[str, str],
    params: dict[str, str],
    body: dict[str, Any],
    field: str,
) -> None:
    created = await _create(client, state, headers)

    message = await _error(
        await client.patch("/v2/" + created["name"], params=params, json=body, headers=headers), 400
    )

    assert field in message
    stored = await (await client.get("/v2/" + created["name"], headers=headers)).json()
    assert stored == created


async def test_patch_reenables_system_disabled_connector(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str], clock: Clock
) -> None:
    created = await _create(client, state, headers)
    connector_id = created["name"].rsplit("/", 1)[1]
    state.delivery_for(connector_id).record_attempt(clock(), ok=False, latency=10.0)
    state.set_connector_status(state.project_id, connector_id, "SYSTEM_DISABLED")
    seen = await (await client.get("/v2/" + created["name"], headers=headers)).json()

    response = await client.patch(
        "/v2/" + created["name"], json={"status": "ACTIVE"}, headers=headers
    )

    assert seen["status"] == "SYSTEM_DISABLED"
    assert (await response.json())["status"] == "ACTIVE"
    assert state.delivery_for(connector_id).failing_since is None


async def test_unknown_path_and_method_answer_dt_error_bodies(
    client: TestClient[Any, Any], state: EmulatorState, headers: dict[str, str]
) -> None:
    await _error(
        await client.get("/v2/projects/" + state.project_id + "/nothing", headers=headers), 404
    )
    await _error(await client.put(_base(state), json={}, headers=headers), 405)
