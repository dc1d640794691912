"""Everything the local DT cloud knows, in memory: projects, connectors, devices, event
history, service accounts, access tokens, signing keys, delivery state and faults.

Pure: no aiohttp, no sockets, no clock — methods that need the time take `now` (Unix
seconds). The REST views call it; the push side (`sensors.VirtualSensors`,
`pusher.Pusher`) builds on `emit`/`append_event`, `delivery_for`, `set_connector_status`
and the listeners `on_event` (called with (device, event) for every appended event) and
`on_sync` (called with the connector whose ``:sync`` was requested).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from receiver.emulator import connectors as dc
from receiver.emulator.auth import ACCESS_TOKEN_TTL_SECONDS, AccessTokens, ServiceAccount
from receiver.emulator.catalog import DEVICE_TYPES, EVENT_TYPES
from receiver.emulator.delivery import DISABLE_AFTER_SECONDS, ConnectorDelivery
from receiver.emulator.devices import HISTORY_RETENTION_SECONDS, Device, make_event, select_devices
from receiver.emulator.errors import bad_request, not_found
from receiver.emulator.faults import Faults
from receiver.emulator.ids import IdFactory
from receiver.emulator.oidc import SigningKey, SigningKeys, new_signing_key
from receiver.emulator.seed import seed_devices
from receiver.emulator.timestamps import format_rfc3339

MAX_CONNECTORS_PER_PROJECT = 10
#: The time inside the xids of a seeded cloud's project and account (2024-01-01T00:00:00Z).
SEEDED_IDS_AT = 1_704_067_200.0
ALL_PROJECTS = "-"

EventListener = Callable[[Device, dict[str, Any]], None]
SyncListener = Callable[[dc.Connector], None]


@dataclass
class Project:
    id: str
    display_name: str
    organization_id: str
    connectors: dict[str, dc.Connector] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"projects/{self.id}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "displayName": self.display_name,
            "organization": f"organizations/{self.organization_id}",
            "organizationDisplayName": "Emulated organization",
            "sensorCount": sum(1 for d in self.devices.values() if d.type != "ccon"),
            "cloudConnectorCount": sum(1 for d in self.devices.values() if d.type == "ccon"),
            "inventory": False,
        }


class EmulatorState:
    """The in-memory DT cloud. `EmulatorState.seeded(now)` gives the ready-made one."""

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        token_ttl_seconds: float = ACCESS_TOKEN_TTL_SECONDS,
        max_connectors_per_project: int = MAX_CONNECTORS_PER_PROJECT,
        disable_after_seconds: float = DISABLE_AFTER_SECONDS,
    ) -> None:
        self.rng = rng if rng is not None else random.Random()
        self.ids = IdFactory(rng)
        self.projects: dict[str, Project] = {}
        self.accounts: dict[str, ServiceAccount] = {}
        self.tokens = AccessTokens()
        self.token_ttl_seconds = token_ttl_seconds
        self.max_connectors_per_project = max_connectors_per_project
        self.disable_after_seconds = disable_after_seconds
        self.signing_keys = SigningKeys(new_signing_key(self.ids.xid(0), 0.0))
        self.faults = Faults()
        self.base_url: str | None = None
        self.deliveries: dict[str, ConnectorDelivery] = {}
        self.on_event: list[EventListener] = []
        self.on_sync: list[SyncListener] = []

    # -- construction ------------------------------------------------------------------

    @classmethod
    def seeded(
        cls, now: float, *, rng: random.Random | None = None, **settings: Any
    ) -> EmulatorState:
        """A cloud with one project, one service account and the seeded devices (`seed.py`).

        With a given `rng` (a seed), the project, organization and service-account ids do
        not depend on `now`, so a restart with the same seed prints the same credentials.
        """
        state = cls(rng=rng, **settings)
        made_at = now if rng is None else SEEDED_IDS_AT
        project = state.add_project("Emulated project", made_at)
        state.add_service_account(project.id, made_at)
        for device in seed_devices(project.id, now, state.ids, state.rng):
            project.devices[device.id] = device
        return state

    def add_project(self, display_name: str, now: float) -> Project:
        project = Project(self.ids.xid(now), display_name, self.ids.xid(now))
        self.projects[project.id] = project
        return project

    def add_service_account(self, project_id: str, now: float) -> ServiceAccount:
        key_id = self.ids.xid(now)
        email = f"{self.ids.xid(now)}@{project_id}.serviceaccount.d21s.com"
        account = ServiceAccount(key_id, self.ids.secret(), email)
        self.accounts[key_id] = account
        return account

    @property
    def project_id(self) -> str:
        """The first (seeded) project's id."""
        return next(iter(self.projects))

    @property
    def organization_id(self) -> str:
        return self.projects[self.project_id].organization_id

    @property
    def service_account(self) -> ServiceAccount:
        """The first (seeded) service account."""
        return next(iter(self.accounts.values()))

    # -- projects and connectors -------------------------------------------------------

    def project(self, project_id: str) -> Project:
        project = self.projects.get(project_id)
        if project is None:
            raise not_found("project not found")
        return project

    def list_connectors(self, project_id: str) -> list[dc.Connector]:
        return list(self.project(project_id).connectors.values())

    def get_connector(self, project_id: str, connector_id: str) -> dc.Connector:
        connector = self.project(project_id).connectors.get(connector_id)
        if connector is None:
            raise not_found("data connector not found")
        return connector

    def create_connector(self, project_id: str, body: Any, now: float) -> dc.Connector:
        project = self.project(project_id)
        connector = dc.connector_from_body(
            body, connector_id=self.ids.xid(now), project_id=project_id
        )
        if len(project.connectors) >= self.max_connectors_per_project:
            raise bad_request(
                f"a project can have at most {self.max_connectors_per_project} data connectors"
            )
        project.connectors[connector.id] = connector
        self.deliveries[connector.id] = ConnectorDelivery()
        return connector

    def update_connector(
        self, project_id: str, connector_id: str, body: Any, mask: tuple[str, ...] | None
    ) -> dc.Connector:
        current = self.get_connector(project_id, connector_id)
        updated = dc.apply_patch(current, body, mask)
        return self._store(current, updated)

    def set_connector_status(self, project_id: str, connector_id: str, status: str) -> dc.Connector:
        """Any status, SYSTEM_DISABLED included (what DT itself does; not for clients)."""
        if status not in dc.STATUSES:
            raise ValueError(f"unknown status {status!r}")
        current = self.get_connector(project_id, connector_id)
        return self._store(current, _with_status(current, status))

    def delete_connector(self, project_id: str, connector_id: str) -> None:
        self.get_connector(project_id, connector_id)
        del self.projects[project_id].connectors[connector_id]
        self.deliveries.pop(connector_id, None)

    def sync_connector(self, project_id: str, connector_id: str, now: float) -> None:
        connector = self.get_connector(project_id, connector_id)
        self.delivery_for(connector_id).sync_requests.append(now)
        for listener in list(self.on_sync):
            listener(connector)

    def connector_metrics(self, project_id: str, connector_id: str, now: float) -> dict[str, Any]:
        self.get_connector(project_id, connector_id)
        return self.delivery_for(connector_id).metrics(now)

    def delivery_for(self, connector_id: str) -> ConnectorDelivery:
        return self.deliveries.setdefault(connector_id, ConnectorDelivery())

    def active_connectors(self, project_id: str) -> list[dc.Connector]:
        return [c for c in self.list_connectors(project_id) if c.status == dc.ACTIVE]

    def _store(self, current: dc.Connector, updated: dc.Connector) -> dc.Connector:
        """Keep `updated`; a connector that stops being ACTIVE loses its queued pushes (DT
        drops them), and one that becomes ACTIVE again starts a fresh failure clock with an
        empty queue (no backfill)."""
        self.projects[current.project_id].connectors[current.id] = updated
        if current.status != updated.status:
            if updated.status == dc.ACTIVE:
                self.delivery_for(current.id).reset()
            else:
                self.delivery_for(current.id).drop_pending()
        return updated

    # -- devices and event history -----------------------------------------------------

    def _projects_for(self, project_id: str) -> list[Project]:
        if project_id == ALL_PROJECTS:
            return list(self.projects.values())
        return [self.project(project_id)]

    def list_devices(
        self,
        project_id: str,
        *,
        device_ids: Iterable[str] = (),
        device_types: Iterable[str] = (),
        label_filters: Iterable[str] = (),
        query: str = "",
        order_by: str = "",
    ) -> list[Device]:
        types = list(device_types)
        for device_type in types:
            if device_type not in DEVICE_TYPES:
                raise bad_request(f"device_types: unknown device type {device_type!r}")
        everything = [d for p in self._projects_for(project_id) for d in p.devices.values()]
        return select_devices(
            everything,
            device_ids=device_ids,
            device_types=types,
            label_filters=label_filters,
            query=query,
            order_by=order_by,
        )

    def get_device(self, project_id: str, device_id: str) -> Device:
        for project in self._projects_for(project_id):
            device = project.devices.get(device_id)
            if device is not None:
                return device
        raise not_found("device not found")

    def device_events(
        self,
        project_id: str,
        device_id: str,
        *,
        start: float,
        end: float,
        event_types: Iterable[str] = (),
    ) -> list[dict[str, Any]]:
        """A device's events between `start` and `end` (inclusive), newest first."""
        types = list(event_types)
        for event_type in types:
            if event_type not in EVENT_TYPES:
                raise bad_request(f"eventTypes: unknown event type {event_type!r}")
        if start > end:
            raise bad_request("startTime must not be after endTime")
        return self.get_device(project_id, device_id).history(start, end, types)

    def find_device(self, device_id: str) -> Device:
        for project in self.projects.values():
            if device_id in project.devices:
                return project.devices[device_id]
        raise KeyError(device_id)

    def append_event(self, device_id: str, event: dict[str, Any]) -> dict[str, Any]:
        """Add a DT event object to a device's history; listeners (the pusher) hear of it."""
        device = self.find_device(device_id)
        device.append(event)
        for listener in list(self.on_event):
            listener(device, event)
        return event

    def emit(
        self, device_id: str, event_type: str, data: dict[str, Any], at: float
    ) -> dict[str, Any]:
        """Make a new event (fresh ``eventId``, timestamp `at`) and append it."""
        device = self.find_device(device_id)
        event = make_event(
            self.ids.xid(at), device.project_id, device.id, event_type, data, format_rfc3339(at)
        )
        return self.append_event(device_id, event)

    def prune_history(self, now: float) -> None:
        for project in self.projects.values():
            for device in project.devices.values():
                device.prune(now - HISTORY_RETENTION_SECONDS)

    # -- tokens and keys ---------------------------------------------------------------

    def issue_token(self, key_id: str, now: float) -> str:
        token = self.ids.token()
        self.tokens.issue(token, key_id, now, self.token_ttl_seconds)
        return token

    def expire_tokens(self) -> None:
        """Fault hook: every access token issued so far stops working now."""
        self.tokens.expire_all()

    def rotate_key(self, now: float) -> SigningKey:
        """A new current signing key; the previous one stays in the JWKS for a while."""
        return self.signing_keys.rotate(new_signing_key(self.ids.xid(now), now), now)


def _with_status(connector: dc.Connector, status: str) -> dc.Connector:
    return replace(connector, status=status)
