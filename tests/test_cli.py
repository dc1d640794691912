"""The `dtpush` command line: exit codes, one-line errors naming the setting, and the dead
letter round trip (issue 2, line 4) through the real commands against a running receiver."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from receiver.app import SERVICE_KEY, create_app
from receiver.cli import main
from receiver.config import load_settings
from receiver.testing import Signer, make_event_body
from tests.recording import RecordingHandler
from tests.waiting import until, until_async

SECRET = "cli-test-secret-0123456789abcdef0123"
Client = TestClient[web.Request, web.Application]


def dtpush(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        cwd=cwd,
        timeout=60,
    )


def test_check_config_prints_toml_with_secrets_masked(tmp_path: Path) -> None:
    result = dtpush("check-config", env={"DTPUSH_VERIFY_SECRETS": SECRET}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'secrets = ["***"]' in result.stdout
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "env", "setting"),
    [
        (["check-config"], {}, "verify.secrets"),
        (["serve"], {}, "verify.secrets"),
        (["serve", "--port", "99999"], {"DTPUSH_VERIFY_SECRETS": SECRET}, "server.port"),
        (
            ["check-config"],
            {"DTPUSH_VERIFY_SECRETS": SECRET, "DTPUSH_HANDLERS_ENABLED": "nope"},
            "handlers.enabled",
        ),
        (["check-config", "--config", "missing.toml"], {}, "--config"),
        (["dlq", "replay"], {}, "--handler"),
        (["dlq", "purge"], {}, "--yes"),
        (["send", "--url", "ftp://x", "--secret", "s"], {}, "--url"),
        (
            ["send", "--url", "http://127.0.0.1:9/e", "--secret", "s", "--type", "nope"],
            {},
            "--type",
        ),
    ],
)
def test_usage_and_configuration_errors_exit_2_with_one_line_naming_the_setting(
    tmp_path: Path, args: list[str], env: dict[str, str], setting: str
) -> None:
    result = dtpush(*args, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert setting in lines[-1]
    assert "Traceback" not in result.stderr


def test_every_command_has_help() -> None:
    for command in ("serve", "worker", "demo", "send", "dlq", "check-config"):
        result = dtpush(command, "--help")
        assert result.returncode == 0, command
        assert "--config" in result.stdout


@pytest.fixture
async def running(
    aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path
) -> tuple[Client, dict[str, RecordingHandler], Path]:
    config = tmp_path / "dtpush.toml"
    config.write_text(
        f'[verify]\nsecrets = ["{SECRET}"]\n[inbox]\npath = "{tmp_path / "inbox.db"}"\n'
        "[delivery]\nmax_attempts = 3\nbackoff_initial_seconds = 0.01\nbackoff_max_seconds = 0.05\n"
    )
    handlers = {"flaky": RecordingHandler(always_fail=True), "steady": RecordingHandler()}
    app = create_app(load_settings(config, env={}), registry=CollectorRegistry(), handlers=handlers)
    return await aiohttp_client(app), handlers, config


async def test_send_signs_like_dt_and_exits_0_on_200_and_1_otherwise(
    running: tuple[Client, dict[str, RecordingHandler], Path],
) -> None:
    client, handlers, _ = running
    url = str(client.make_url("/events"))
    good = await asyncio.to_thread(
        dtpush, "send", "--url", url, "--secret", SECRET, "--type", "humidity"
    )
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("200")
    assert '"status":"accepted"' in good.stdout
    bad = await asyncio.to_thread(dtpush, "send", "--url", url, "--secret", "not-it" * 6)
    assert bad.returncode == 1
    assert "bad_signature" in bad.stdout
    await handlers["steady"].wait_for(1)
    assert handlers["steady"].events[0].event_type == "humidity"


async def test_failing_handler_ends_in_dead_letters_and_replay_redelivers_it_once(
    running: tuple[Client, dict[str, RecordingHandler], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, handlers, config = running
    flaky, steady = handlers["flaky"], handlers["steady"]
    inbox = client.app[SERVICE_KEY].inbox
    body = make_event_body("temperature")
    response = await client.post("/events", data=body, headers=Signer(SECRET).headers(body))
    event_id = (await response.json())["eventId"]
    await steady.wait_for(1)

    async def dead_letter() -> bool:
        return bool(await inbox.list_dead(handler="flaky"))

    await until_async(dead_letter, within=10, what="the failing delivery to become a dead letter")
    assert flaky.calls == 3  # delivery.max_attempts

    capsys.readouterr()
    assert await asyncio.to_thread(main, ["dlq", "list", "--json", "--config", str(config)]) == 0
    listed = orjson.loads(capsys.readouterr().out)
    assert [(d["event_id"], d["handler"], d["attempts"]) for d in listed] == [
        (event_id, "flaky", 3)
    ]
    assert "planned failure" in listed[0]["last_error"]

    flaky.always_fail = False
    assert (
        await asyncio.to_thread(
            main, ["dlq", "replay", "--handler", "flaky", "--config", str(config)]
        )
        == 0
    )
    await flaky.wait_for(1)
    await until(lambda: inbox.stats().pending == 0, within=10, what="nothing pending")
    assert flaky.ids == [event_id]
    assert steady.ids == [event_id]  # the other handler was never called again
    assert await inbox.list_dead(handler="flaky") == []
