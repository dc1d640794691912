"""Running an aiohttp application until SIGTERM/SIGINT, with a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

log = logging.getLogger("dtpush.runtime")

#: Header values up to this size reach the views (a huge token is answered 401, not 400).
MAX_HEADER_BYTES = 32768


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


#: Allocations between young-generation collections in a running service (CPython's is 700).
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Cheaper garbage collection for a long-running process, once it has started up.

    Everything alive now (modules, the app, the handlers) is frozen out of the collector's
    walks, and the young generation is collected every 10 000 allocations instead of 700: a
    push allocates a few hundred short-lived containers and almost none of them in cycles.
    Under bench/ingest's load this took about 5 µs of CPU per push off the event-loop thread
    (per-thread CPU read from /proc, three runs each way).
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def run_as_batch_work() -> None:
    """Mark the calling thread as batch work for the Linux scheduler (`SCHED_BATCH`).

    The `sqlite` handler's writer thread calls this first. The event loop wakes it for every
    batch it queues; a normal thread, woken on the loop's core, preempts the loop at once,
    then waits for the GIL the loop holds, and the two switch back and forth. A `SCHED_BATCH`
    thread keeps its fair share of CPU but does not preempt on wake-up: it runs when the loop
    waits (or another core is free) and finds more work queued by then.

    The inbox's writer stays a normal thread: a push is answered only after its commit, and
    a batch thread loses every wake-up to a busy neighbour on its core. Measured with
    bench/ingest: with both writers as batch work, dtpush alone on a core did 20 % more
    pushes/s, but next to a busy process on the same core it did 30 % fewer with p99 28 ms;
    with only the handler's writer, it gains in both (figures in the README).
    Where the policy does not exist or is refused (not Linux, a seccomp filter), nothing
    changes.
    """
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None or not hasattr(os, "sched_setscheduler"):
        return
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, policy, os.sched_param(0))


async def wait_for_stop_signal() -> None:
    """Return on SIGTERM or SIGINT (Ctrl-C)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


@asynccontextmanager
async def serving(
    app: web.Application,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    grace: float = 10.0,
) -> AsyncIterator[str]:
    """Serve `app` on host:port while the block runs; yields the base URL actually bound."""
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=grace,
        handle_signals=False,
        max_field_size=MAX_HEADER_BYTES,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True)
    try:
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        bound_port = sockets[0].getsockname()[1] if sockets else port
        scheme = "https" if ssl_context else "http"
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        yield f"{scheme}://{shown_host}:{bound_port}"
    finally:
        await runner.cleanup()
