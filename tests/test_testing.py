"""`receiver.testing`: samples, fresh events, the DT-shaped signer, real vectors, the fixture."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from receiver.app import create_app
from receiver.config import load_settings
from receiver.events import EVENT_TYPES, Humidity, LabelsChanged, Temperature, parse
from receiver.testing import (
    REAL_VECTOR_NAMES,
    REAL_VECTOR_SECRET,
    Pusher,
    Signer,
    make_event_body,
    new_xid,
    real_vectors,
    sample_bodies,
    sample_body,
)
from tests.recording import RecordingHandler

pytest_plugins = ["receiver.pytest_plugin", "pytester"]

SECRET = "testing-kit-secret-of-thirty-two-bytes"
XID = re.compile(r"[0-9a-v]{20}")
Client = TestClient[web.Request, web.Application]


def _segment(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    decoded: dict[str, Any] = orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def _claim_keys(token: str) -> list[str]:
    return list(_segment(token, 1))


# --- samples ----------------------------------------------------------------------------------


def test_sample_bodies_hold_every_event_type_in_dt_compact_layout() -> None:
    bodies = sample_bodies()

    assert list(bodies) == list(EVENT_TYPES)
    for event_type, body in bodies.items():
        doc = orjson.loads(body)
        assert body == orjson.dumps(doc), event_type  # compact, no trailing newline
        assert list(doc) == ["event", "labels", "metadata"]
        assert list(doc["event"]) == ["eventId", "targetName", "eventType", "data", "timestamp"]
        assert list(doc["metadata"]) == ["deviceId", "projectId", "deviceType", "productNumber"]
        assert doc["event"]["eventType"] == event_type
        assert sample_body(event_type) == body


def test_sample_bodies_are_package_data_of_receiver() -> None:
    import receiver

    package = Path(receiver.__file__).parent / "testing_data"

    for event_type, body in sample_bodies().items():
        assert (package / f"{event_type}.json").read_bytes() == body


def test_sample_body_of_unknown_type_raises_value_error() -> None:
    with pytest.raises(ValueError, match="rainfall"):
        sample_body("rainfall")
    with pytest.raises(ValueError):
        sample_body("../README.md")


# --- fresh events -----------------------------------------------------------------------------


def test_new_xid_is_20_base32hex_characters_prefixed_with_the_time() -> None:
    ids = {new_xid() for _ in range(1000)}

    assert len(ids) == 1000
    assert all(XID.fullmatch(i) for i in ids)
    raw = base64.b32hexdecode(new_xid(now=1644496933).upper() + "====")
    assert int.from_bytes(raw[:4], "big") == 1644496933


def test_new_xid_of_a_real_dt_event_time_has_the_same_prefix_as_dt_ids() -> None:
    # DT's real touch event c82gg9catj3vmh4248og was sent at iat 1644496933
    assert new_xid(now=1644496933)[:6] == "c82gg9"


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_make_event_body_with_the_sample_values_reproduces_the_sample_bytes(
    event_type: str,
) -> None:
    sample = orjson.loads(sample_body(event_type))

    body = make_event_body(
        event_type,
        event_id=sample["event"]["eventId"],
        timestamp=datetime.fromisoformat(sample["event"]["timestamp"]),
    )

    assert body == sample_body(event_type)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_make_event_body_gives_unique_events_that_parse_back(event_type: str) -> None:
    before = datetime.now(UTC).replace(microsecond=0)

    events = [parse(make_event_body(event_type)) for _ in range(20)]

    assert len({e.event_id for e in events}) == 20
    assert all(XID.fullmatch(e.event_id) for e in events)
    assert all(e.event_type == event_type for e in events)
    assert all(before <= e.timestamp <= datetime.now(UTC) for e in events)
    assert all(e.data.update_time == e.timestamp for e in events)


def test_make_event_body_sets_ids_labels_and_time_everywhere() -> None:
    when = datetime(2025, 1, 2, 4, 4, 5, 123456, tzinfo=timezone(timedelta(hours=1)))

    body = make_event_body(
        "humidity",
        event_id="abc",
        device_id="dev1",
        project_id="proj1",
        timestamp=when,
        labels={"name": "Lab", "room": "3"},
    )

    event = parse(body)
    doc = orjson.loads(body)
    assert (event.event_id, event.device_id, event.project_id) == ("abc", "dev1", "proj1")
    assert event.target_name == "projects/proj1/devices/dev1"
    assert event.labels == {"name": "Lab", "room": "3"}
    assert doc["event"]["timestamp"] == "2025-01-02T03:04:05.123456Z"
    assert isinstance(event.data, Humidity)
    assert event.data.update_time == when
    assert [s.timestamp for s in event.data.samples] == [when]


def test_make_event_body_merges_data_into_the_type_object() -> None:
    warm = parse(make_event_body("temperature", data={"value": 31.5, "isBackfilled": True}))
    labels = parse(make_event_body("labelsChanged", data={"added": {"zone": "b"}}))

    assert isinstance(warm.data, Temperature)
    assert (warm.data.celsius, warm.data.is_backfilled) == (31.5, True)
    assert isinstance(labels.data, LabelsChanged)
    assert labels.data.added == {"zone": "b"}


def test_make_event_body_event_id_carries_the_event_time() -> None:
    when = datetime(2022, 2, 10, 12, 42, 13, tzinfo=UTC)

    event_id = parse(make_event_body("touch", timestamp=when)).event_id

    assert event_id[:6] == "c82gg9"


def test_make_event_body_with_naive_timestamp_raises_value_error() -> None:
    with pytest.raises(ValueError, match="timezone"):
        make_event_body("touch", timestamp=datetime(2025, 1, 1))


# --- the signer -------------------------------------------------------------------------------


def test_signer_token_verifies_with_pyjwt_and_carries_both_checksums() -> None:
    body = make_event_body("co2")

    token = Signer(SECRET).headers(body, now=1_700_000_000)["X-Dt-Signature"]

    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims["checksum"] == hashlib.sha1(body).hexdigest()
    assert claims["checksum_sha256"] == hashlib.sha256(body).hexdigest()
    assert (claims["iat"], claims["exp"]) == (1_700_000_000, 1_700_003_600)
    assert XID.fullmatch(claims["jti"])
    assert _segment(token, 0) == {"alg": "HS256", "typ": "JWT"}
    assert _claim_keys(token) == ["checksum", "checksum_sha256", "exp", "iat", "jti"]


def test_signer_token_of_now_is_valid_now() -> None:
    body = make_event_body("touch")

    token = Signer(SECRET.encode()).token(body)

    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert abs(claims["iat"] - time.time()) < 60


def test_signer_can_leave_out_either_checksum_and_set_the_lifetime() -> None:
    body = b"{}"
    signer = Signer(SECRET)

    legacy = signer.token(body, sha256=False, exp_seconds=60, now=100)
    modern = signer.token(body, sha1=False, now=100)

    assert _claim_keys(legacy) == ["checksum", "exp", "iat", "jti"]
    assert _segment(legacy, 1)["exp"] == 160
    assert _claim_keys(modern) == ["checksum_sha256", "exp", "iat", "jti"]


def test_signer_with_another_secret_does_not_verify() -> None:
    token = Signer("another-secret-of-thirty-two-bytes!!").token(b"{}")

    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, SECRET, algorithms=["HS256"])


def test_signer_repr_hides_the_secret() -> None:
    assert SECRET not in repr(Signer(SECRET))
    assert SECRET not in str(Signer(SECRET))


# --- real vectors -----------------------------------------------------------------------------


def test_real_vectors_checksums_match_their_bodies_and_dt_secret_signed_them() -> None:
    vectors = real_vectors()

    assert len(vectors) == len(REAL_VECTOR_NAMES) == 3
    for body, token, iat in vectors:
        header, payload, signature = token.encode().split(b".")
        expected = hmac.new(REAL_VECTOR_SECRET.encode(), header + b"." + payload, "sha256")
        assert base64.urlsafe_b64decode(signature + b"=") == expected.digest()
        claims = _segment(token, 1)
        assert claims["iat"] == iat
        assert claims["exp"] == iat + 3600
        assert claims["checksum"] == hashlib.sha1(body).hexdigest()
        if "checksum_sha256" in claims:
            assert claims["checksum_sha256"] == hashlib.sha256(body).hexdigest()
    assert [("checksum_sha256" in _segment(v.token, 1)) for v in vectors] == [True, True, False]
    assert vectors[0].body == sample_body("touch")
    assert vectors[1].body == sample_body("temperature")
    assert parse(vectors[2].body).event_id == "c7fa4e34fet12rl646l0"


def test_signer_reproduces_the_real_dt_tokens_byte_for_byte() -> None:
    signer = Signer(REAL_VECTOR_SECRET)

    for body, token, iat in real_vectors():
        claims = _segment(token, 1)
        mine = signer.token(body, now=iat, jti=claims["jti"], sha256="checksum_sha256" in claims)
        assert mine == token


# --- posting: Pusher and the dtpush_push fixture, against the real app -------------------------


@pytest.fixture
def recorder() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def dtpush_secret() -> str:
    return SECRET


@pytest.fixture
def app(tmp_path: Path, recorder: RecordingHandler, dtpush_secret: str) -> web.Application:
    env = {"DTPUSH_VERIFY_SECRETS": dtpush_secret, "DTPUSH_INBOX_PATH": str(tmp_path / "in.db")}
    settings = load_settings(env=env, cwd=tmp_path)
    return create_app(settings, registry=CollectorRegistry(), handlers={"recorder": recorder})


@pytest.fixture
async def dtpush_target(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]], app: web.Application
) -> Client:
    return await aiohttp_client(app)


async def test_dtpush_push_posts_every_type_signed_and_the_handler_gets_them(
    dtpush_push: Pusher, recorder: RecordingHandler
) -> None:
    answers = await dtpush_push.push_all()

    assert list(answers) == list(EVENT_TYPES)
    for event_type, (status, answer) in answers.items():
        assert (status, answer["status"]) == (200, "accepted"), event_type
    handled = await recorder.wait_for(len(EVENT_TYPES))
    assert sorted(e.event_type for e in handled) == sorted(EVENT_TYPES)
    assert not any(isinstance(e.data, dict) for e in handled)


async def test_dtpush_push_of_a_given_body_twice_is_a_duplicate(dtpush_push: Pusher) -> None:
    body = make_event_body("touch")

    first = await dtpush_push(body)
    again = await dtpush_push(body)

    event_id = parse(body).event_id
    assert first == (200, {"status": "accepted", "eventId": event_id})
    assert again == (200, {"status": "duplicate", "eventId": event_id})


async def test_dtpush_push_unsigned_or_with_replaced_header_is_refused(
    dtpush_push: Pusher,
) -> None:
    unsigned = await dtpush_push(event_type="touch", sign=False)
    forged = await dtpush_push(event_type="touch", headers=Signer("not-the-secret").headers(b"{}"))

    assert unsigned == (401, {"error": "missing_signature"})
    assert forged.status == 401


async def test_pusher_with_body_and_event_type_raises_value_error(dtpush_push: Pusher) -> None:
    with pytest.raises(ValueError, match="not both"):
        await dtpush_push(b"{}", event_type="touch")


async def test_pusher_posts_to_a_url_with_its_own_session(
    app: web.Application, recorder: RecordingHandler
) -> None:
    async with TestServer(app) as server, Pusher(str(server.make_url("/events")), SECRET) as push:
        status, answer = await push(event_type="waterPresent")

    assert (status, answer["status"]) == (200, "accepted")
    handled = await recorder.wait_for(1)
    assert handled[0].event_type == "waterPresent"


def test_dtpush_push_without_a_target_fixture_fails_with_a_clear_message(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest('pytest_plugins = ["receiver.pytest_plugin"]')
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.asyncio
        async def test_push(dtpush_push):
            await dtpush_push(event_type="touch")
        """
    )

    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*dtpush_push needs a dtpush_target fixture*"])
