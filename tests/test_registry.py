"""The handler registry: `@handler`, `Handler`, entry-point discovery and `load_handlers`."""

from __future__ import annotations

import pytest

import receiver
from handlers.log import LogHandler
from handlers.sqlite import SqliteHandler
from receiver import Event, Handler, handler
from receiver.errors import HandlerError
from receiver.registry import available_handlers, load_handlers
from tests import plugin_handlers
from tests.handlers.samples import sample, variant

PLUGIN = "tests.plugin_handlers"


def load_error(enabled: list[str], options: dict[str, dict[str, object]] | None = None) -> str:
    with pytest.raises(HandlerError) as caught:
        load_handlers(enabled, options or {})
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_public_api_exports_event_handler_handler_class_and_version() -> None:
    assert set(receiver.__all__) == {"Event", "Handler", "__version__", "handler"}
    assert receiver.Event is Event
    assert isinstance(receiver.__version__, str)
    assert receiver.__version__


def test_handler_decorator_with_types_wants_only_those() -> None:
    @handler("temperature", "humidity")
    async def f(event: Event) -> None:
        pass

    assert f.wants("temperature")
    assert f.wants("humidity")
    assert not f.wants("touch")
    assert f.event_types == frozenset({"temperature", "humidity"})


def test_handler_decorator_bare_and_called_empty_want_every_type() -> None:
    @handler
    async def bare(event: Event) -> None:
        pass

    @handler()
    async def empty(event: Event) -> None:
        pass

    for h in (bare, empty):
        assert isinstance(h, Handler)
        assert h.wants("temperature")
        assert h.wants("someTypeDtAddsLater")


async def test_handler_decorated_function_stays_callable_and_handles() -> None:
    seen: list[str] = []

    @handler("touch")
    async def record(event: Event) -> None:
        """Docstring kept."""
        seen.append(event.event_id)

    event = sample("touch")
    await record(event)
    await record.handle(event)
    assert seen == [event.event_id, event.event_id]
    assert record.__doc__ == "Docstring kept."
    assert record.__name__ == "record"  # type: ignore[attr-defined]


def test_handler_decorator_sync_function_is_refused() -> None:
    with pytest.raises(TypeError, match="async"):

        @handler("touch")  # type: ignore[arg-type]
        def not_async(event: Event) -> None:
            pass


def test_handler_decorator_list_of_types_is_refused() -> None:
    with pytest.raises(TypeError, match="event type names"):
        handler(["temperature"])  # type: ignore[call-overload]


def test_class_handler_event_types_tuple_becomes_frozenset() -> None:
    class Sink(Handler):
        event_types = ("touch", "motion")

        async def handle(self, event: Event) -> None:
            pass

    assert Sink.event_types == frozenset({"touch", "motion"})  # type: ignore[comparison-overlap]
    sink = Sink()
    assert sink.wants("motion")
    assert not sink.wants("temperature")


def test_class_handler_single_string_is_one_type_not_letters() -> None:
    class Sink(Handler):
        event_types = "touch"

        async def handle(self, event: Event) -> None:
            pass

    assert Sink().wants("touch")
    assert not Sink().wants("t")


def test_class_handler_without_types_wants_every_type() -> None:
    assert plugin_handlers.Bare().wants("anything")


def test_available_handlers_lists_builtins_by_entry_point() -> None:
    found = available_handlers()
    assert found["sqlite"] == "handlers.sqlite:SqliteHandler"
    assert found["log"] == "handlers.log:LogHandler"


def test_load_handlers_builtin_sqlite_through_entry_point_gets_name_and_options() -> None:
    loaded = load_handlers(["sqlite"], {"sqlite": {"path": "somewhere/events.db"}})
    h = loaded["sqlite"]
    assert isinstance(h, SqliteHandler)
    assert h.name == "sqlite"
    assert str(h.path) == "somewhere/events.db"


def test_load_handlers_keeps_configured_order_and_names() -> None:
    loaded = load_handlers(["log", "sqlite", f"{PLUGIN}:warm"], {})
    assert list(loaded) == ["log", "sqlite", f"{PLUGIN}:warm"]
    assert isinstance(loaded["log"], LogHandler)
    assert [h.name for h in loaded.values()] == list(loaded)


async def test_load_handlers_module_attribute_function_is_enabled_by_its_path() -> None:
    name = f"{PLUGIN}:warm"
    h = load_handlers([name], {})[name]
    assert h.name == name
    assert h.wants("humidity")
    assert not h.wants("touch")
    event = variant("temperature", event_id="registry-warm-1")
    await h.handle(event)
    assert "registry-warm-1" in plugin_handlers.calls


def test_load_handlers_function_handler_enabled_does_not_rename_module_object() -> None:
    before = plugin_handlers.everything.name
    h = load_handlers([f"{PLUGIN}:everything"], {})[f"{PLUGIN}:everything"]
    assert h is not plugin_handlers.everything
    assert plugin_handlers.everything.name == before
    assert h.wants("anything")


