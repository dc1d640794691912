"""`dtpush check-config`: load and validate the configuration, print it with secrets masked."""

from __future__ import annotations

import argparse

from receiver.commands import settings_from
from receiver.config import serve_problems, to_toml
from receiver.errors import ConfigError
from receiver.registry import load_handlers


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "check-config",
        help="validate the configuration and print it (secrets masked)",
        description="Load the configuration (defaults < TOML < environment), validate it as "
        "`serve` would, and print the effective settings as TOML with secrets masked.",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    problems = serve_problems(settings)
    if problems:
        raise ConfigError(problems)
    load_handlers(settings.handlers.enabled, settings.handlers.options)
    print(to_toml(settings), end="")
    return 0
