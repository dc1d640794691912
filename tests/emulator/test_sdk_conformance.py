"""Conformance: DT's official Python SDK (`disruptive==1.7.3`), a client we did not write,
works against the emulator exactly as it works against DT's cloud.

The emulator runs on loopback in a thread with its own event loop; the SDK (synchronous,
`requests`) is called from the test thread, configured only through its documented
settings: `disruptive.base_url`, `disruptive.default_auth` and the auth object's
`token_endpoint`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import disruptive as dt
import disruptive.errors as dterrors
import pytest

from receiver.emulator import RunningEmulator, running_emulator
from receiver.emulator.catalog import DEVICE_TYPES

pytestmark = pytest.mark.slow

URL = "https://receiver.example.com/events"


class EmulatorThread:
    """The emulator served from a background thread until `stop()`."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.emulator: RunningEmulator | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="emulator", daemon=True)

    def start(self) -> RunningEmulator:
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("emulator did not start within 30 s")
        if self.emulator is None:
            raise RuntimeError(f"emulator failed to start: {self.error!r}")
        return self.emulator

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the test thread by start()
            self.error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with running_emulator() as emulator:
            self.emulator = emulator
            self._ready.set()
            await self._stop.wait()


@pytest.fixture
def emu() -> Iterator[RunningEmulator]:
    server = EmulatorThread()
    emulator = server.start()
    saved = (dt.base_url, dt.default_auth, dt.request_attempts)
    env = emulator.env
    auth = dt.Auth.service_account(
        env["DT_SERVICE_ACCOUNT_KEY_ID"],
        env["DT_SERVICE_ACCOUNT_SECRET"],
        env["DT_SERVICE_ACCOUNT_EMAIL"],
    )
    auth.token_endpoint = env["DT_TOKEN_URL"]
    dt.base_url = env["DT_API_URL"]
    dt.default_auth = auth
    try:
        yield emulator
    finally:
        dt.base_url, dt.default_auth, dt.request_attempts = saved
        server.stop()


def _create(project_id: str, **kwargs: Any) -> dt.DataConnector:
    return dt.DataConnector.create_data_connector(
        project_id=project_id,
        config=dt.DataConnector.HttpPushConfig(
            url=URL, signature_secret="s3cret", headers={"X-Key": "k"}
        ),
        **kwargs,
    )


def test_sdk_create_answers_data_connector_with_every_attribute(emu: RunningEmulator) -> None:
    project = emu.state.project_id

    created = _create(
        project,
        display_name="dtpush",
        event_types=[dt.events.TEMPERATURE, dt.events.TOUCH],
        labels=["name"],
    )

    assert isinstance(created, dt.DataConnector)
    assert len(created.data_connector_id) == 20
    assert created.project_id == project
    assert created.display_name == "dtpush"
    assert (
        created.status == dt.DataConnector.ACTIVE
        if hasattr(dt.DataConnector, "ACTIVE")
        else "ACTIVE"
    )
    assert created.status == "ACTIVE"
    assert created.data_connector_type == dt.DataConnector.HTTP_PUSH
    assert created.event_types == ["temperature", "touch"]
    assert created.labels == ["name"]
    assert isinstance(created.config, dt.DataConnector.HttpPushConfig)
    assert (created.config.url, created.config.signature_secret, created.config.headers) == (
        URL,
        "s3cret",
        {"X-Key": "k"},
    )


def test_sdk_get_and_list_return_what_was_created(emu: RunningEmulator) -> None:
    project = emu.state.project_id
    first = _create(project, display_name="one")
    second = _create(project, display_name="two")

    got = dt.DataConnector.get_data_connector(first.data_connector_id, project)
    listed = dt.DataConnector.list_data_connectors(project)

    assert got.raw == first.raw
    assert [c.data_connector_id for c in listed] == [
        first.data_connector_id,
        second.data_connector_id,
    ]
    assert [c.display_name for c in listed] == ["one", "two"]


def test_sdk_update_sends_only_given_fields_and_keeps_the_rest(emu: RunningEmulator) -> None:
    project = emu.state.project_id
    created = _create(project, display_name="before", labels=["name"])

    updated = dt.DataConnector.update_data_connector(
        created.data_connector_id,
        project,
        config=dt.DataConnector.HttpPushConfig(signature_secret="rotated"),
        display_name="after",
        status="USER_DISABLED",
        event_types=[dt.events.CO2],
    )

    assert updated.display_name == "after"
    assert updated.status == "USER_DISABLED"
    assert updated.event_types == ["co2"]
    assert updated.labels == ["name"]
    assert updated.config is not None
    assert updated.config.url == URL
    assert updated.config.signature_secret == "rotated"
    assert updated.config.headers == {"X-Key": "k"}
    again = dt.DataConnector.get_data_connector(created.data_connector_id, project)
    assert again.raw == updated.raw


