"""Bootstrap: make the project hold exactly one connector as configured (spec §8).

The reconcile is split in two:

- `plan(current, desired) -> Plan` is pure: given the connectors DT lists and the desired
  state, it decides one action — ``create``, ``patch`` (the drifted fields), ``nothing``, or
  ``ambiguous`` (several connectors carry the managed display name: nothing is touched);
- `reconcile(client, desired)` carries a plan out with the DT client: a create (adopting the
  connector a create left behind when its answer was lost) followed by ``:sync``, or one
  PATCH whose ``update_mask`` lists every drifted field.

The managed connector is the one named `connector.display_name`; when none has that name
and exactly one HTTP_PUSH connector pushes to `connector.public_url`, that one is adopted and
renamed. The status is never planned: a ``USER_DISABLED`` set by a person stays (the monitor
re-enables ``SYSTEM_DISABLED`` only). Neither the secret nor a plan's repr ever shows it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from receiver.config import Settings
from receiver.dt import (
    HTTP_PUSH,
    AmbiguousConnectors,
    Client,
    DataConnector,
    HttpPushConfig,
)
from receiver.errors import ConfigError

log = logging.getLogger("dtpush.connector")

CREATE = "create"
PATCH = "patch"
NOTHING = "nothing"
AMBIGUOUS = "ambiguous"

#: Drift field names, as DT's ``update_mask`` paths, in the order a PATCH lists them.
DISPLAY_NAME = "displayName"
URL = "httpConfig.url"
SECRET = "httpConfig.signatureSecret"
EVENTS = "events"
LABELS = "labels"
FIELDS: tuple[str, ...] = (DISPLAY_NAME, URL, SECRET, EVENTS, LABELS)


class ConnectorLike(Protocol):
    """What `plan` reads of a connector (`receiver.dt.DataConnector` has it)."""

    @property
    def data_connector_id(self) -> str: ...
    @property
    def display_name(self) -> str: ...
    @property
    def data_connector_type(self) -> str: ...
    @property
    def config(self) -> HttpPushConfig | None: ...
    @property
    def event_types(self) -> list[str]: ...
    @property
    def labels(self) -> list[str]: ...


@dataclass(frozen=True)
class Desired:
    """The connector the settings ask for. `repr` never shows the secret."""

    project_id: str
    display_name: str
    url: str
    secret: str = field(repr=False)
    event_types: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings, *, project_id: str | None = None) -> Desired:
        """The desired connector (in `project_id`, default `connector.project_id`);
        `ConfigError` naming each missing setting."""
        connector = settings.connector
        project_id = project_id or connector.project_id
        problems = []
        if not project_id:
            problems.append(
                "connector.project_id: not set (needed to manage the connector; "
                "e.g. DTPUSH_CONNECTOR_PROJECT_ID)"
            )
        if not connector.public_url:
            problems.append(
                "connector.public_url: not set (the URL DT pushes to; "
                "e.g. DTPUSH_CONNECTOR_PUBLIC_URL)"
            )
        if not connector.display_name:
            problems.append("connector.display_name: must not be empty (it names the connector)")
        if problems:
            raise ConfigError(problems)
        secrets = settings.verify.secrets
        return cls(
            project_id=project_id or "",
            display_name=connector.display_name,
            url=connector.public_url or "",
            secret=secrets[0].reveal() if secrets else "",
            event_types=tuple(connector.event_types),
            labels=tuple(connector.labels),
        )


@dataclass(frozen=True)
class Plan:
    """One reconcile decision.

    `connector_id` is the managed connector (None for ``create`` and ``ambiguous``),
    `fields` the drifted fields a ``patch`` sets (DT's mask paths, `FIELDS` order), `ids`
    the connectors that make it ``ambiguous``.
    """

    action: str
    connector_id: str | None = None
    fields: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()


def plan(current: Sequence[ConnectorLike], desired: Desired) -> Plan:
    """Decide what to do so that exactly one connector matches `desired` (pure)."""
    named = [dc for dc in current if dc.display_name == desired.display_name]
    if len(named) > 1:
        return Plan(AMBIGUOUS, ids=tuple(dc.data_connector_id for dc in named))
    if not named:
        named = [
            dc
            for dc in current
            if dc.data_connector_type == HTTP_PUSH
            and dc.config is not None
            and dc.config.url == desired.url
        ]
        if len(named) != 1:
            return Plan(CREATE)
    found = named[0]
    drifted = drift(found, desired)
    if not drifted:
        return Plan(NOTHING, found.data_connector_id)
    return Plan(PATCH, found.data_connector_id, drifted)


def drift(dc: ConnectorLike, desired: Desired) -> tuple[str, ...]:
    """The fields of `dc` that differ from `desired` (event types and labels as sets)."""
    config = dc.config or HttpPushConfig()
    differs = {
        DISPLAY_NAME: dc.display_name != desired.display_name,
        URL: (config.url or "") != desired.url,
        SECRET: (config.signature_secret or "") != desired.secret,
        EVENTS: set(dc.event_types) != set(desired.event_types),
        LABELS: set(dc.labels) != set(desired.labels),
    }
    return tuple(name for name in FIELDS if differs[name])


@dataclass(frozen=True)
class Reconciled:
    """What a reconcile did: `action` of its plan (``create``/``patch``/``nothing``), the
    `fields` it patched, and the managed connector as DT now has it."""

    action: str
    connector: DataConnector
    fields: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for people (no secret)."""
        dc = self.connector
        name = f"{dc.data_connector_id} ({dc.display_name!r})"
        if self.action == CREATE:
            return f"created connector {name} and requested a sync"
        if self.action == PATCH:
            return f"patched connector {name}: {', '.join(self.fields)}"
        return f"connector {name} is as configured (status {dc.status})"


async def reconcile(client: Client, desired: Desired) -> Reconciled:
    """List the project's connectors, plan, and carry the plan out.

    Raises `AmbiguousConnectors` (nothing changed) when several carry the display name, and
    the client's errors (`receiver.dt.errors`) when DT cannot be reached or refuses.
    """
    project = desired.project_id
    current = await DataConnector.list_data_connectors(project, client=client)
    decided = plan(current, desired)
    if decided.action == AMBIGUOUS:
        raise AmbiguousConnectors(desired.display_name, decided.ids)
    if decided.action == CREATE:
        created = await DataConnector.create_or_adopt(
            project,
            HttpPushConfig(url=desired.url, signature_secret=desired.secret, headers={}),
            display_name=desired.display_name,
            event_types=desired.event_types,
            labels=desired.labels,
            client=client,
        )
        log.info(
            "connector_created",
            extra={"fields": {"connector": created.data_connector_id, "url": desired.url}},
        )
        await DataConnector.sync_data_connector(created.data_connector_id, project, client=client)
        log.info(
            "connector_sync_requested", extra={"fields": {"connector": created.data_connector_id}}
        )
        return Reconciled(CREATE, created)
    by_id = {dc.data_connector_id: dc for dc in current}
    found = by_id[decided.connector_id or ""]
    if decided.action == NOTHING:
        return Reconciled(NOTHING, found)
    patched = await _patch(client, found, desired, decided.fields)
    log.info(
        "connector_patched",
        extra={
            "fields": {"connector": found.data_connector_id, "fields": ",".join(decided.fields)}
        },
    )
    return Reconciled(PATCH, patched, decided.fields)


async def _patch(
    client: Client, dc: DataConnector, desired: Desired, fields: tuple[str, ...]
) -> DataConnector:
    config = None
    if URL in fields or SECRET in fields:
        config = HttpPushConfig(
            url=desired.url if URL in fields else None,
            signature_secret=desired.secret if SECRET in fields else None,
        )
    return await DataConnector.update_data_connector(
        dc.data_connector_id,
        desired.project_id,
        config=config,
        display_name=desired.display_name if DISPLAY_NAME in fields else None,
        event_types=desired.event_types if EVENTS in fields else None,
        labels=desired.labels if LABELS in fields else None,
        client=client,
    )


async def ensure(client: Client, settings: Settings) -> DataConnector:
    """The reconcile once (`dtpush connector ensure`, `serve --bootstrap`); the managed
    connector. `ConfigError` when a needed setting is missing."""
    return (await reconcile(client, Desired.from_settings(settings))).connector


__all__ = [
    "AMBIGUOUS",
    "CREATE",
    "FIELDS",
    "NOTHING",
    "PATCH",
    "ConnectorLike",
    "Desired",
    "Plan",
    "Reconciled",
    "drift",
    "ensure",
    "plan",
    "reconcile",
]