def test_load_handlers_class_options_from_environment_strings_are_coerced() -> None:
    name = f"{PLUGIN}:Recording"
    h = load_handlers([name], {name: {"limit": "5", "label": "x"}})[name]
    assert isinstance(h, plugin_handlers.Recording)
    assert (h.limit, h.label) == (5, "x")
    assert h.wants("temperature")
    assert not h.wants("humidity")


def test_load_handlers_handler_taking_any_options_gets_them() -> None:
    name = f"{PLUGIN}:Flexible"
    h = load_handlers([name], {name: {"a": 1, "b": "two"}})[name]
    assert isinstance(h, plugin_handlers.Flexible)
    assert h.options == {"a": 1, "b": "two"}


def test_load_handlers_instance_is_enabled_as_is() -> None:
    name = f"{PLUGIN}:instance"
    assert load_handlers([name], {})[name] is plugin_handlers.instance


def test_load_handlers_unknown_name_names_setting_and_installed() -> None:
    message = load_error(["nosuch"])
    assert "'nosuch'" in message
    assert "handlers.enabled" in message
    assert "log, mqtt, postgres, sqlite" in message


def test_load_handlers_missing_module_names_the_module() -> None:
    message = load_error(["tests.no_such_module:thing"])
    assert "handlers.enabled" in message
    assert "cannot import tests.no_such_module" in message


def test_load_handlers_module_failing_on_import_is_a_handler_error() -> None:
    message = load_error(["tests.plugin_broken:anything"])
    assert "RuntimeError: this module fails on import" in message


def test_load_handlers_missing_attribute_names_it() -> None:
    message = load_error([f"{PLUGIN}:nope"])
    assert f"{PLUGIN} has no attribute nope" in message


@pytest.mark.parametrize("name", [f"{PLUGIN}:", ":warm"])
def test_load_handlers_half_a_module_attribute_is_refused(name: str) -> None:
    assert "expected module:attribute" in load_error([name])


@pytest.mark.parametrize("attribute", ["not_a_handler", "undecorated"])
def test_load_handlers_object_that_is_not_a_handler_is_refused(attribute: str) -> None:
    assert "not a handler" in load_error([f"{PLUGIN}:{attribute}"])


def test_load_handlers_listed_twice_is_refused() -> None:
    assert "listed twice" in load_error(["log", "log"])


def test_load_handlers_unknown_option_of_builtin_names_the_setting() -> None:
    message = load_error(["sqlite"], {"sqlite": {"colour": "blue"}})
    assert "unknown option handlers.sqlite.colour" in message


def test_load_handlers_unknown_option_of_module_attribute_quotes_the_name() -> None:
    name = f"{PLUGIN}:Recording"
    message = load_error([name], {name: {"colour": "blue"}})
    assert f'unknown option handlers."{name}".colour' in message


def test_load_handlers_option_for_class_without_options_is_refused() -> None:
    name = f"{PLUGIN}:Bare"
    assert "unknown option" in load_error([name], {name: {"x": 1}})


def test_load_handlers_option_for_function_handler_is_refused() -> None:
    name = f"{PLUGIN}:warm"
    assert f'unknown option handlers."{name}".x' in load_error([name], {name: {"x": 1}})


def test_load_handlers_option_of_wrong_type_names_the_setting() -> None:
    name = f"{PLUGIN}:Recording"
    message = load_error([name], {name: {"limit": "many"}})
    assert f"handlers.\"{name}\".limit: expected an integer, got 'many'" in message


def test_load_handlers_builtin_option_of_wrong_type_names_the_setting() -> None:
    message = load_error(["sqlite"], {"sqlite": {"path": 3}})
    assert "handlers.sqlite.path: expected a file path" in message


def test_load_handlers_missing_required_option_names_it() -> None:
    name = f"{PLUGIN}:NeedsDsn"
    assert f'missing option handlers."{name}".dsn' in load_error([name])


def test_load_handlers_constructor_failure_is_one_line_handler_error() -> None:
    message = load_error([f"{PLUGIN}:Exploding"])
    assert "cannot be created: RuntimeError: cannot reach the backend" in message


async def test_only_a_class_that_overrides_handle_batch_takes_batches() -> None:
    seen: list[str] = []

    class OneByOne(Handler):
        async def handle(self, event: Event) -> None:
            seen.append(event.event_id)

    @handler
    async def function(event: Event) -> None:
        seen.append(event.event_id)

    assert not OneByOne().takes_batches and not function.takes_batches
    assert SqliteHandler(path="unused.db").takes_batches
    # the default `handle_batch` hands each event to `handle`, in order
    await OneByOne().handle_batch([variant("touch", event_id="a"), variant("co2", event_id="b")])
    await function.handle_batch([variant("touch", event_id="c")])
    assert seen == ["a", "b", "c"]
