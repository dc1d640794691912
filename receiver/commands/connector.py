"""`dtpush connector list|get|create|update|delete|sync|metrics|ensure`: the Data Connector API.

Credentials and endpoints come from the official SDK's variables (``DT_SERVICE_ACCOUNT_*``,
``DT_API_URL``, ``DT_TOKEN_URL``); the project is ``connector.project_id`` (``--project``
overrides it). Output is a readable table, or with ``--json`` the API object(s) as one JSON
document. Signature secrets and custom header values print as ``***`` unless
``--show-secret``. An API failure (wrong credentials, unknown id or project) is one line on
stderr and exit code 1; usage and configuration errors exit 2. `ensure` is the bootstrap's
reconcile (`receiver.connector`), once: it prints what it did.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import orjson

from receiver.config import Settings, load_settings
from receiver.connector import Desired, reconcile
from receiver.dt import (
    ACTIVE,
    USER_DISABLED,
    Client,
    ConfigurationError,
    DataConnector,
    DtApiError,
    HttpPushConfig,
    Metric,
)
from receiver.errors import ConfigError
from receiver.logs import configure_logging

MASK = "***"
_WITH_ID = ("get", "update", "delete", "sync", "metrics")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "connector",
        help="manage the project's DT Data Connectors",
        description="List, inspect, create, change, delete, sync and read the metrics of the "
        "project's Data Connectors through DT's REST API (credentials from "
        "DT_SERVICE_ACCOUNT_KEY_ID/_SECRET/_EMAIL; DT_API_URL and DT_TOKEN_URL point it "
        "elsewhere, e.g. at `dtpush emulator`).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    helps = {
        "list": "list the project's connectors",
        "get": "show one connector",
        "create": "create a connector (defaults from the [connector] settings)",
        "update": "change the given fields of a connector",
        "delete": "delete a connector",
        "sync": "ask DT to re-push the latest event of every device",
        "metrics": "show a connector's push metrics of the last 3 hours",
        "ensure": "create or repair the managed connector as configured, once (bootstrap)",
    }
    for action, text in helps.items():
        sub = actions.add_parser(action, help=text, description=text[0].upper() + text[1:] + ".")
        if action in _WITH_ID:
            sub.add_argument("id", metavar="ID", help="the data connector id")
        sub.add_argument("--project", help="project id (default: connector.project_id)")
        sub.add_argument("--json", action="store_true", help="print the API object(s) as JSON")
        if action in ("list", "get", "create", "update"):
            sub.add_argument(
                "--show-secret",
                action="store_true",
                help="print signature secrets and header values instead of ***",
            )
        if action in ("create", "update"):
            _add_field_flags(sub, action)
        sub.set_defaults(run=run, action=action)


def _add_field_flags(parser: argparse.ArgumentParser, action: str) -> None:
    default = " (default: connector.display_name)" if action == "create" else ""
    parser.add_argument("--display-name", help="display name" + default)
    parser.add_argument("--status", choices=(ACTIVE, USER_DISABLED), help="connector status")
    parser.add_argument(
        "--url",
        help="HTTPS URL the events are pushed to"
        + (" (default: connector.public_url)" if action == "create" else ""),
    )
    parser.add_argument(
        "--secret",
        help="signature secret"
        + (" (default: the first of verify.secrets)" if action == "create" else ""),
    )
    events = parser.add_mutually_exclusive_group()
    events.add_argument(
        "--event-type",
        action="append",
        metavar="TYPE",
        dest="event_types",
        help="forward this event type (repeatable; none given: all types)",
    )
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument(
        "--label",
        action="append",
        metavar="KEY",
        dest="labels",
        help="device label key to include in pushes (repeatable)",
    )
    if action == "update":
        events.add_argument(
            "--all-event-types", action="store_true", help="forward every event type"
        )
        labels.add_argument("--no-labels", action="store_true", help="include no labels")


def run(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one `dtpush connector` action; return the exit code."""
    env = os.environ if environ is None else environ
    out = stdout if stdout is not None else sys.stdout
    if stderr is None:  # the real command (not a test capturing its streams): log retries
        configure_logging("WARNING")
    err = stderr if stderr is not None else sys.stderr
    try:
        settings = _settings(args, env)
        project_id = args.project or settings.connector.project_id
        if not project_id:
            raise ConfigError(
                "connector.project_id: not set (set DTPUSH_CONNECTOR_PROJECT_ID or --project)"
            )
        client = Client.from_env(env)
        text = asyncio.run(_act(args, settings, project_id, client))
    except (ConfigError, ConfigurationError) as exc:
        print(f"dtpush: error: {_one_line(exc)}", file=err)
        return 2
    except DtApiError as exc:
        print(f"dtpush: error: {_one_line(exc)}", file=err)
        return 1
    if text:
        print(text, file=out)
    return 0


