"""Settings: built-in defaults < TOML file < environment < command-line flags (spec §3).

`load_settings()` is the only reader of the environment. It returns a frozen `Settings` or
raises `ConfigError` listing every problem, each naming its setting. Secrets are `Secret`
objects whose `repr`/`str` never show the value; `reveal()` at the point of use.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from receiver.errors import ConfigError

DT_OIDC_URL = (
    "https://identity.disruptive-technologies.com/data-connector/.well-known/openid-configuration"
)
ENV_PREFIX = "DTPUSH_"
DEFAULT_CONFIG_FILE = "dtpush.toml"


class Secret:
    """A secret string: hidden in `repr`, `str` and formatting; `reveal()` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class ServerSettings:
    host: str = "0.0.0.0"
    port: int = 8080
    path: str = "/events"
    max_body_bytes: int = 65536
    tls_cert: str | None = None
    tls_key: str | None = None
    shutdown_grace_seconds: float = 10.0


@dataclass(frozen=True)
class VerifySettings:
    secrets: tuple[Secret, ...] = ()
    asymmetric: bool = False
    oidc_url: str = DT_OIDC_URL
    org_id: str | None = None
    leeway_seconds: float = 60.0
    allow_sha1: bool = True


@dataclass(frozen=True)
class InboxSettings:
    backend: str = "sqlite"
    path: str = "dtpush-data/inbox.db"
    nats_url: str = "nats://127.0.0.1:4222"
    nats_stream: str = "DTPUSH"
    nats_subject_prefix: str = "dtpush"
    dedup_window_seconds: float = 86400.0
    max_pending: int = 1_000_000


@dataclass(frozen=True)
class DeliverySettings:
    max_attempts: int = 12
    handler_timeout_seconds: float = 10.0
    backoff_initial_seconds: float = 1.0
    backoff_max_seconds: float = 600.0
    concurrency: int = 64


