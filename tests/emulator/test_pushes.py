"""One push on the wire (pure): DT's body layout, the label filter, both signature headers and
the connector's own headers; and the per-connector push queue."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from receiver.emulator import EmulatorState
from receiver.emulator.catalog import EVENT_TYPES
from receiver.emulator.connectors import Connector, connector_from_body
from receiver.emulator.delivery import ConnectorDelivery, PendingPush
from receiver.emulator.oidc import issuer_for
from receiver.emulator.pushes import forwarded_labels, push_body, push_headers
from receiver.emulator.schedule import SensorPlan
from receiver.errors import Refusal
from receiver.jwks import signing_keys
from receiver.testing import new_xid, sample_body
from receiver.verify import AsymmetricVerifier, HmacVerifier
from tests.emulator.conftest import START

BASE = "http://127.0.0.1:8090"


@pytest.fixture
def state() -> EmulatorState:
    return EmulatorState.seeded(START, rng=random.Random(7))


def connector(state: EmulatorState, **fields: Any) -> Connector:
    config = {"url": "https://receiver.example.com/e", **fields.pop("httpConfig", {})}
    body = {"type": "HTTP_PUSH", "labels": ["name"], "httpConfig": config, **fields}
    return connector_from_body(body, connector_id="dc1", project_id=state.project_id)


def layout(value: Any) -> Any:
    """Keys in order, all the way down, and the kind of each leaf (lists by their first item)."""
    if isinstance(value, dict):
        return [(key, layout(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [layout(value[0])] if value else []
    if isinstance(value, bool | str):
        return type(value).__name__
    return "number"


def test_push_body_has_dts_exact_layout_for_every_event_type(state: EmulatorState) -> None:
    plan = SensorPlan(list(state.project(state.project_id).devices.values()), rng=random.Random(1))
    target = connector(state)
    bodies: dict[str, bytes] = {}
    for tick in plan:
        for reading in tick.readings:
            if reading.event_type not in bodies:
                event = state.emit(reading.device_id, reading.event_type, reading.data("x"), START)
                device = state.find_device(reading.device_id)
                bodies[reading.event_type] = push_body(device, event, target)
        if len(bodies) == len(EVENT_TYPES):
            break

    assert set(bodies) == set(EVENT_TYPES)
    for event_type, body in bodies.items():
        ours, dts = orjson.loads(body), orjson.loads(sample_body(event_type))
        assert body == orjson.dumps(ours)  # compact, nothing after the object
        if event_type == "labelsChanged":  # what changed differs; the three keys do not
            assert list(ours["event"]["data"]) == list(dts["event"]["data"])
            ours["event"]["data"] = dts["event"]["data"] = {}
        assert layout(ours) == layout(dts), event_type


def test_push_body_forwards_only_listed_labels_the_device_has(state: EmulatorState) -> None:
    device = next(d for d in state.project(state.project_id).devices.values() if "room" in d.labels)
    (event,) = device.latest_events()[:1]

    body = orjson.loads(push_body(device, event, connector(state, labels=["room", "nope", "name"])))

    assert body["labels"] == {"room": device.labels["room"], "name": device.labels["name"]}
    assert list(body["labels"]) == ["room", "name"]
    assert body["metadata"] == device.metadata() and body["event"] == event
    assert forwarded_labels(device.labels, []) == {}


def headers_for(state: EmulatorState, target: Connector, body: bytes) -> dict[str, str]:
    return push_headers(
        body,
        target,
        key=state.signing_keys.current,
        issuer=issuer_for(BASE),
        organization_id=state.organization_id,
        now=START,
        new_id=lambda: new_xid(START),
    )


def test_both_signatures_verify_with_the_receivers_verifiers(state: EmulatorState) -> None:
    body = sample_body("temperature")
    target = connector(state, httpConfig={"signatureSecret": "sécret-ü"})

    headers = headers_for(state, target, body)

    hmac_claims = HmacVerifier([b"s\xc3\xa9cret-\xc3\xbc"]).verify(
        body, headers["X-Dt-Signature"], now=START
    )
    keys = signing_keys(state.signing_keys.jwks(START))
    asym = AsymmetricVerifier().verify(
        body,
        headers["DT-Asymmetric-Signature"],
        keys,
        issuer=BASE + "/data-connector",
        org_id=state.organization_id,
        leeway_seconds=0,
        now=START,
    )
    assert hmac_claims.exp == asym.exp == START + 3600 and hmac_claims.iat == START
    assert asym.key_id == state.signing_keys.current.kid
    assert hmac_claims.jti and asym.jti and hmac_claims.jti != asym.jti
    with pytest.raises(Refusal, match="checksum_mismatch"):
        HmacVerifier([b"s\xc3\xa9cret-\xc3\xbc"]).verify(
            body + b" ", headers["X-Dt-Signature"], now=START
        )


def test_no_shared_secret_means_no_x_dt_signature(state: EmulatorState) -> None:
    headers = headers_for(state, connector(state), b"{}")

    assert "X-Dt-Signature" not in headers
    assert set(headers) == {"Content-Type", "DT-Asymmetric-Signature"}


def test_connector_headers_are_added_but_cannot_replace_signatures_or_framing(
    state: EmulatorState,
) -> None:
    custom = {
        "Authorization": "Bearer gateway-key",
        "content-type": "text/plain",
        "x-dt-signature": "forged",
        "Content-Length": "1",
        "Host": "elsewhere",
    }
    target = connector(state, httpConfig={"signatureSecret": "s", "headers": custom})

    headers = headers_for(state, target, b"{}")

    assert headers["Authorization"] == "Bearer gateway-key"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Dt-Signature"] != "forged"
    assert {name.lower() for name in headers} == {
        "authorization",
        "content-type",
        "x-dt-signature",
        "dt-asymmetric-signature",
    }


# -- the queue --------------------------------------------------------------------------


def push(number: int) -> PendingPush:
    return PendingPush({"eventId": f"e{number}", "eventType": "touch"}, b"{}", START)


def test_queue_gives_due_deferred_pushes_first_then_new_ones_in_order() -> None:
    delivery = ConnectorDelivery()
    for number in (1, 2, 3):
        delivery.enqueue(push(number))
    delivery.enqueue(push(5), at=START + 5)
    delivery.enqueue(push(4), at=START + 1)

    first = delivery.take_due(START + 2, limit=2)
    rest = delivery.take_due(START + 2, limit=10)

    assert [p.event_id for p in first] == ["e4", "e1"]
    assert [p.event_id for p in rest] == ["e2", "e3"]
    assert delivery.next_due() == START + 5 and delivery.queued == 1
    assert [p.event_id for p in delivery.take_due(START + 5, limit=1)] == ["e5"]
    assert delivery.next_due() is None


def test_dropping_the_queue_forgets_pushes_in_flight_too() -> None:
    delivery = ConnectorDelivery()
    delivery.enqueue(push(1))
    (in_flight,) = delivery.take_due(START, limit=1)
    delivery.enqueue(push(2))
    delivery.enqueue(push(3), at=START + 1)

    assert delivery.drop_pending() == 2

    assert delivery.queued == 0 and delivery.dropped == 2
    assert not delivery.current(in_flight)
    delivery.enqueue(push(4))
    assert all(delivery.current(p) for p in delivery.take_due(START, limit=5))


def test_state_drops_queued_pushes_when_a_connector_stops_being_active() -> None:
    state = EmulatorState.seeded(START, rng=random.Random(7))
    body = {"type": "HTTP_PUSH", "httpConfig": {"url": "https://receiver.example.com/e"}}
    created = state.create_connector(state.project_id, body, START)
    delivery = state.delivery_for(created.id)
    delivery.enqueue(push(1))
    delivery.record_attempt(START, ok=False, latency=1.0)

    state.update_connector(state.project_id, created.id, {"status": "USER_DISABLED"}, None)
    queued_while_disabled = delivery.queued
    state.update_connector(state.project_id, created.id, {"status": "ACTIVE"}, None)

    assert queued_while_disabled == 0
    assert delivery.failing_since is None
