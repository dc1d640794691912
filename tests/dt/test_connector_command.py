"""`dtpush connector …` against the emulator, with only the variables it prints."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from receiver.cli import build_parser
from receiver.emulator import RunningEmulator, running_emulator

URL = "https://receiver.example.com/events"
PUSH_SECRET = "push-secret-for-the-cli-0123456789"


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    async with running_emulator() as emu:
        yield emu


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "empty.toml"
    path.write_text("")
    return str(path)


async def dtpush(env: dict[str, str], config: str, *argv: str) -> tuple[int, str, str]:
    """Run `dtpush connector ARGV` in-process (in a thread: it runs its own event loop)."""
    args = build_parser().parse_args(["connector", *argv, "--config", config])
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(args.run, args, environ=env, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def one_line(text: str) -> bool:
    return text.endswith("\n") and text.count("\n") == 1 and text.startswith("dtpush: error:")


async def test_create_list_get_update_sync_metrics_delete(
    emulator: RunningEmulator, config: str
) -> None:
    env = {**emulator.env, "DTPUSH_VERIFY_SECRETS": PUSH_SECRET}

    code, out, _ = await dtpush(env, config, "list")
    assert (code, out) == (0, "no data connectors\n")

    code, out, _ = await dtpush(env, config, "create", "--url", URL, "--json")
    assert code == 0
    created = orjson.loads(out)
    connector_id = created["name"].split("/")[-1]
    assert created["displayName"] == "dtpush"  # connector.display_name's default
    assert created["labels"] == ["name"]
    assert created["httpConfig"]["signatureSecret"] == "***"
    (stored,) = emulator.state.list_connectors(emulator.state.project_id)
    assert stored.http_config.signature_secret == PUSH_SECRET

    code, out, _ = await dtpush(env, config, "list")
    header, row = out.splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "EVENTS", "LABELS", "URL"]
    assert row.split() == [connector_id, "dtpush", "ACTIVE", "all", "name", URL]

    code, out, _ = await dtpush(env, config, "get", connector_id)
    assert code == 0
    assert "signature secret: ***" in out
    assert PUSH_SECRET not in out

    code, out, _ = await dtpush(env, config, "get", connector_id, "--json", "--show-secret")
    assert orjson.loads(out)["httpConfig"]["signatureSecret"] == PUSH_SECRET

    code, out, _ = await dtpush(
        env,
        config,
        "update",
        connector_id,
        "--status",
        "USER_DISABLED",
        "--event-type",
        "touch",
        "--event-type",
        "temperature",
        "--json",
    )
    assert code == 0
    updated = orjson.loads(out)
    assert (updated["status"], updated["events"]) == ("USER_DISABLED", ["touch", "temperature"])

    code, out, _ = await dtpush(env, config, "sync", connector_id)
    assert (code, out) == (0, f"sync requested for {connector_id}\n")

    code, out, _ = await dtpush(env, config, "metrics", connector_id, "--json")
    assert code == 0
    assert set(orjson.loads(out)["metrics"]) == {"successCount", "errorCount", "latency99p"}

    code, out, _ = await dtpush(env, config, "delete", connector_id)
    assert (code, out) == (0, f"deleted {connector_id}\n")
    assert emulator.state.list_connectors(emulator.state.project_id) == []


async def test_unknown_id_is_one_line_and_exit_1(emulator: RunningEmulator, config: str) -> None:
    code, out, err = await dtpush(emulator.env, config, "get", "noSuchConnector")

    assert (code, out) == (1, "")
    assert one_line(err)
    assert "not found" in err


async def test_unknown_project_is_one_line_and_exit_1(
    emulator: RunningEmulator, config: str
) -> None:
    env = {**emulator.env, "DTPUSH_CONNECTOR_PROJECT_ID": "noSuchProject"}

    code, _, err = await dtpush(env, config, "list")

    assert code == 1
    assert one_line(err)
    assert "project not found" in err


async def test_wrong_credential_is_one_line_and_exit_1(
    emulator: RunningEmulator, config: str
) -> None:
    env = {**emulator.env, "DT_SERVICE_ACCOUNT_SECRET": "wrong"}

    code, _, err = await dtpush(env, config, "list")

    assert code == 1
    assert one_line(err)
    assert "could not authenticate" in err
    assert "wrong" not in err


async def test_project_not_configured_is_a_configuration_error_naming_the_setting(
    emulator: RunningEmulator, config: str
) -> None:
    env = {k: v for k, v in emulator.env.items() if k != "DTPUSH_CONNECTOR_PROJECT_ID"}

    code, _, err = await dtpush(env, config, "list")

    assert code == 2
    assert one_line(err)
    assert "connector.project_id" in err


async def test_missing_credentials_are_a_configuration_error(
    emulator: RunningEmulator, config: str
) -> None:
    env = {k: v for k, v in emulator.env.items() if not k.startswith("DT_SERVICE_ACCOUNT")}

    code, _, err = await dtpush(env, config, "list")

    assert code == 2
    assert one_line(err)
    assert "DT_SERVICE_ACCOUNT_SECRET" in err


async def test_update_without_a_change_is_a_usage_error(
    emulator: RunningEmulator, config: str
) -> None:
    code, _, err = await dtpush(emulator.env, config, "update", "someId")

    assert code == 2
    assert one_line(err)
    assert emulator.state.faults is not None


async def test_create_without_a_url_names_the_setting(
    emulator: RunningEmulator, config: str
) -> None:
    code, _, err = await dtpush(emulator.env, config, "create")

    assert code == 2
    assert "connector.public_url" in err
    assert emulator.state.list_connectors(emulator.state.project_id) == []


def test_bad_status_is_a_usage_error_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["connector", "update", "x", "--status", "SYSTEM_DISABLED"])

    assert exited.value.code == 2


async def run_module(env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "receiver",
        "connector",
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_command_works_with_only_the_printed_variables(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **emulator.env}
    emulator.state.faults.fail_next(1, 503, method="GET")  # ridden out by a retry

    listed = await run_module(env, "list", "--json")
    wrong = await run_module({**env, "DT_SERVICE_ACCOUNT_SECRET": "x" * 40}, "list")

    code, out, err = listed
    assert (code, out) == (0, "[]\n")
    assert "dt_request_retry" in err  # the 503 was logged, as one JSON line
    assert emulator.env["DT_SERVICE_ACCOUNT_SECRET"] not in err
    assert wrong[0] == 1
    assert one_line(wrong[2])