@dataclass(frozen=True)
class HandlersSettings:
    enabled: tuple[str, ...] = ("sqlite",)
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class ConnectorSettings:
    project_id: str | None = None
    public_url: str | None = None
    display_name: str = "dtpush"
    event_types: tuple[str, ...] = ()
    labels: tuple[str, ...] = ("name",)
    monitor_interval_seconds: float = 60.0
    reenable: bool = True
    backfill: bool = True


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    verify: VerifySettings = field(default_factory=VerifySettings)
    inbox: InboxSettings = field(default_factory=InboxSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    handlers: HandlersSettings = field(default_factory=HandlersSettings)
    connector: ConnectorSettings = field(default_factory=ConnectorSettings)


_SECTIONS: dict[str, type[Any]] = {
    "server": ServerSettings,
    "verify": VerifySettings,
    "inbox": InboxSettings,
    "delivery": DeliverySettings,
    "handlers": HandlersSettings,
    "connector": ConnectorSettings,
}
_SECRET_KEYS = {("verify", "secrets")}


# ---------------------------------------------------------------- value coercion


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _as_optional_str(value: Any) -> str | None:
    if value is None:
        return None
    text = _as_str(value)
    return text or None


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("must be a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError("must be a whole number")


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError("must be a number") from None
    else:
        raise ValueError("must be a number")
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return number


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("must be true or false")


def _as_str_tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError("must be a list of strings")


def _as_secrets(value: Any) -> tuple[Secret, ...]:
    items = _as_str_tuple(value)
    if any(not item for item in items):
        raise ValueError("must not contain an empty secret")
    return tuple(Secret(item) for item in items)


def _coercer(section: str, name: str) -> Callable[[Any], Any]:
    if (section, name) in _SECRET_KEYS:
        return _as_secrets
    annotation = {f.name: f.type for f in fields(_SECTIONS[section])}[name]
    return {
        "str": _as_str,
        "str | None": _as_optional_str,
        "int": _as_int,
        "float": _as_float,
        "bool": _as_bool,
        "tuple[str, ...]": _as_str_tuple,
    }[str(annotation)]


# ---------------------------------------------------------------- loading


def _flatten_toml(data: Mapping[str, Any], problems: list[str]) -> dict[tuple[str, str], Any]:
    values: dict[tuple[str, str], Any] = {}
    for section, table in data.items():
        if section not in _SECTIONS:
            problems.append(f"{section}: unknown section")
            continue
        if not isinstance(table, dict):
            problems.append(f"{section}: must be a table")
            continue
        for key, value in table.items():
            if section == "handlers" and isinstance(value, dict):
                values[("handlers.options", key)] = value
            else:
                values[(section, key)] = value
    return values


def _from_env(env: Mapping[str, str]) -> dict[tuple[str, str], Any]:
    values: dict[tuple[str, str], Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in _SECTIONS or not key:
            continue
        if section == "handlers" and key != "enabled":
            handler_name, _, option = key.partition("_")
            if handler_name and option:
                values[("handlers.option", f"{handler_name}.{option}")] = value
            continue
        values[(section, key)] = value
    return values


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a TOML configuration file; a missing or invalid file is a `ConfigError`."""
    try:
        with open(path, "rb") as stream:
            return tomllib.load(stream)
    except FileNotFoundError:
        raise ConfigError(f"--config: file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config: {path} is not valid TOML: {exc}") from None


def load_settings(
    config: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    cwd: str | Path | None = None,
) -> Settings:
    """Build the effective settings.

    `config` is the `--config` file (else `dtpush.toml` in `cwd` when present); `env` defaults to
    `os.environ`; `overrides` maps `"section.key"` to values from command-line flags (None = not
    given).
    """
    problems: list[str] = []
    if config is None:
        candidate = Path(cwd or ".") / DEFAULT_CONFIG_FILE
        config = candidate if candidate.is_file() else None
    layered: dict[tuple[str, str], Any] = {}
    if config is not None:
        layered.update(_flatten_toml(read_config_file(config), problems))
    layered.update(_from_env(os.environ if env is None else env))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            section, _, key = dotted.partition(".")
            layered[(section, key)] = value

    handler_options: dict[str, dict[str, Any]] = {}
    built: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    for (section, key), value in layered.items():
        if section == "handlers.options":
            handler_options.setdefault(key, {}).update(value)
            continue
        if section == "handlers.option":
            handler_name, _, option = key.partition(".")
            handler_options.setdefault(handler_name, {})[option] = value
            continue
        known = {f.name: f for f in fields(_SECTIONS[section])}
        if key not in known or (section, key) == ("handlers", "options"):
            problems.append(f"{section}.{key}: unknown setting")
            continue
        try:
            built[section][key] = _coercer(section, key)(value)
        except ValueError as exc:
            problems.append(f"{section}.{key}: {exc}")
    built["handlers"]["options"] = MappingProxyType(
        {name: MappingProxyType(opts) for name, opts in handler_options.items()}
    )
    if problems:
        raise ConfigError(problems)
    settings = Settings(**{name: _SECTIONS[name](**values) for name, values in built.items()})
    problems.extend(validate(settings))
    if problems:
        raise ConfigError(problems)
    return settings


def validate(settings: Settings) -> list[str]:
    """Problems with values that parse but cannot be used, each naming its setting."""
    problems: list[str] = []
    server, verify, inbox, delivery = (
        settings.server,
        settings.verify,
        settings.inbox,
        settings.delivery,
    )
    if not 0 <= server.port <= 65535:
        problems.append("server.port: must be between 0 and 65535")
    if not server.path.startswith("/"):
        problems.append("server.path: must start with '/'")
    if server.path in ("/healthz", "/readyz", "/metrics"):
        problems.append(f"server.path: {server.path} is taken by the service itself")
    if server.max_body_bytes <= 0:
        problems.append("server.max_body_bytes: must be positive")
    if (server.tls_cert is None) != (server.tls_key is None):
        problems.append("server.tls_cert: server.tls_cert and server.tls_key go together")
    if server.shutdown_grace_seconds < 0:
        problems.append("server.shutdown_grace_seconds: must not be negative")
    if verify.leeway_seconds < 0:
        problems.append("verify.leeway_seconds: must not be negative")
    if not verify.oidc_url.startswith(("https://", "http://")):
        problems.append("verify.oidc_url: must be an http(s) URL")
    if inbox.backend not in ("sqlite", "nats"):
        problems.append(
            f"inbox.backend: {inbox.backend!r} is not available (this build has 'sqlite', 'nats')"
        )
    if inbox.backend == "nats" and not inbox.nats_url.startswith(("nats://", "tls://")):
        problems.append("inbox.nats_url: must be a nats:// or tls:// URL")
    if inbox.dedup_window_seconds < 0:
        problems.append("inbox.dedup_window_seconds: must not be negative")
    if inbox.max_pending <= 0:
        problems.append("inbox.max_pending: must be positive")
    if delivery.max_attempts < 1:
        problems.append("delivery.max_attempts: must be at least 1")
    if delivery.handler_timeout_seconds <= 0:
        problems.append("delivery.handler_timeout_seconds: must be positive")
    if delivery.backoff_initial_seconds < 0:
        problems.append("delivery.backoff_initial_seconds: must not be negative")
    if delivery.backoff_max_seconds < delivery.backoff_initial_seconds:
        problems.append(
            "delivery.backoff_max_seconds: must not be below delivery.backoff_initial_seconds"
        )
    if delivery.concurrency < 1:
        problems.append("delivery.concurrency: must be at least 1")
    if not settings.handlers.enabled:
        problems.append("handlers.enabled: enable at least one handler")
    if settings.connector.monitor_interval_seconds <= 0:
        problems.append("connector.monitor_interval_seconds: must be positive")
    return problems


def serve_problems(settings: Settings, *, insecure_skip_verify: bool = False) -> list[str]:
    """Why `serve` would refuse to start with these settings (empty when it would start)."""
    if settings.verify.secrets or settings.verify.asymmetric or insecure_skip_verify:
        return []
    return [
        "verify.secrets: set verify.secrets or verify.asymmetric "
        "(or pass --insecure-skip-verify to serve)"
    ]


# ---------------------------------------------------------------- printing


def _toml_value(value: Any) -> str:
    if isinstance(value, Secret):
        return '"***"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    return _toml_value(str(value))


def _toml_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum()
    return key if bare else _toml_value(key)


_SECRET_OPTION_WORDS = ("secret", "password", "token", "dsn", "key")


def mask_url_password(value: str) -> str:
    """`scheme://user:***@host/…` for a URL carrying a password; anything else unchanged."""
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return value
    if not parts.scheme or password is None:
        return value
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def to_toml(settings: Settings) -> str:
    """The effective settings as TOML, with every secret shown as "***"."""
    lines: list[str] = []
    for section in _SECTIONS:
        lines.append(f"[{section}]")
        for f in fields(_SECTIONS[section]):
            if f.name == "options":
                continue
            value = getattr(getattr(settings, section), f.name)
            if value is None:
                lines.append(f"# {f.name} is unset")
                continue
            lines.append(f"{f.name} = {_toml_value(value)}")
        lines.append("")
    for name, options in settings.handlers.options.items():
        lines.append(f"[handlers.{_toml_key(name)}]")
        for key, value in options.items():
            hidden = any(word in key.lower() for word in _SECRET_OPTION_WORDS)
            if isinstance(value, str) and not hidden:
                value = mask_url_password(value)
            shown = _toml_value(Secret("") if hidden else value)
            lines.append(f"{_toml_key(key)} = {shown}")
        lines.append("")
    return "\n".join(lines)