def _settings(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    return load_settings(getattr(args, "config", None), env=env)


async def _act(
    args: argparse.Namespace, settings: Settings, project_id: str, client: Client
) -> str:
    options: dict[str, Any] = {"client": client}
    action: str = args.action
    show = getattr(args, "show_secret", False)
    async with client:
        if action == "list":
            found = await DataConnector.list_data_connectors(project_id, **options)
            if args.json:
                return _json([masked(dc.raw, show) for dc in found])
            return connector_table(found, show_secret=show)
        if action == "get":
            dc = await DataConnector.get_data_connector(args.id, project_id, **options)
        elif action == "create":
            dc = await _create(args, settings, project_id, options)
        elif action == "update":
            dc = await _update(args, project_id, options)
        elif action == "metrics":
            metric = await DataConnector.get_metrics(args.id, project_id, **options)
            return _json(dict(metric.raw)) if args.json else metric_text(metric)
        elif action == "ensure":
            desired = Desired.from_settings(settings, project_id=project_id)
            done = await reconcile(client, desired)
            if args.json:
                return _json(
                    {
                        "action": done.action,
                        "fields": list(done.fields),
                        "connector": masked(done.connector.raw),
                    }
                )
            return done.describe()
        elif action == "delete":
            await DataConnector.delete_data_connector(args.id, project_id, **options)
            return _json({}) if args.json else f"deleted {args.id}"
        else:
            await DataConnector.sync_data_connector(args.id, project_id, **options)
            return _json({}) if args.json else f"sync requested for {args.id}"
    return _json(masked(dc.raw, show)) if args.json else connector_text(dc, show_secret=show)


async def _create(
    args: argparse.Namespace, settings: Settings, project_id: str, options: dict[str, Any]
) -> DataConnector:
    url = args.url or settings.connector.public_url
    if not url:
        raise ConfigError("connector.public_url: not set (set it or pass --url)")
    secret = args.secret
    if secret is None and settings.verify.secrets:
        secret = settings.verify.secrets[0].reveal()
    return await DataConnector.create_or_adopt(
        project_id,
        HttpPushConfig(url=url, signature_secret=secret or "", headers={}),
        display_name=(
            args.display_name if args.display_name is not None else settings.connector.display_name
        ),
        status=args.status or ACTIVE,
        event_types=(
            args.event_types if args.event_types is not None else settings.connector.event_types
        ),
        labels=args.labels if args.labels is not None else settings.connector.labels,
        **options,
    )


async def _update(
    args: argparse.Namespace, project_id: str, options: dict[str, Any]
) -> DataConnector:
    config = None
    if args.url is not None or args.secret is not None:
        config = HttpPushConfig(url=args.url, signature_secret=args.secret)
    event_types = [] if args.all_event_types else args.event_types
    labels = [] if args.no_labels else args.labels
    if config is None and all(
        value is None for value in (args.display_name, args.status, event_types, labels)
    ):
        raise ConfigError(
            "update: nothing to change (give --display-name, --status, --url, --secret, "
            "--event-type, --all-event-types, --label or --no-labels)"
        )
    return await DataConnector.update_data_connector(
        args.id,
        project_id,
        config=config,
        display_name=args.display_name,
        status=args.status,
        event_types=event_types,
        labels=labels,
        **options,
    )


# -- output (pure) -------------------------------------------------------------------------


def masked(raw: Mapping[str, Any], show_secret: bool = False) -> dict[str, Any]:
    """The API object with the signature secret and header values as ``***``."""
    doc = dict(raw)
    http = doc.get("httpConfig")
    if show_secret or not isinstance(http, Mapping):
        return doc
    http = dict(http)
    if http.get("signatureSecret"):
        http["signatureSecret"] = MASK
    headers = http.get("headers")
    if isinstance(headers, Mapping):
        http["headers"] = dict.fromkeys(headers, MASK)
    doc["httpConfig"] = http
    return doc


def connector_table(connectors: Sequence[DataConnector], *, show_secret: bool = False) -> str:
    """One line per connector under a header."""
    header = ["ID", "NAME", "STATUS", "EVENTS", "LABELS", "URL"]
    if show_secret:
        header.append("SECRET")
    rows = [header]
    for dc in connectors:
        row = [
            dc.data_connector_id,
            dc.display_name or "-",
            dc.status,
            ",".join(dc.event_types) or "all",
            ",".join(dc.labels) or "-",
            (dc.config.url or "-") if dc.config is not None else dc.data_connector_type,
        ]
        if show_secret:
            row.append((dc.config.signature_secret or "-") if dc.config is not None else "-")
        rows.append(row)
    if not connectors:
        return "no data connectors"
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def connector_text(dc: DataConnector, *, show_secret: bool = False) -> str:
    """One connector as aligned `name: value` lines."""
    lines = [
        ("id", dc.data_connector_id),
        ("project", dc.project_id),
        ("display name", dc.display_name or "-"),
        ("type", dc.data_connector_type),
        ("status", dc.status),
        ("event types", ", ".join(dc.event_types) or "all"),
        ("labels", ", ".join(dc.labels) or "-"),
    ]
    if dc.config is not None:
        secret = dc.config.signature_secret or ""
        shown = (secret if show_secret else MASK) if secret else "(none: pushes are unsigned)"
        headers = dc.config.headers or {}
        lines += [
            ("url", dc.config.url or "-"),
            ("signature secret", shown),
            (
                "headers",
                ", ".join(f"{k}: {v if show_secret else MASK}" for k, v in headers.items()) or "-",
            ),
        ]
    width = max(len(name) for name, _ in lines) + 1
    return "\n".join(f"{(name + ':').ljust(width)} {value}" for name, value in lines)


def metric_text(metric: Metric) -> str:
    return (
        f"success count: {metric.success_count}\n"
        f"error count:   {metric.error_count}\n"
        f"latency p99:   {metric.latency} ({metric.latency_seconds:g} s)\n"
        "(DT's last 3 hours)"
    )


def _json(doc: Any) -> str:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
