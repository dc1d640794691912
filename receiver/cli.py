"""The `dtpush` command: parses arguments and hands each subcommand to its module.

Every subcommand module in `receiver.commands` has `register(subparsers)`, which adds its
parser and sets `run(args) -> int`. Exit codes: 0 success, 1 failure, 2 usage or
configuration error (one line naming the setting).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module

from receiver import __version__
from receiver.errors import ConfigError, HandlerError, Unavailable

COMMANDS = (
    "serve",
    "worker",
    "demo",
    "emulator",
    "connector",
    "send",
    "dlq",
    "backfill",
    "check_config",
)


def _add_config_everywhere(parser: argparse.ArgumentParser) -> None:
    """Give every (sub)command `--config FILE`, so it may stand after the subcommand."""
    if "--config" not in parser._option_string_actions:
        parser.add_argument(
            "--config",
            metavar="FILE",
            default=argparse.SUPPRESS,
            help="TOML configuration file (default: ./dtpush.toml when present)",
        )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_config_everywhere(child)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dtpush",
        description="Receive Disruptive Technologies Data Connector pushes: verified, "
        "durable, delivered to handlers.",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="TOML configuration file (default: ./dtpush.toml)"
    )
    parser.add_argument("--version", action="version", version=f"dtpush {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = import_module(f"receiver.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"receiver.commands.{name}":
                raise
            continue
        module.register(subparsers)
    _add_config_everywhere(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except (ConfigError, HandlerError) as exc:
        print(f"dtpush: error: {exc}", file=sys.stderr)
        return 2
    except Unavailable as exc:  # e.g. `dtpush dlq list` while the NATS inbox is unreachable
        print(f"dtpush: error: the inbox is unavailable ({exc.reason})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
