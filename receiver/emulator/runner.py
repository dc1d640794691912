"""Running the emulator on a loopback socket: for tests, the demo and `dtpush emulator`.

::

    async with running_emulator() as emu:        # port 0 = a free port
        emu.api_url    # http://127.0.0.1:PORT/v2
        emu.token_url  # http://127.0.0.1:PORT/oauth2/token
        emu.oidc_url   # http://127.0.0.1:PORT/data-connector/.well-known/openid-configuration
        emu.env        # the variables `dtpush emulator` prints as `export` lines
        emu.state      # the EmulatorState behind it
        emu.pusher     # the Pusher posting events to ACTIVE connectors (None: push=False)
        emu.sensors    # the VirtualSensors making events (None unless sensors=True)

The pusher runs by default (events appended to the state, by the sensors or by hand with
`state.emit`, and ``:sync`` requests are pushed); the virtual sensors only when asked.
Both stop, with the server, when the block ends.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from receiver.emulator.api import STATE_KEY, Clock, create_emulator_app
from receiver.emulator.auth import TOKEN_PATH
from receiver.emulator.oidc import OPENID_CONFIGURATION_PATH
from receiver.emulator.pusher import Pusher, PushOptions
from receiver.emulator.schedule import Rhythm
from receiver.emulator.sensors import VirtualSensors
from receiver.emulator.state import EmulatorState

#: The order `dtpush emulator` prints them in.
ENV_NAMES = (
    "DT_API_URL",
    "DT_TOKEN_URL",
    "DT_SERVICE_ACCOUNT_KEY_ID",
    "DT_SERVICE_ACCOUNT_SECRET",
    "DT_SERVICE_ACCOUNT_EMAIL",
    "DTPUSH_CONNECTOR_PROJECT_ID",
)


@dataclass(frozen=True)
class RunningEmulator:
    host: str
    port: int
    state: EmulatorState
    pusher: Pusher | None = None
    sensors: VirtualSensors | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + "/v2"

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    @property
    def oidc_url(self) -> str:
        """The data-connector OpenID configuration (`verify.oidc_url` for this cloud)."""
        return self.url + OPENID_CONFIGURATION_PATH

    @property
    def env(self) -> dict[str, str]:
        """DT_API_URL, DT_TOKEN_URL, the service account and the project id, in that order."""
        account = self.state.service_account
        return {
            "DT_API_URL": self.api_url,
            "DT_TOKEN_URL": self.token_url,
            "DT_SERVICE_ACCOUNT_KEY_ID": account.key_id,
            "DT_SERVICE_ACCOUNT_SECRET": account.secret,
            "DT_SERVICE_ACCOUNT_EMAIL": account.email,
            "DTPUSH_CONNECTOR_PROJECT_ID": self.state.project_id,
        }


@asynccontextmanager
async def running_emulator(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    state: EmulatorState | None = None,
    clock: Clock = time.time,
    shutdown_timeout: float = 1.0,
    push: bool = True,
    push_options: PushOptions | None = None,
    sensors: bool = False,
    rate: float | None = None,
    speed: float | None = None,
    seed: int | None = None,
    rhythm: Rhythm | None = None,
    limit: int | None = None,
) -> AsyncIterator[RunningEmulator]:
    """Serve the emulator on `host`:`port` (0 = a free port) until the block ends.

    `push` runs a `Pusher` with `push_options`; `sensors` runs `VirtualSensors` on the
    first project with `rate` (events per second overall) or `speed` (virtual seconds per
    real second; default 1, DT's own rhythm), `seed`, `rhythm` and `limit` (stop after
    that many events).
    """
    app = create_emulator_app(state, clock=clock)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    pusher: Pusher | None = None
    virtual: VirtualSensors | None = None
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = int(runner.addresses[0][1])
        emulator_state = app[STATE_KEY]
        emulator_state.base_url = RunningEmulator(host, bound_port, emulator_state).url
        if push:
            pusher = Pusher(emulator_state, options=push_options, clock=clock)
            await pusher.start()
        if sensors:
            virtual = VirtualSensors(
                emulator_state,
                seed=seed,
                rhythm=rhythm,
                speed=speed,
                rate=rate,
                limit=limit,
                clock=clock,
            )
            await virtual.start()
        yield RunningEmulator(host, bound_port, emulator_state, pusher, virtual)
    finally:
        if virtual is not None:
            await virtual.stop()
        if pusher is not None:
            await pusher.stop()
        await runner.cleanup()
