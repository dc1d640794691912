"""`dtpush emulator`: export lines first, a working cloud behind them, its sensors pushing,
bad flags refused, a clean stop."""

from __future__ import annotations

import asyncio
import shlex
import signal
import sys
import time
from pathlib import Path

import aiohttp
import jwt
import pytest

from receiver.dt import Client, DataConnector, HttpPushConfig
from receiver.emulator import ENV_NAMES
from receiver.emulator.auth import GRANT_TYPE
from tests.emulator.live import SECRET, LiveReceiver
from tests.waiting import until

DEADLINE = 30.0


async def _start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "receiver",
        "emulator",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _exports(process: asyncio.subprocess.Process) -> dict[str, str]:
    assert process.stdout is not None
    env: dict[str, str] = {}
    for _ in ENV_NAMES:
        line = (await asyncio.wait_for(process.stdout.readline(), DEADLINE)).decode()
        words = shlex.split(line)
        assert words[0] == "export", line
        name, _, value = words[1].partition("=")
        env[name] = value
    return env


async def _stop(process: asyncio.subprocess.Process, signum: int) -> int:
    process.send_signal(signum)
    return await asyncio.wait_for(process.wait(), DEADLINE)


async def test_cli_prints_exports_first_then_serves_the_printed_credentials() -> None:
    process = await _start("--port", "0")
    try:
        env = await _exports(process)
        now = int(time.time())
        assertion = jwt.encode(
            {
                "iat": now,
                "exp": now + 3600,
                "aud": env["DT_TOKEN_URL"],
                "iss": env["DT_SERVICE_ACCOUNT_EMAIL"],
            },
            env["DT_SERVICE_ACCOUNT_SECRET"],
            algorithm="HS256",
            headers={"kid": env["DT_SERVICE_ACCOUNT_KEY_ID"]},
        )
        async with aiohttp.ClientSession() as session:
            token = await session.post(
                env["DT_TOKEN_URL"], data={"assertion": assertion, "grant_type": GRANT_TYPE}
            )
            access = (await token.json())["access_token"]
            listed = await session.get(
                f"{env['DT_API_URL']}/projects/{env['DTPUSH_CONNECTOR_PROJECT_ID']}/dataconnectors",
                headers={"Authorization": f"Bearer {access}"},
            )
            body = await listed.json()
    finally:
        code = await _stop(process, signal.SIGTERM)

    assert list(env) == list(ENV_NAMES)
    assert env["DT_API_URL"].startswith("http://127.0.0.1:") and env["DT_API_URL"].endswith("/v2")
    assert not env["DT_API_URL"].startswith("http://127.0.0.1:0/")
    assert env["DT_TOKEN_URL"] == env["DT_API_URL"].removesuffix("/v2") + "/oauth2/token"
    assert token.status == 200
    assert body == {"dataConnectors": [], "nextPageToken": ""}
    assert code == 0


async def test_cli_ctrl_c_stops_with_exit_code_0() -> None:
    process = await _start("--port", "0")
    await _exports(process)

    code = await _stop(process, signal.SIGINT)

    assert code == 0


async def test_cli_same_seed_prints_same_credentials() -> None:
    first = await _start("--port", "0", "--seed", "42")
    second = await _start("--port", "0", "--seed", "42")
    try:
        one, two = await _exports(first), await _exports(second)
    finally:
        await _stop(first, signal.SIGTERM)
        await _stop(second, signal.SIGTERM)

    assert one["DT_SERVICE_ACCOUNT_SECRET"] == two["DT_SERVICE_ACCOUNT_SECRET"]
    assert one["DTPUSH_CONNECTOR_PROJECT_ID"] == two["DTPUSH_CONNECTOR_PROJECT_ID"]


@pytest.mark.parametrize("port", ["99999", "http"])
async def test_cli_bad_port_is_a_usage_error(port: str) -> None:
    process = await _start("--port", port)

    code = await asyncio.wait_for(process.wait(), DEADLINE)

    assert code == 2


async def test_cli_port_in_use_fails_with_one_line_and_exit_1() -> None:
    holder = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = holder.sockets[0].getsockname()[1]
    try:
        process = await _start("--port", str(port))
        _, stderr = await asyncio.wait_for(process.communicate(), DEADLINE)
    finally:
        holder.close()
        await holder.wait_closed()

    assert process.returncode == 1
    assert stderr.decode().count("\n") == 1
    assert "Traceback" not in stderr.decode()


@pytest.mark.parametrize(
    "flags",
    [
        ("--duplicates", "1.5"),
        ("--reorder", "-0.1"),
        ("--rate", "nan"),
        ("--speed", "0"),
        ("--delay", "-1"),
        ("--rotate-keys-every", "inf"),
        ("--disable-after", "x"),
        ("--rate", "5", "--no-sensors"),
    ],
)
async def test_cli_bad_sensor_or_fault_flag_is_a_usage_error(flags: tuple[str, ...]) -> None:
    process = await _start(*flags)

    _, stderr = await asyncio.wait_for(process.communicate(), DEADLINE)

    assert process.returncode == 2
    assert "Traceback" not in stderr.decode()


async def test_cli_sensors_push_to_a_new_connector_with_injected_duplicates(
    tmp_path: Path,
) -> None:
    process = await _start("--rate", "100", "--seed", "1", "--duplicates", "1")
    try:
        env = await _exports(process)
        async with LiveReceiver(tmp_path) as live, Client.from_env(env) as client:
            await DataConnector.create_data_connector(
                env["DTPUSH_CONNECTOR_PROJECT_ID"],
                HttpPushConfig(url=live.url, signature_secret=SECRET),
                client=client,
            )
            await until(lambda: len(live.ids) >= 10, within=DEADLINE, what="pushed events")
            await until(lambda: "duplicate" in live.outcomes(), within=DEADLINE, what="a duplicate")
    finally:
        code = await _stop(process, signal.SIGTERM)

    assert code == 0
    assert set(live.outcomes()) == {"accepted", "duplicate"}
