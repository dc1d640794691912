"""The built-in `mqtt` handler against the real Mosquitto on loopback (spec §11, §13)."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import pytest

from handlers.mqtt import MqttHandler
from receiver.errors import HandlerError
from receiver.registry import load_handlers
from tests.handlers.samples import SAMPLE_TYPES, sample, variant
from tests.services import TcpRelay, free_port, needs
from tests.waiting import until

HOST = "127.0.0.1"
PORT = int(os.environ.get("DTPUSH_TEST_MQTT_PORT", "1883"))
URL = f"mqtt://{HOST}:{PORT}"
PASSWORD = "mq-Secret-0815"  # the loopback broker allows anonymous clients; it must never show

pytestmark = needs("Mosquitto (MQTT)", PORT)


def new_root() -> str:
    return f"dtpush-test/{uuid.uuid4().hex[:12]}"


class Subscriber:
    """A separate client that collects what arrives under `root/#`."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.messages: list[aiomqtt.Message] = []
        self._client = aiomqtt.Client(HOST, PORT)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Subscriber:
        await self._client.__aenter__()
        await self._client.subscribe(f"{self.root}/#", qos=2)
        self._task = asyncio.create_task(self._collect())
        return self

    async def _collect(self) -> None:
        async for message in self._client.messages:
            self.messages.append(message)

    async def received(self, count: int) -> list[aiomqtt.Message]:
        await until(lambda: len(self.messages) >= count, within=10, what=f"{count} MQTT messages")
        return self.messages

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._client.__aexit__(None, None, None)


@pytest.fixture
async def root() -> AsyncIterator[str]:
    chosen = new_root()
    yield chosen
    # Clear what a test retained (the broker persists retained messages).
    async with aiomqtt.Client(HOST, PORT) as client, Subscriber(chosen) as seen:
        # Retained messages come on subscribing, before anything published afterwards.
        await client.publish(f"{chosen}/end-of-retained", b"", qos=1)
        await until(
            lambda: any(str(m.topic).endswith("/end-of-retained") for m in seen.messages),
            within=10,
            what="the end of the retained messages",
        )
        for topic in {str(m.topic) for m in seen.messages if m.retain}:
            await client.publish(topic, b"", qos=1, retain=True)


async def started(**options: Any) -> MqttHandler:
    handler = MqttHandler(**options)
    handler.name = "mqtt"
    await handler.start()
    return handler


async def test_mqtt_every_sample_type_is_published_as_its_push_body_on_its_topic(
    root: str,
) -> None:
    handler = await started(url=URL, topic=root + "/{project_id}/{device_id}/{event_type}")
    try:
        async with Subscriber(root) as subscriber:
            events = [sample(event_type) for event_type in SAMPLE_TYPES]
            for event in events:
                await handler.handle(event)
            messages = await subscriber.received(len(events))
    finally:
        await handler.close()
    assert len(messages) == len(events)
    for event, message in zip(events, messages, strict=True):
        assert str(message.topic) == (
            f"{root}/{event.project_id}/{event.device_id}/{event.event_type}"
        )
        assert message.payload == event.raw
        assert message.qos == 1
    assert handler.published == len(events)


@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_mqtt_messages_carry_the_configured_qos(root: str, qos: int) -> None:
    handler = await started(url=URL, topic=root + "/{event_id}", qos=qos)
    try:
        async with Subscriber(root) as subscriber:
            event = sample("touch")
            await handler.handle(event)
            [message] = await subscriber.received(1)
    finally:
        await handler.close()
    assert message.qos == qos
    assert str(message.topic) == f"{root}/{event.event_id}"
    assert not message.retain


async def test_mqtt_retained_message_reaches_a_late_subscriber(root: str) -> None:
    handler = await started(url=URL, topic=root + "/{device_id}/{event_type}", retain="true")
    older = variant("temperature", event_id="older")
    newer = variant("temperature", event_id="newer")
    try:
        await handler.handle(older)
        await handler.handle(newer)  # acknowledged (qos 1): the broker has it
    finally:
        await handler.close()
    async with Subscriber(root) as late:
        [message] = await late.received(1)
    assert message.retain
    assert message.payload == newer.raw


async def test_mqtt_without_retain_a_late_subscriber_gets_nothing(root: str) -> None:
    handler = await started(url=URL, topic=root + "/{event_id}")
    try:
        await handler.handle(sample("touch"))
    finally:
        await handler.close()
    async with Subscriber(root) as late:
        marker = await started(url=URL, topic=root + "/marker/{event_type}")
        try:
            await marker.handle(sample("humidity"))
        finally:
            await marker.close()
        [message] = await late.received(1)  # the marker, published after subscribing
    assert str(message.topic) == f"{root}/marker/humidity"


async def test_mqtt_field_that_would_add_a_topic_level_fails_the_event(root: str) -> None:
    handler = await started(url=URL, topic=root + "/{device_id}")
    try:
        for device in ("a/b", "a+b", "a#"):
            with pytest.raises(ValueError, match=r"^topic: the event's device_id"):
                await handler.handle(variant("touch", event_id="x", device_id=device))
        assert handler.ready()
    finally:
        await handler.close()


