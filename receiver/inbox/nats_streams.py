"""The JetStream objects of the NATS inbox: its two streams, the handlers' consumers, stats.

- `<stream>`: events on `<prefix>.events.>`, file storage, *interest* retention (an event
  stays until every handler's consumer acked it), `duplicate_window` = the dedup window;
- `<stream>_DLQ`: dead letters on `<prefix>.dead.>`, file storage, kept until purged;
- per handler, the durable pull consumer `<prefix>-<handler>` on every event, explicit acks,
  `ack_wait` = the delivery engine's lease, no delivery limit (the engine counts attempts).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import BadRequestError, NotFoundError

from receiver.inbox.base import InboxStats
from receiver.inbox.nats_names import Names

#: In-flight deliveries a consumer allows (over every worker process).
MAX_ACK_PENDING = 20_000


async def ensure_streams(js: JetStreamContext, names: Names, dedup_window: float) -> None:
    """Create both streams, or bring an existing one to this configuration."""
    await _ensure(
        js,
        name=names.stream,
        subjects=[names.events],
        retention=js_api.RetentionPolicy.INTEREST,
        duplicate_window=dedup_window or None,
    )
    await _ensure(
        js,
        name=names.dead_stream,
        subjects=[names.dead],
        retention=js_api.RetentionPolicy.LIMITS,
    )


async def _ensure(js: JetStreamContext, **params: Any) -> None:
    config = js_api.StreamConfig(storage=js_api.StorageType.FILE, **params)
    try:
        await js.add_stream(config)
    except BadRequestError:  # it exists with another configuration
        await js.update_stream(config)


def consumer_config(names: Names, handler: str, ack_wait: float) -> js_api.ConsumerConfig:
    return js_api.ConsumerConfig(
        durable_name=names.consumer(handler),
        filter_subject=names.events,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        deliver_policy=js_api.DeliverPolicy.ALL,
        ack_wait=ack_wait,
        max_deliver=-1,
        max_ack_pending=MAX_ACK_PENDING,
    )


async def read_stats(js: JetStreamContext, names: Names) -> InboxStats:
    """Pending deliveries over every handler's consumer, the oldest's age, dead letters.

    Pending counts what each consumer has not acked (an event not wanted by a handler too,
    until that consumer skips it); the oldest is the first unacked event of any consumer.
    """
    pending, floor = 0, None
    for info in await js.consumers_info(names.stream):
        waiting = (info.num_pending or 0) + (info.num_ack_pending or 0)
        pending += waiting
        if waiting and info.ack_floor is not None:
            first = (info.ack_floor.stream_seq or 0) + 1
            floor = first if floor is None else min(floor, first)
    oldest = 0.0
    if floor is not None:
        with contextlib.suppress(NotFoundError):
            msg = await js.get_msg(names.stream, seq=floor, subject=names.events, next=True)
            if msg.time is not None:
                oldest = max(0.0, time.time() - msg.time.timestamp())
    dead_info = await js.stream_info(names.dead_stream, subjects_filter=names.dead)
    dead: dict[str, int] = {}
    for subject, count in (dead_info.state.subjects or {}).items():
        name = names.handler_of_dead_subject(subject)
        dead[name] = dead.get(name, 0) + count
    return InboxStats(pending, oldest, dead, 0)
