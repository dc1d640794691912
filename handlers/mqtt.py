"""The built-in `mqtt` handler: publishes each event to an MQTT broker (aiomqtt).

Options: `url` (default `mqtt://127.0.0.1:1883`; `mqtts://` for TLS, default port 8883;
`mqtt://user:password@host:port` to log in), `topic` (default
`dt/{project_id}/{device_id}/{event_type}`; the fields `{project_id}`, `{device_id}`,
`{event_type}` and `{event_id}` may be used), `qos` (0, 1 or 2; default 1) and `retain`
(default false).

The payload is the push body exactly as DT sent it (the JSON object with `event`, `labels`
and `metadata`), so subscribers read DT's own format and bytes.

One client connection lives from `start()` to `close()` and is re-established (backing off
up to 5 s) when the broker drops it; meanwhile `handle()` fails at once (delivery retries)
and `ready()` is false. With qos 1 or 2 `handle()` returns once the broker has acknowledged
the message. A topic field whose value would add a level or a wildcard (`/`, `+`, `#`) fails
the event with a clear error. The URL's password never appears in a log line, error or repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import string
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import aiomqtt

from receiver.errors import HandlerError
from receiver.registry import Handler

if TYPE_CHECKING:
    from receiver.events import Event

log = logging.getLogger("dtpush.handlers.mqtt")

DEFAULT_TOPIC = "dt/{project_id}/{device_id}/{event_type}"
#: The event fields a topic template may use.
TOPIC_FIELDS = ("project_id", "device_id", "event_type", "event_id")
#: Seconds to connect, and for the broker to acknowledge a message.
TIMEOUT = 10.0
KEEPALIVE = 30
#: Seconds between reconnection attempts (doubling up to the second figure).
RECONNECT_SECONDS = (0.25, 5.0)

_PORTS = {"mqtt": 1883, "mqtts": 8883}
_FORBIDDEN = ("+", "#", "\x00")


class MqttHandler(Handler):
    """Publishes every event's push body to `topic` on the broker at `url`."""

    def __init__(
        self,
        url: str = "mqtt://127.0.0.1:1883",
        topic: str = DEFAULT_TOPIC,
        qos: int | str = 1,
        retain: bool | str = False,
    ) -> None:
        super().__init__()
        self.scheme, self.host, self.port, self._username, self._password = _parse_url(url)
        self.broker = f"{self.scheme}://{self.host}:{self.port}"
        self.topic = _check_topic(topic)
        self.qos = _qos(qos)
        self.retain = _flag(retain, "retain")
        self._session: tuple[aiomqtt.Client, asyncio.Event] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._published = 0

    @property
    def published(self) -> int:
        """How many messages were published (acknowledged, for qos 1 and 2) so far."""
        return self._published

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.broker}>"

    def topic_for(self, event: Event) -> str:
        """The topic of `event`; `ValueError` when a field would add a level or wildcard."""
        values = {}
        for field in TOPIC_FIELDS:
            value = getattr(event, field)
            if "/" in value or any(bad in value for bad in _FORBIDDEN):
                raise ValueError(
                    f"topic: the event's {field} {value!r} cannot be one topic level"
                    " (it holds /, + or #)"
                )
            values[field] = value
        return self.topic.format_map(values)

    async def start(self) -> None:
        if self._task is not None:
            return
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._connection(first))
        try:
            await first
        except aiomqtt.MqttError as exc:
            await task
            raise HandlerError(
                self.name or "mqtt", f"cannot connect to {self.broker}: {self._say(exc)}"
            ) from None
        self._task = task

    async def handle(self, event: Event) -> None:
        if self._task is None or self._closing:
            raise RuntimeError("the mqtt handler is not running")
        topic = self.topic_for(event)
        session = self._session
        if session is None:
            raise RuntimeError(f"mqtt broker {self.broker} is not connected")
        client, lost = session
        publish = asyncio.create_task(
            client.publish(topic, event.raw, qos=self.qos, retain=self.retain, timeout=TIMEOUT)
        )
        dropped = asyncio.create_task(lost.wait())
        try:
            await asyncio.wait((publish, dropped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            dropped.cancel()
            if not publish.done():
                publish.cancel()
        if publish.cancelled():
            raise RuntimeError(f"mqtt broker {self.broker} went away before acknowledging")
        error = publish.exception()
        if error is not None:
            raise RuntimeError(f"mqtt publish failed: {self._say(error)}") from None
        self._published += 1

    async def close(self) -> None:
        task = self._task
        if task is None or self._closing:
            return
        self._closing = True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def ready(self) -> bool:
        return self._task is not None and self._session is not None and not self._closing

    # The connection.

    def _client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self._username,
            password=self._password,
            timeout=TIMEOUT,
            keepalive=KEEPALIVE,
            tls_context=ssl.create_default_context() if self.scheme == "mqtts" else None,
            logger=log,
        )

    async def _connection(self, first: asyncio.Future[None]) -> None:
        """Hold one connection at a time until cancelled; the first attempt answers `first`."""
        shortest, longest = RECONNECT_SECONDS
        delay = shortest
        while True:
            client = self._client()
            try:
                async with client:
                    lost = asyncio.Event()
                    self._session = (client, lost)
                    delay = shortest
                    if first.done():
                        log.info("mqtt_connected", extra={"fields": self._fields()})
                    else:
                        first.set_result(None)
                    try:
                        async for _ in client.messages:  # subscribes to nothing: ends on a drop
                            pass
                    finally:
                        self._session = None
                        lost.set()
            except aiomqtt.MqttError as exc:
                if not first.done():
                    first.set_exception(exc)
                    return
                log.warning(
                    "mqtt_disconnected",
                    extra={"fields": {**self._fields(), "error": self._say(exc)}},
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)

    def _fields(self) -> dict[str, str]:
        return {"handler": self.name, "broker": self.broker}

    def _say(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        if self._password:
            text = text.replace(self._password, "***")
        return text


def _parse_url(url: object) -> tuple[str, str, int, str | None, str | None]:
    if not isinstance(url, str) or "://" not in url:
        raise ValueError("url: expected mqtt://host:port or mqtts://host:port")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _PORTS:
        raise ValueError(  # the value may hold a password: never quoted back
            "url: expected an mqtt:// or mqtts:// URL (mqtt://user:password@host:port)"
        )
    if not parts.hostname:
        raise ValueError("url: no host name")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("url: expected no path or query after host:port")
    try:
        port = parts.port or _PORTS[scheme]
    except ValueError:
        raise ValueError("url: the port is not a number from 0 to 65535") from None
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return scheme, parts.hostname, port, username, password


def _check_topic(topic: object) -> str:
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"topic: expected a topic template such as {DEFAULT_TOPIC}")
    try:
        pieces = list(string.Formatter().parse(topic))
    except ValueError as exc:
        raise ValueError(f"topic: {exc} in {topic!r} (write {{{{ and }}}} for braces)") from None
    literal = ""
    for text, field, spec, conversion in pieces:
        literal += text
        if field is None:
            continue
        if field not in TOPIC_FIELDS:
            known = ", ".join("{" + known + "}" for known in TOPIC_FIELDS)
            raise ValueError(f"topic: unknown field {{{field}}} in {topic!r} (known: {known})")
        if spec or conversion:
            raise ValueError(f"topic: {{{field}}} takes no format or conversion in {topic!r}")
    if any(bad in literal for bad in _FORBIDDEN):
        raise ValueError(f"topic: no wildcards (+, #) in a topic to publish to: {topic!r}")
    if topic.startswith("$"):
        raise ValueError(f"topic: topics starting with $ are the broker's: {topic!r}")
    if len(topic.encode()) > 60_000:
        raise ValueError("topic: too long")
    return topic


def _qos(value: object) -> int:
    if isinstance(value, str) and value.strip() in ("0", "1", "2"):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1, 2):
        return value
    raise ValueError(f"qos: expected 0, 1 or 2, got {value!r}")


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _flag(value: object, option: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{option}: expected true or false, got {value!r}")
