"""The local DT cloud: DT's REST API, token endpoint and data-connector identity on loopback.

Public API::

    create_emulator_app(state=None, *, clock=time.time) -> aiohttp.web.Application
    EmulatorState.seeded(now, *, rng=None, **settings) -> EmulatorState
    running_emulator(host="127.0.0.1", port=0, *, state=None, clock=time.time)
        -> async context manager yielding RunningEmulator(url, api_url, token_url, env, state)
"""

from receiver.emulator.api import CLOCK_KEY, STATE_KEY, create_emulator_app
from receiver.emulator.auth import ServiceAccount
from receiver.emulator.connectors import Connector, HttpConfig
from receiver.emulator.devices import Device
from receiver.emulator.errors import ApiError
from receiver.emulator.runner import ENV_NAMES, RunningEmulator, running_emulator
from receiver.emulator.state import EmulatorState, Project

__all__ = [
    "CLOCK_KEY",
    "ENV_NAMES",
    "STATE_KEY",
    "ApiError",
    "Connector",
    "Device",
    "EmulatorState",
    "HttpConfig",
    "Project",
    "RunningEmulator",
    "ServiceAccount",
    "create_emulator_app",
    "running_emulator",
]
