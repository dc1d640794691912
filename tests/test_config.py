"""Settings: defaults < TOML < environment < flags; every problem names its setting."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from receiver.config import Secret, load_settings, serve_problems, to_toml
from receiver.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dtpush.toml"
    path.write_text(text)
    return path


def test_settings_without_sources_are_the_documented_defaults() -> None:
    settings = load_settings(env={}, cwd="/nonexistent")
    assert settings.server.port == 8080
    assert settings.server.path == "/events"
    assert settings.server.max_body_bytes == 65536
    assert settings.verify.leeway_seconds == 60
    assert settings.verify.allow_sha1 is True
    assert settings.inbox.path == "dtpush-data/inbox.db"
    assert settings.inbox.dedup_window_seconds == 86400
    assert settings.delivery.max_attempts == 12
    assert settings.handlers.enabled == ("sqlite",)
    assert settings.connector.labels == ("name",)


def test_later_sources_win_toml_then_env_then_flags(tmp_path: Path) -> None:
    config = write(tmp_path, "[server]\nport = 9000\nhost = '127.0.0.1'\npath = '/dt'\n")
    settings = load_settings(
        config,
        env={"DTPUSH_SERVER_PORT": "9001", "DTPUSH_SERVER_PATH": "/env"},
        overrides={"server.port": 9002},
    )
    assert settings.server.port == 9002
    assert settings.server.path == "/env"
    assert settings.server.host == "127.0.0.1"


def test_dtpush_toml_in_working_directory_is_read_when_no_config_given(tmp_path: Path) -> None:
    write(tmp_path, "[inbox]\nmax_pending = 7\n")
    assert load_settings(env={}, cwd=tmp_path).inbox.max_pending == 7


def test_env_lists_are_comma_separated_and_secrets_hidden() -> None:
    settings = load_settings(env={"DTPUSH_VERIFY_SECRETS": "new-one, old-one"}, cwd="/x")
    assert [s.reveal() for s in settings.verify.secrets] == ["new-one", "old-one"]
    assert "new-one" not in repr(settings)
    assert "new-one" not in str(settings.verify.secrets[0])


def test_handler_options_come_from_toml_tables_and_env(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        '[handlers]\nenabled = ["sqlite", "log"]\n[handlers.sqlite]\npath = "a.db"\n'
        '[handlers."mymod:sink"]\nlevel = 3\n',
    )
    settings = load_settings(config, env={"DTPUSH_HANDLERS_SQLITE_PATH": "b.db"})
    assert settings.handlers.enabled == ("sqlite", "log")
    assert settings.handlers.options["sqlite"]["path"] == "b.db"
    assert settings.handlers.options["mymod:sink"]["level"] == 3


def test_seconds_settings_accept_fractions() -> None:
    settings = load_settings(env={"DTPUSH_DELIVERY_BACKOFF_INITIAL_SECONDS": "0.25"}, cwd="/x")
    assert settings.delivery.backoff_initial_seconds == 0.25


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"DTPUSH_SERVER_PORT": "eighty"}, "server.port"),
        ({"DTPUSH_SERVER_PORT": "70000"}, "server.port"),
        ({"DTPUSH_SERVER_PATH": "events"}, "server.path"),
        ({"DTPUSH_VERIFY_ALLOW_SHA1": "maybe"}, "verify.allow_sha1"),
        ({"DTPUSH_VERIFY_LEEWAY_SECONDS": "-1"}, "verify.leeway_seconds"),
        ({"DTPUSH_INBOX_BACKEND": "kafka"}, "inbox.backend"),
        ({"DTPUSH_DELIVERY_MAX_ATTEMPTS": "0"}, "delivery.max_attempts"),
        ({"DTPUSH_SERVER_TLS_CERT": "/c.pem"}, "server.tls_cert"),
        ({"DTPUSH_HANDLERS_ENABLED": ""}, "handlers.enabled"),
        ({"DTPUSH_VERIFY_SECRETS": "a,,"}, None),
    ],
)
def test_invalid_settings_raise_one_error_naming_the_setting(
    env: dict[str, str], setting: str | None
) -> None:
    if setting is None:  # empty list items are dropped, not an error
        load_settings(env=env, cwd="/x")
        return
    with pytest.raises(ConfigError) as caught:
        load_settings(env=env, cwd="/x")
    assert any(problem.startswith(setting + ":") for problem in caught.value.problems)


def test_unknown_toml_keys_and_sections_are_named(tmp_path: Path) -> None:
    config = write(tmp_path, "[server]\nprot = 1\n[sever]\nport = 2\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={})
    assert "server.prot: unknown setting" in caught.value.problems
    assert "sever: unknown section" in caught.value.problems


def test_missing_or_broken_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config: file not found"):
        load_settings(tmp_path / "nope.toml", env={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[server\n"), env={})


def test_serve_refuses_without_any_verification_unless_insecure() -> None:
    settings = load_settings(env={}, cwd="/x")
    assert serve_problems(settings)[0].startswith("verify.secrets:")
    assert serve_problems(settings, insecure_skip_verify=True) == []
    assert serve_problems(load_settings(env={"DTPUSH_VERIFY_ASYMMETRIC": "true"}, cwd="/x")) == []


def test_printed_configuration_is_valid_toml_with_secrets_masked() -> None:
    settings = load_settings(
        env={
            "DTPUSH_VERIFY_SECRETS": "s3cr3t-value",
            "DTPUSH_HANDLERS_POSTGRES_DSN": "postgresql://u:pw@h/db",
            "DTPUSH_HANDLERS_MQTT_URL": "mqtt://user:pw123@broker:1883",
        },
        cwd="/x",
    )
    text = to_toml(settings)
    assert "s3cr3t-value" not in text
    assert "pw@h" not in text
    parsed = tomllib.loads(text)
    assert parsed["verify"]["secrets"] == ["***"]
    assert parsed["handlers"]["postgres"]["dsn"] == "***"
    assert parsed["handlers"]["mqtt"]["url"] == "mqtt://user:***@broker:1883"
    assert "pw123" not in text
    assert parsed["server"]["port"] == 8080


def test_secret_equality_does_not_reveal() -> None:
    assert Secret("a") == Secret("a")
    assert f"{Secret('a')}" == "Secret('***')"
