"""The push endpoint through the real app on loopback (spec §4, §6, §13 "Answers")."""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from jwt.warnings import InsecureKeyLengthWarning
from prometheus_client import CollectorRegistry

from receiver.app import SERVICE_KEY, create_app
from receiver.config import Settings, load_settings
from receiver.events import EVENT_TYPES
from receiver.testing import Signer, make_event_body, real_vectors, sample_bodies
from tests.recording import RecordingHandler

SECRET = "push-test-secret-0123456789abcdef0123"
NEW_SECRET = "new-secret-0123456789abcdef0123456789"
Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


def settings_for(tmp_path: Path, **env: str) -> Settings:
    base = {
        "DTPUSH_VERIFY_SECRETS": SECRET,
        "DTPUSH_INBOX_PATH": str(tmp_path / "inbox.db"),
    }
    return load_settings(env={**base, **env}, cwd=tmp_path)


@pytest.fixture
def recorder() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def make_client(
    aiohttp_client: Callable[..., Awaitable[Client]],
    tmp_path: Path,
    recorder: RecordingHandler,
    registry: CollectorRegistry,
) -> MakeClient:
    async def make(
        handlers: dict[str, Any] | None = None, fresh_registry: bool = False, **env: str
    ) -> Client:
        app = create_app(
            settings_for(tmp_path, **env),
            registry=CollectorRegistry() if fresh_registry else registry,
            handlers=handlers if handlers is not None else {"recorder": recorder},
        )
        return await aiohttp_client(app)

    return make


def signed(body: bytes, secret: str = SECRET, **options: Any) -> dict[str, str]:
    return {"Content-Type": "application/json", **Signer(secret).headers(body, **options)}


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_every_sample_event_type_is_accepted_and_handed_over_once_typed(
    make_client: MakeClient, recorder: RecordingHandler
) -> None:
    client = await make_client()
    bodies = sample_bodies()
    assert sorted(bodies) == sorted(EVENT_TYPES)
    for event_type, body in bodies.items():
        response = await client.post("/events", data=body, headers=signed(body))
        assert response.status == 200, event_type
        answer = await response.json()
        assert answer["status"] == "accepted"
    await recorder.wait_for(len(bodies))
    by_type = {event.event_type: event for event in recorder.events}
    assert sorted(by_type) == sorted(EVENT_TYPES)
    assert len(recorder.events) == len(bodies)
    assert by_type["temperature"].data.celsius == 27
    assert by_type["humidity"].data.relative_humidity == 17
    assert by_type["objectPresent"].data.state == "NOT_PRESENT"
    assert by_type["touchCount"].data.total == 469
    assert by_type["labelsChanged"].data.added == {"room": "kitchen"}
    for event_type, event in by_type.items():
        assert event.raw == bodies[event_type]


async def test_same_event_id_again_is_a_duplicate_and_not_handed_over_again(
    make_client: MakeClient, recorder: RecordingHandler, registry: CollectorRegistry
) -> None:
    client = await make_client()
    body = make_event_body("touch")
    first = await client.post("/events", data=body, headers=signed(body))
    again = await client.post("/events", data=body, headers=signed(body))
    assert (await first.json())["status"] == "accepted"
    duplicate = await again.json()
    assert again.status == 200
    assert duplicate["status"] == "duplicate"
    assert duplicate["eventId"] == (await first.json())["eventId"]
    await recorder.wait_for(1)
    assert recorder.ids == [duplicate["eventId"]]
    assert sample(registry, "dtpush_push_requests_total", outcome="duplicate") == 1
    assert sample(registry, "dtpush_events_total", event_type="touch") == 1


async def test_verified_body_that_is_not_an_event_is_quarantined_not_delivered(
    make_client: MakeClient, recorder: RecordingHandler
) -> None:
    client = await make_client()
    for body in (b"not json at all", b"[1,2]", b'{"event":{"eventType":"touch"}}'):
        response = await client.post("/events", data=body, headers=signed(body))
        assert response.status == 200
        assert (await response.json())["status"] == "quarantined"
    service = client.app[SERVICE_KEY]
    dead = await service.inbox.list_dead(handler="quarantine")
    assert len(dead) == 3
    assert recorder.events == []


def _token(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    with warnings.catch_warnings():  # HS512 with a 37-byte key: the point of the test
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, secret, algorithm=algorithm)


