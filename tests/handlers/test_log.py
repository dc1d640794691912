"""The built-in `log` handler: one compact JSON line per event, to stdout, stderr or a file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from handlers.log import LogHandler
from receiver.errors import HandlerError
from receiver.events import parse
from receiver.registry import load_handlers
from tests.handlers.samples import body, sample, variant

FIELDS = ["event_id", "event_type", "device_id", "project_id", "timestamp", "labels", "data"]


async def test_log_stdout_gets_one_json_line_per_event(capsys: pytest.CaptureFixture[str]) -> None:
    handler = LogHandler()
    await handler.start()
    await handler.handle(sample("temperature"))
    await handler.handle(sample("touch"))
    await handler.close()

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    first = orjson.loads(lines[0])
    pushed = orjson.loads(body("temperature"))
    assert list(first) == FIELDS
    assert first == {
        "event_id": pushed["event"]["eventId"],
        "event_type": "temperature",
        "device_id": pushed["metadata"]["deviceId"],
        "project_id": pushed["metadata"]["projectId"],
        "timestamp": "2024-05-29T10:34:03.970415Z",
        "labels": {"name": "test temp"},
        "data": pushed["event"]["data"],
    }
    assert orjson.loads(lines[1])["event_type"] == "touch"
    assert " " not in lines[1].replace("test temp", "")  # compact


async def test_log_stderr_option_writes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    handler = LogHandler(stream="stderr")
    await handler.start()
    await handler.handle(sample("motion"))
    await handler.close()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert orjson.loads(captured.err)["event_type"] == "motion"


async def test_log_file_line_is_written_before_handle_returns(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "events.jsonl"
    handler = LogHandler(stream=str(path))
    await handler.start()
    await handler.handle(sample("humidity"))
    assert orjson.loads(path.read_bytes())["event_type"] == "humidity"
    await handler.close()


async def test_log_file_is_appended_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    for event_type in ("touch", "co2"):
        handler = LogHandler(stream=str(path))
        await handler.start()
        await handler.handle(sample(event_type))
        await handler.close()
    lines = path.read_text().splitlines()
    assert [orjson.loads(line)["event_type"] for line in lines] == ["touch", "co2"]


async def test_log_timestamp_is_written_in_utc(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    moment = datetime(2024, 1, 1, 14, 0, 0, 250000, tzinfo=timezone(timedelta(hours=2)))
    handler = LogHandler(stream=path)
    await handler.start()
    await handler.handle(variant("touch", event_id="tz", timestamp=moment))
    await handler.close()
    logged = orjson.loads(path.read_bytes())["timestamp"]
    assert logged == "2024-01-01T12:00:00.250000Z"
    assert datetime.fromisoformat(logged) == moment.astimezone(UTC)


async def test_log_unknown_event_type_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    data = {"somethingNew": {"value": 1, "updateTime": "2024-01-01T00:00:00Z"}}
    doc = orjson.loads(body("touch"))
    doc["event"]["eventType"] = "somethingNew"
    doc["event"]["data"] = data
    handler = LogHandler(stream=path)
    await handler.start()
    await handler.handle(parse(orjson.dumps(doc)))
    await handler.close()
    line = orjson.loads(path.read_bytes())
    assert (line["event_type"], line["data"]) == ("somethingNew", data)


async def test_log_ready_only_between_start_and_close(tmp_path: Path) -> None:
    handler = LogHandler(stream=tmp_path / "events.jsonl")
    assert not handler.ready()
    await handler.start()
    assert handler.ready()
    await handler.close()
    assert not handler.ready()
    with pytest.raises(RuntimeError, match="not running"):
        await handler.handle(sample("touch"))


async def test_log_file_that_cannot_be_opened_fails_start(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    handler = LogHandler(stream=tmp_path / "file" / "events.jsonl")
    handler.name = "log"
    with pytest.raises(HandlerError, match="handler 'log': cannot open"):
        await handler.start()
    assert not handler.ready()


@pytest.mark.parametrize("stream", ["", 7, None])
def test_log_stream_option_that_is_not_a_stream_is_refused(stream: Any) -> None:
    with pytest.raises(ValueError, match=r"^stream: expected stdout, stderr or a file path"):
        LogHandler(stream=stream)


async def test_log_enabled_by_name_writes_to_configured_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    handler = load_handlers(["log"], {"log": {"stream": str(path)}})["log"]
    await handler.start()
    await handler.handle(sample("waterPresent"))
    await handler.close()
    assert orjson.loads(path.read_bytes())["event_type"] == "waterPresent"
