"""The local DT cloud: DT's REST API, token endpoint and data-connector identity on loopback.

Public API::

    create_emulator_app(state=None, *, clock=time.time) -> aiohttp.web.Application
    EmulatorState.seeded(now, *, rng=None, **settings) -> EmulatorState
    running_emulator(host="127.0.0.1", port=0, *, state=None, clock=time.time,
                     push=True, push_options=None, sensors=False, rate=None, speed=None,
                     seed=None, rhythm=None, limit=None)
        -> async context manager yielding RunningEmulator(url, api_url, token_url, oidc_url,
           env, state, pusher, sensors)
    Pusher(state, *, options=PushOptions(...), session=None, clock=time.time, issuer=None)
    VirtualSensors(state, *, project_id=None, seed=None, rhythm=None, speed=None, rate=None,
                   limit=None, clock=time.time)
"""

from receiver.emulator.api import CLOCK_KEY, STATE_KEY, create_emulator_app
from receiver.emulator.auth import ServiceAccount
from receiver.emulator.connectors import Connector, HttpConfig
from receiver.emulator.devices import Device
from receiver.emulator.errors import ApiError
from receiver.emulator.pusher import PushAttempt, Pusher, PushOptions
from receiver.emulator.runner import ENV_NAMES, RunningEmulator, running_emulator
from receiver.emulator.schedule import Rhythm, SensorPlan
from receiver.emulator.sensors import VirtualSensors
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
    "PushAttempt",
    "PushOptions",
    "Pusher",
    "Rhythm",
    "RunningEmulator",
    "SensorPlan",
    "ServiceAccount",
    "VirtualSensors",
    "create_emulator_app",
    "running_emulator",
]