def test_sdk_sync_succeeds_and_is_recorded(emu: RunningEmulator) -> None:
    project = emu.state.project_id
    created = _create(project)

    result = dt.DataConnector.sync_data_connector(created.data_connector_id, project)

    assert result is None
    assert len(emu.state.delivery_for(created.data_connector_id).sync_requests) == 1


def test_sdk_get_metrics_answers_metric(emu: RunningEmulator) -> None:
    project = emu.state.project_id
    created = _create(project)
    delivery = emu.state.delivery_for(created.data_connector_id)
    now = datetime.now(UTC).timestamp()
    delivery.record_attempt(now, ok=True, latency=0.25)
    delivery.record_attempt(now, ok=False, latency=0.5)

    metric = dt.DataConnector.get_metrics(created.data_connector_id, project)

    assert (metric.success_count, metric.error_count, metric.latency) == (1, 1, "0.500s")


def test_sdk_delete_succeeds_and_get_then_raises_not_found(emu: RunningEmulator) -> None:
    project = emu.state.project_id
    created = _create(project)

    result = dt.DataConnector.delete_data_connector(created.data_connector_id, project)

    assert result is None
    with pytest.raises(dterrors.NotFound):
        dt.DataConnector.get_data_connector(created.data_connector_id, project)


def test_sdk_errors_map_to_its_typed_exceptions(emu: RunningEmulator) -> None:
    project = emu.state.project_id
    created = _create(project)

    with pytest.raises(dterrors.NotFound):
        dt.DataConnector.get_data_connector("aaaaaaaaaaaaaaaaaaaa", project)
    with pytest.raises(dterrors.NotFound):
        dt.DataConnector.list_data_connectors("nosuchproject0000000")
    with pytest.raises(dterrors.BadRequest):
        dt.DataConnector.update_data_connector(
            created.data_connector_id, project, status="SYSTEM_DISABLED"
        )
    for _ in range(9):
        _create(project)
    with pytest.raises(dterrors.BadRequest):
        _create(project)


def test_sdk_wrong_secret_raises_unauthorized(emu: RunningEmulator) -> None:
    env = emu.env
    wrong = dt.Auth.service_account(
        env["DT_SERVICE_ACCOUNT_KEY_ID"],
        "wrong-secret-0123456789abcdef",
        env["DT_SERVICE_ACCOUNT_EMAIL"],
    )
    wrong.token_endpoint = env["DT_TOKEN_URL"]

    with pytest.raises(dterrors.Unauthorized):
        dt.DataConnector.list_data_connectors(emu.state.project_id, auth=wrong)


def test_sdk_retries_a_503_and_succeeds(emu: RunningEmulator) -> None:
    project = emu.state.project_id
    emu.state.faults.fail_next(1, 503, method="GET", path_prefix="/v2")

    listed = dt.DataConnector.list_data_connectors(project)

    assert listed == []


def test_sdk_lists_devices_of_every_type_with_reported_data(emu: RunningEmulator) -> None:
    devices = dt.Device.list_devices(emu.state.project_id)

    assert sorted({d.device_type for d in devices}) == sorted(DEVICE_TYPES)
    assert all(d.is_emulated for d in devices)
    assert all(d.display_name for d in devices)
    fridge = next(d for d in devices if d.device_type == dt.Device.TEMPERATURE)
    assert fridge.reported is not None and fridge.reported.temperature is not None
    assert isinstance(fridge.reported.temperature.celsius, float)
    one = dt.Device.get_device(fridge.device_id, emu.state.project_id)
    assert one.raw == fridge.raw


def test_sdk_lists_event_history_as_typed_events(emu: RunningEmulator) -> None:
    device = next(
        d
        for d in dt.Device.list_devices(emu.state.project_id)
        if d.device_type == dt.Device.HUMIDITY
    )

    history = dt.EventHistory.list_events(
        device.device_id,
        emu.state.project_id,
        event_types=[dt.events.HUMIDITY, dt.events.NETWORK_STATUS],
        start_time=datetime.now(UTC) - timedelta(hours=6),
    )

    assert {e.event_type for e in history} == {"humidity", "networkStatus"}
    assert all(isinstance(e.data, dt.events.Humidity | dt.events.NetworkStatus) for e in history)
    assert len(history) >= 11 * 3  # a humidity and two networkStatus events per 30 minutes