def _claims(body: bytes, *, now: float | None = None, **changes: Any) -> dict[str, Any]:
    now = time.time() if now is None else now
    claims = {
        "checksum": hashlib.sha1(body).hexdigest(),
        "checksum_sha256": hashlib.sha256(body).hexdigest(),
        "exp": int(now) + 3600,
        "iat": int(now),
        "jti": "c82gg99hga35jc2afkeg",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _refusal_cases() -> list[tuple[str, Callable[[bytes], dict[str, str]], dict[str, str]]]:
    now = time.time()
    return [
        ("missing_signature", lambda body: {}, {}),
        ("malformed_token", lambda body: {"X-Dt-Signature": "abc.def"}, {}),
        (
            "bad_algorithm",
            lambda body: {"X-Dt-Signature": _token(_claims(body), algorithm="HS512")},
            {},
        ),
        (
            "bad_signature",
            lambda body: {
                "X-Dt-Signature": _token(_claims(body), "wrong-secret-0123456789abcdef0123")
            },
            {},
        ),
        ("missing_claim", lambda body: {"X-Dt-Signature": _token(_claims(body, exp=None))}, {}),
        (
            "expired",
            lambda body: {
                "X-Dt-Signature": _token(_claims(body, iat=int(now) - 7200, exp=int(now) - 3600))
            },
            {},
        ),
        (
            "not_yet_valid",
            lambda body: {"X-Dt-Signature": _token(_claims(body, iat=int(now) + 600))},
            {},
        ),
        (
            "sha1_not_allowed",
            lambda body: {"X-Dt-Signature": _token(_claims(body, checksum_sha256=None))},
            {"DTPUSH_VERIFY_ALLOW_SHA1": "false"},
        ),
        (
            "checksum_mismatch",
            lambda body: {"X-Dt-Signature": _token(_claims(body + b" "))},
            {},
        ),
    ]


@pytest.mark.parametrize(
    ("reason", "headers", "env"), _refusal_cases(), ids=lambda v: v if isinstance(v, str) else ""
)
async def test_each_refusal_reason_is_answered_401_with_its_name_and_nothing_stored(
    make_client: MakeClient,
    recorder: RecordingHandler,
    registry: CollectorRegistry,
    reason: str,
    headers: Callable[[bytes], dict[str, str]],
    env: dict[str, str],
) -> None:
    client = await make_client(**env)
    body = make_event_body("temperature")
    response = await client.post("/events", data=body, headers=headers(body))
    assert response.status == 401
    assert await response.json() == {"error": reason}
    assert sample(registry, "dtpush_signature_failures_total", reason=reason) == 1
    # the same event properly signed is still new: the refused push stored nothing
    accepted = await client.post("/events", data=body, headers=signed(body))
    assert (await accepted.json())["status"] == "accepted"


async def test_header_name_is_case_insensitive(make_client: MakeClient) -> None:
    client = await make_client()
    body = make_event_body("touch")
    token = Signer(SECRET).headers(body)["X-Dt-Signature"]
    response = await client.post("/events", data=body, headers={"x-dt-signature": token})
    assert (await response.json())["status"] == "accepted"


async def test_real_dt_vectors_verify_with_the_clock_at_their_iat(tmp_path: Path) -> None:
    from receiver.verify import Verifier

    for vector in real_vectors():
        verifier = Verifier(secrets=[b"test-secret"], allow_sha1=True)
        claims = await verifier.verify(
            vector.body, {"X-Dt-Signature": vector.token}, now=vector.iat
        )
        assert claims is not None and claims.iat == vector.iat


async def test_rotated_secrets_both_verify_and_the_match_is_counted_by_position(
    make_client: MakeClient, registry: CollectorRegistry
) -> None:
    client = await make_client(DTPUSH_VERIFY_SECRETS=f"{NEW_SECRET},{SECRET}")
    for secret in (NEW_SECRET, SECRET):
        body = make_event_body("co2")
        response = await client.post("/events", data=body, headers=signed(body, secret))
        assert (await response.json())["status"] == "accepted"
    assert sample(registry, "dtpush_signature_secret_matches_total", index="0") == 1
    assert sample(registry, "dtpush_signature_secret_matches_total", index="1") == 1


async def test_body_over_the_limit_is_413_before_any_signature_check(
    make_client: MakeClient, registry: CollectorRegistry
) -> None:
    client = await make_client(DTPUSH_SERVER_MAX_BODY_BYTES="1000")
    response = await client.post("/events", data=b"x" * 1001)  # no signature at all
    assert response.status == 413
    assert sample(registry, "dtpush_signature_failures_total", reason="missing_signature") == 0

    async def chunks() -> Any:
        for _ in range(3):
            yield b"y" * 600

    chunked = await client.post("/events", data=chunks())
    assert chunked.status == 413


async def test_other_methods_and_paths_are_405_and_404(make_client: MakeClient) -> None:
    client = await make_client()
    assert (await client.get("/events")).status == 405
    assert (await client.put("/events", data=b"{}")).status == 405
    assert (await client.post("/elsewhere", data=b"{}")).status == 404


async def test_health_readiness_and_metrics_endpoints(make_client: MakeClient) -> None:
    class Unready(RecordingHandler):
        def ready(self) -> bool:
            return False

    client = await make_client()
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    body = make_event_body("touch")
    await client.post("/events", data=body, headers=signed(body))
    metrics = await (await client.get("/metrics")).text()
    assert 'dtpush_push_requests_total{outcome="accepted"} 1.0' in metrics
    assert "dtpush_push_duration_seconds_count 1.0" in metrics

    unready = await make_client(handlers={"sink": Unready()}, fresh_registry=True)
    response = await unready.get("/readyz")
    assert response.status == 503
    assert "handler:sink" in (await response.json())["reasons"]


async def test_inbox_full_answers_503_with_retry_after_but_duplicates_still_200(
    make_client: MakeClient, recorder: RecordingHandler
) -> None:
    recorder.always_fail = True  # keeps its deliveries pending
    client = await make_client(
        DTPUSH_INBOX_MAX_PENDING="2",
        DTPUSH_DELIVERY_BACKOFF_INITIAL_SECONDS="60",
        DTPUSH_DELIVERY_BACKOFF_MAX_SECONDS="60",
    )
    bodies = [make_event_body("touch") for _ in range(3)]
    answers = []
    for body in bodies:
        response = await client.post("/events", data=body, headers=signed(body))
        answers.append((response.status, response.headers.get("Retry-After")))
    assert answers[:2] == [(200, None), (200, None)]
    assert answers[2] == (503, "5")
    again = await client.post("/events", data=bodies[0], headers=signed(bodies[0]))
    assert (await again.json())["status"] == "duplicate"
