"""The README's handler example is real code: it loads, enables by module:attribute, and runs."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from receiver.events import parse
from receiver.registry import load_handlers
from receiver.testing import make_event_body

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def example(after_heading: str) -> str:
    section = README.split(after_heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert match, f"no python example after {after_heading!r}"
    return match.group(1)


async def test_readme_handler_example_is_enabled_by_module_attribute_and_handles_events(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code = example("## Writing a handler")
    module = types.ModuleType("readme_sinks")
    exec(compile(code, "README.md", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "readme_sinks", module)
    handlers = load_handlers(["readme_sinks:alert_if_warm"], {})
    sink = handlers["readme_sinks:alert_if_warm"]
    assert sink.wants("temperature") and sink.wants("humidity") and not sink.wants("touch")
    await sink.handle(parse(make_event_body("temperature", data={"value": 31.5})))
    await sink.handle(parse(make_event_body("temperature", data={"value": 20})))
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 and "31.5 °C" in printed[0]
    assert len(code.strip().splitlines()) <= 10