async def test_mqtt_unreachable_broker_fails_start_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    handler = MqttHandler(url=f"mqtt://dtpush:{PASSWORD}@{HOST}:{free_port()}")
    handler.name = "mqtt"
    with pytest.raises(HandlerError, match="handler 'mqtt': cannot connect to mqtt://") as err:
        await handler.start()
    assert not handler.ready()
    with pytest.raises(RuntimeError, match="not running"):
        await handler.handle(sample("touch"))
    assert PASSWORD not in str(err.value)
    assert PASSWORD not in repr(handler)
    assert PASSWORD not in caplog.text


async def test_mqtt_login_in_the_url_connects_and_is_never_shown(
    root: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    handler = await started(url=f"mqtt://dtpush:{PASSWORD}@{HOST}:{PORT}", topic=root + "/x")
    try:
        assert handler.ready()
        await handler.handle(sample("touch"))
        assert PASSWORD not in repr(handler)
    finally:
        await handler.close()
    assert PASSWORD not in caplog.text


async def test_mqtt_broker_outage_fails_handle_and_readiness_until_reconnected(
    root: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with TcpRelay(PORT) as relay, Subscriber(root) as subscriber:
        handler = await started(url=f"mqtt://{HOST}:{relay.port}", topic=root + "/{event_id}")
        try:
            await handler.handle(variant("touch", event_id="before"))
            await relay.cut()
            await until(lambda: not handler.ready(), within=10, what="the drop to be seen")
            with pytest.raises(RuntimeError, match="is not connected"):
                await handler.handle(variant("touch", event_id="during"))

            await relay.restore()
            await until(handler.ready, within=15, what="the handler to reconnect")
            await handler.handle(variant("touch", event_id="during"))
        finally:
            await handler.close()
        messages = await subscriber.received(2)
    assert [str(m.topic) for m in messages] == [f"{root}/before", f"{root}/during"]
    assert "mqtt_disconnected" in caplog.text
    assert "mqtt_connected" in caplog.text


async def test_mqtt_ready_only_between_start_and_close() -> None:
    handler = MqttHandler(url=URL)
    assert not handler.ready()
    await handler.start()
    assert handler.ready()
    await handler.close()
    assert not handler.ready()
    with pytest.raises(RuntimeError, match="not running"):
        await handler.handle(sample("touch"))


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"topic": ""}, r"^topic: expected a topic template"),
        ({"topic": "dt/{device}"}, r"^topic: unknown field \{device\}"),
        ({"topic": "dt/{}"}, r"^topic: unknown field \{\}"),
        ({"topic": "dt/{device_id.x}"}, r"^topic: unknown field"),
        ({"topic": "dt/{device_id!r}"}, r"^topic: \{device_id\} takes no format"),
        ({"topic": "dt/{device_id:>5}"}, r"^topic: \{device_id\} takes no format"),
        ({"topic": "dt/{device_id"}, r"^topic: "),
        ({"topic": "dt/+/{device_id}"}, r"^topic: no wildcards"),
        ({"topic": "dt/#"}, r"^topic: no wildcards"),
        ({"topic": "$SYS/{device_id}"}, r"^topic: topics starting with \$"),
        ({"qos": 3}, r"^qos: expected 0, 1 or 2, got 3"),
        ({"qos": "high"}, r"^qos: expected 0, 1 or 2"),
        ({"qos": True}, r"^qos: expected 0, 1 or 2"),
        ({"retain": "maybe"}, r"^retain: expected true or false"),
        ({"url": "http://u:hunter2@h:1883"}, r"^url: expected an mqtt:// or mqtts:// URL"),
        ({"url": "mqtt://u:hunter2@h:99999"}, r"^url: the port is not a number"),
        ({"url": "mqtt://h:1883/topic"}, r"^url: expected no path"),
        ({"url": "localhost"}, r"^url: expected mqtt://"),
    ],
)
def test_mqtt_bad_options_are_refused_naming_the_option(
    options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        MqttHandler(**options)
    assert "hunter2" not in str(caught.value)


def test_mqtt_options_from_the_environment_are_coerced() -> None:
    handlers = load_handlers(
        ["mqtt"], {"mqtt": {"url": "mqtts://broker.example", "qos": "2", "retain": "true"}}
    )
    handler = handlers["mqtt"]
    assert isinstance(handler, MqttHandler)
    assert (handler.broker, handler.qos, handler.retain) == ("mqtts://broker.example:8883", 2, True)
    assert handler.topic == "dt/{project_id}/{device_id}/{event_type}"


def test_mqtt_bad_topic_through_the_registry_names_the_setting() -> None:
    with pytest.raises(HandlerError, match=r"handlers\.mqtt\.topic: unknown field"):
        load_handlers(["mqtt"], {"mqtt": {"topic": "dt/{nope}"}})
