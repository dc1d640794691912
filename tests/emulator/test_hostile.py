"""Input a client or attacker controls never yields a 500 or a traceback: only DT's 4xx."""

from __future__ import annotations

import base64
import contextlib
import io
import random
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.emulator import EmulatorState
from receiver.emulator.auth import check_assertion
from receiver.emulator.connectors import apply_patch, connector_from_body, parse_mask
from receiver.emulator.errors import ApiError
from receiver.emulator.pages import decode_token
from receiver.emulator.timestamps import parse_rfc3339
from tests.emulator.conftest import START

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    ["displayName", "type", "status", "events", "labels", "httpConfig", "name"]
)
HTTP_FIELDS = st.sampled_from(["url", "signatureSecret", "headers"])
CONNECTORISH = st.dictionaries(
    FIELDS,
    JSON | st.dictionaries(HTTP_FIELDS, JSON | st.just("https://x.example/e"), max_size=3),
    max_size=6,
)
STATE = EmulatorState.seeded(START, rng=random.Random(11))
BASE = connector_from_body(
    {"type": "HTTP_PUSH", "httpConfig": {"url": "https://x.example/e"}},
    connector_id="c" * 20,
    project_id="p",
)


@settings(max_examples=300, deadline=None)
@given(body=JSON | CONNECTORISH)
def test_create_any_json_is_a_connector_or_a_400(body: Any) -> None:
    try:
        connector_from_body(body, connector_id="c" * 20, project_id="p")
    except ApiError as exc:
        assert exc.status == 400


@settings(max_examples=300, deadline=None)
@given(body=JSON | CONNECTORISH, mask=st.lists(st.text(max_size=30), max_size=3))
def test_patch_any_json_and_mask_is_a_connector_or_a_400(body: Any, mask: list[str]) -> None:
    try:
        apply_patch(BASE, body, parse_mask(mask))
    except ApiError as exc:
        assert exc.status == 400


@settings(max_examples=200, deadline=None)
@given(
    token=st.text(max_size=200)
    | st.from_regex(r"[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,60}\.[A-Za-z0-9_-]{0,40}")
)
def test_assertion_any_text_is_an_account_or_a_400(token: str) -> None:
    with pytest.raises(ApiError) as caught:
        check_assertion(token, STATE.accounts, ["https://x/oauth2/token"], START)

    assert caught.value.status == 400


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
def test_time_and_page_token_parsing_fail_only_with_their_own_errors(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_rfc3339(text)
    try:
        decode_token(text)
    except ApiError as exc:
        assert exc.status == 400


async def test_hostile_basic_credentials_with_non_ascii_secret_get_401(
    client: TestClient[Any, Any], state: EmulatorState
) -> None:
    credentials = base64.b64encode(f"{state.service_account.key_id}:sécret".encode()).decode()

    response = await client.get(
        f"/v2/projects/{state.project_id}/dataconnectors",
        headers={"Authorization": f"Basic {credentials}"},
    )

    assert response.status == 401


@pytest.mark.parametrize(
    ("method", "path", "data", "content_type"),
    [
        ("POST", "/oauth2/token", b"\xff\xfe=\xff", "application/x-www-form-urlencoded"),
        ("POST", "/oauth2/token", b"--x\r\n", "multipart/form-data; boundary=x"),
        (
            "POST",
            "/oauth2/token",
            b"assertion=a",
            "application/x-www-form-urlencoded; charset=nope",
        ),
        ("POST", "/oauth2/token", b"x" * (2 * 1024 * 1024), "application/x-www-form-urlencoded"),
        ("POST", "/v2/projects/{p}/dataconnectors", b"\xff\xfe", "application/json"),
        ("POST", "/v2/projects/{p}/dataconnectors", b"[" * 5000, "application/json"),
        ("PATCH", "/v2/projects/{p}/dataconnectors/x", b"{}", "application/json"),
        ("GET", "/v2/projects/{p}/devices?order_by=....", b"", "text/plain"),
        ("GET", "/v2/projects/{p}/devices?label_filters==&device_ids=,,,", b"", "text/plain"),
        ("GET", "/v2/projects/%ff/dataconnectors/%00:sync", b"", "text/plain"),
    ],
)
async def test_hostile_requests_get_a_4xx_with_dt_error_body(
    client: TestClient[Any, Any],
    state: EmulatorState,
    headers: dict[str, str],
    method: str,
    path: str,
    data: bytes,
    content_type: str,
) -> None:
    response = await client.request(
        method,
        path.replace("{p}", state.project_id),
        data=io.BytesIO(data),
        headers={**headers, "Content-Type": content_type},
    )

    assert 400 <= response.status < 500 or response.status == 200
    if response.status != 200:
        body = await response.json()
        assert body["code"] == response.status
