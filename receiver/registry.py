"""Handlers: the `Handler` base class, the `@handler` decorator, discovery and enabling.

A handler consumes events. It is either a class (subclass `Handler`, implement `handle`, and
optionally `start`, `close`, `ready` and options as keyword arguments of `__init__`) or an
`async def f(event) -> None` decorated with `@handler(*event_types)`.

Handlers are found through the entry-point group `dtpush.handlers` (the built-ins register
there too) or by `module:attribute`. `load_handlers` enables the names listed in
`handlers.enabled`; each enabled handler gets its `name` (the entry-point name, or the
`module:attribute` string as configured) and its options from `[handlers.<name>]`.

Option values may come from the environment as strings: a handler coerces and validates
its own options in `__init__`, raising `ValueError("<option>: <what is wrong>")`; the
registry turns that into a `HandlerError` naming the setting (`handlers.<name>.<option>`).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, overload

from receiver.errors import HandlerError

if TYPE_CHECKING:
    from receiver.events import Event

#: The entry-point group through which handlers are discovered.
ENTRY_POINT_GROUP = "dtpush.handlers"

HandlerFunction = Callable[["Event"], Awaitable[None]]


def _type_set(event_types: Collection[str]) -> frozenset[str]:
    if isinstance(event_types, str):
        return frozenset((event_types,))
    types = frozenset(event_types)
    for event_type in types:
        if not isinstance(event_type, str) or not event_type:
            raise TypeError(f"event types are non-empty strings, not {event_type!r}")
    return types


class Handler:
    """Base class of class handlers; subclass it and implement `handle`.

    `event_types` lists the event types it subscribes to (empty: every type). A tuple or
    list given in the class body is turned into a frozenset once, so `wants` is one lookup.
    """

    event_types: Collection[str] = frozenset()
    name: str = ""
    #: The most events one `handle_batch` call is given.
    max_batch: int = 256

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.event_types = _type_set(cls.event_types)

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"unknown options: {', '.join(sorted(options))}")

    async def start(self) -> None:
        """Open connections, create tables; called once before the first event."""

    async def handle(self, event: Event) -> None:
        raise NotImplementedError

    async def handle_batch(self, events: Sequence[Event]) -> None:
        """Take several events at once (optional): return when all of them are handled.

        A class that overrides it gets fresh events in batches of up to `max_batch` (what has
        queued up while its previous calls ran); raising fails the attempt of every event in
        the batch, and each is then retried on its own through `handle`. Make it all or
        nothing, like one transaction, or at least safe to repeat.
        """
        for event in events:
            await self.handle(event)

    @property
    def takes_batches(self) -> bool:
        """Whether this handler's class overrides `handle_batch`."""
        return type(self).handle_batch is not Handler.handle_batch

    async def close(self) -> None:
        """Release what `start` opened; called once at shutdown."""

    def ready(self) -> bool:
        return True

    def wants(self, event_type: str) -> bool:
        """Whether this handler subscribed to `event_type` (always, when it lists none)."""
        types = self.event_types
        return not types or event_type in types

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class FunctionHandler(Handler):
    """A handler made by `@handler` from `async def f(event) -> None`; still callable."""

    def __init__(self, func: HandlerFunction, event_types: Collection[str] = ()) -> None:
        super().__init__()
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"@handler needs an async function, not {func!r}")
        self.func = func
        self.event_types = _type_set(event_types)
        self.name = f"{func.__module__}:{func.__qualname__}"
        functools.update_wrapper(self, func)

    async def handle(self, event: Event) -> None:
        await self.func(event)

    def __call__(self, event: Event) -> Awaitable[None]:
        return self.func(event)


@overload
def handler(func: HandlerFunction, /) -> FunctionHandler: ...
@overload
def handler(*event_types: str) -> Callable[[HandlerFunction], FunctionHandler]: ...
def handler(
    *args: Any,
) -> FunctionHandler | Callable[[HandlerFunction], FunctionHandler]:
    """Make an `async def f(event) -> None` a handler of the given event types.

    `@handler`, `@handler()` and `@handler("temperature", "humidity")` all work; without
    types it subscribes to every type.
    """
    if len(args) == 1 and callable(args[0]):
        return FunctionHandler(args[0])
    for event_type in args:
        if not isinstance(event_type, str) or not event_type:
            raise TypeError(f"@handler takes event type names, not {event_type!r}")

    def decorate(func: HandlerFunction) -> FunctionHandler:
        return FunctionHandler(func, args)

    return decorate


