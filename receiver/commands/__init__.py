"""The subcommands of `dtpush`; each module has `register(subparsers)`."""

from __future__ import annotations

import argparse
from typing import Any

from receiver.config import Settings, load_settings


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Settings from `--config`, the environment and the flags given as `section.key` values."""
    return load_settings(getattr(args, "config", None), overrides=overrides)