def available_handlers() -> dict[str, str]:
    """Every handler found in the entry-point group: name -> `module:attribute` target."""
    return {name: point.value for name, point in sorted(_entry_points().items())}


def load_handlers(
    enabled: Sequence[str], options: Mapping[str, Mapping[str, Any]]
) -> dict[str, Handler]:
    """Create the enabled handlers (not started), keyed by name, in the order given.

    Raises `HandlerError` for an unknown name, a failed import, something that is not a
    handler, or options it does not take or cannot accept.
    """
    points = _entry_points()
    handlers: dict[str, Handler] = {}
    for name in enabled:
        if name in handlers:
            raise HandlerError(name, "handlers.enabled: listed twice")
        target = _resolve(name, points)
        handlers[name] = _create(name, target, options.get(name, {}))
    return handlers


def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(point.name, point)
    return found


def _resolve(name: str, points: Mapping[str, EntryPoint]) -> object:
    if name in points:
        try:
            return points[name].load()
        except Exception as exc:
            raise HandlerError(
                name, f"handlers.enabled: cannot load {points[name].value}: {_describe(exc)}"
            ) from exc
    module_name, colon, attribute = name.partition(":")
    if not colon:
        known = ", ".join(sorted(points)) or "none"
        raise HandlerError(
            name, f"handlers.enabled: no such handler (installed: {known}; or module:attribute)"
        )
    if not module_name or not attribute:
        raise HandlerError(name, "handlers.enabled: expected module:attribute")
    try:
        target: object = importlib.import_module(module_name)
    except Exception as exc:
        raise HandlerError(
            name, f"handlers.enabled: cannot import {module_name}: {_describe(exc)}"
        ) from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise HandlerError(
                name, f"handlers.enabled: {module_name} has no attribute {attribute}"
            ) from None
    return target


def _create(name: str, target: object, options: Mapping[str, Any]) -> Handler:
    instance: Handler
    if isinstance(target, type) and issubclass(target, Handler):
        _check_option_names(name, target, options)
        try:
            instance = target(**options)
        except (TypeError, ValueError) as exc:
            raise HandlerError(name, _option_problem(name, options, exc)) from exc
        except Exception as exc:
            raise HandlerError(name, f"cannot be created: {_describe(exc)}") from exc
    elif isinstance(target, Handler):
        if options:
            raise HandlerError(name, f"unknown option {_setting(name, min(options))}")
        instance = (
            FunctionHandler(target.func, target.event_types)
            if isinstance(target, FunctionHandler)
            else target
        )
    else:
        raise HandlerError(
            name,
            "handlers.enabled: not a handler (subclass receiver.Handler, "
            "or decorate an async function with @receiver.handler)",
        )
    instance.name = name
    return instance


def _check_option_names(name: str, cls: type[Handler], options: Mapping[str, Any]) -> None:
    if cls.__init__ is Handler.__init__:
        accepted: set[str] | None = set()
        required: list[str] = []
    else:
        try:
            parameters = list(inspect.signature(cls).parameters.values())
        except (TypeError, ValueError):
            return
        settable = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
        accepted = None if takes_any else {p.name for p in parameters if p.kind in settable}
        required = [p.name for p in parameters if p.kind in settable and p.default is p.empty]
    if accepted is not None:
        unknown = sorted(key for key in options if key not in accepted)
        if unknown:
            raise HandlerError(name, f"unknown option {_setting(name, unknown[0])}")
    missing = [key for key in required if key not in options]
    if missing:
        raise HandlerError(name, f"missing option {_setting(name, missing[0])}")


def _option_problem(name: str, options: Mapping[str, Any], exc: Exception) -> str:
    message = _describe(exc, with_type=False)
    key, colon, rest = message.partition(":")
    if colon and key in options:
        return f"{_setting(name, key)}:{rest}"
    return f"handlers.{_toml_key(name)}: {message}"


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    if _BARE_KEY.fullmatch(key):
        return key
    escaped = key.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _setting(name: str, key: str) -> str:
    return f"handlers.{_toml_key(name)}.{_toml_key(key)}"


def _describe(exc: BaseException, *, with_type: bool = True) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if with_type else text
