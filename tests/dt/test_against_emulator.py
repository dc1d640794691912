"""Our client against `dtpush emulator` (in-process, on loopback): every operation, with the
emulator's own service account, and its injected faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from receiver.dt import (
    ACTIVE,
    TEMPERATURE,
    TOUCH,
    USER_DISABLED,
    Client,
    DataConnector,
    Device,
    EventHistory,
    HttpPushConfig,
    NotFound,
    RetryPolicy,
    Timeout,
    Unauthorized,
)
from receiver.emulator import RunningEmulator, running_emulator
from tests.dt.conftest import Sleeps

URL = "https://receiver.example.com/events"


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    async with running_emulator() as emu:
        yield emu


def emulator_client(emu: RunningEmulator, **options: Any) -> Client:
    options.setdefault("sleep", Sleeps())
    options.setdefault("retry", RetryPolicy(backoff_initial=0.01, backoff_max=0.05))
    return Client.from_env(emu.env, **options)


@pytest.fixture
async def client(emulator: RunningEmulator) -> AsyncIterator[Client]:
    async with emulator_client(emulator, request_timeout=5) as c:
        yield c


async def test_every_connector_operation_against_the_emulator(
    emulator: RunningEmulator, client: Client
) -> None:
    project = emulator.env["DTPUSH_CONNECTOR_PROJECT_ID"]

    assert await DataConnector.list_data_connectors(project, client=client) == []
    created = await DataConnector.create_data_connector(
        project,
        HttpPushConfig(url=URL, signature_secret="emu-secret", headers={"X-Key": "v"}),
        display_name="dtpush",
        event_types=[TOUCH],
        labels=["name"],
        client=client,
    )
    fetched = await DataConnector.get_data_connector(
        created.data_connector_id, project, client=client
    )
    updated = await DataConnector.update_data_connector(
        created.data_connector_id,
        project,
        config=HttpPushConfig(signature_secret="rotated"),
        status=USER_DISABLED,
        event_types=[TOUCH, TEMPERATURE],
        client=client,
    )
    await DataConnector.sync_data_connector(created.data_connector_id, project, client=client)
    metric = await DataConnector.get_metrics(created.data_connector_id, project, client=client)
    listed = await DataConnector.list_data_connectors(project, client=client)
    await DataConnector.delete_data_connector(created.data_connector_id, project, client=client)

    assert created.project_id == project
    assert created.status == ACTIVE
    assert fetched.config == HttpPushConfig(
        url=URL, signature_secret="emu-secret", headers={"X-Key": "v"}
    )
    assert (fetched.display_name, fetched.event_types, fetched.labels) == (
        "dtpush",
        [TOUCH],
        ["name"],
    )
    assert updated.status == USER_DISABLED
    assert updated.event_types == [TOUCH, TEMPERATURE]
    assert updated.config is not None
    # a partial httpConfig with an explicit mask changes the secret only
    assert (updated.config.url, updated.config.signature_secret) == (URL, "rotated")
    assert updated.config.headers == {"X-Key": "v"}
    assert metric.latency_seconds >= 0
    assert metric.success_count >= 0
    assert [c.data_connector_id for c in listed] == [created.data_connector_id]
    assert await DataConnector.list_data_connectors(project, client=client) == []
    with pytest.raises(NotFound):
        await DataConnector.get_data_connector(created.data_connector_id, project, client=client)


async def test_unknown_project_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound):
        await DataConnector.list_data_connectors("noSuchProject", client=client)


async def test_wrong_secret_is_unauthorized(emulator: RunningEmulator) -> None:
    env = {**emulator.env, "DT_SERVICE_ACCOUNT_SECRET": "not-the-secret-of-this-account"}
    async with Client.from_env(env, request_timeout=5) as client:
        with pytest.raises(Unauthorized):
            await DataConnector.list_data_connectors(emulator.state.project_id, client=client)


async def test_every_device_and_its_history_over_several_pages(
    emulator: RunningEmulator, client: Client
) -> None:
    project = emulator.state.project_id

    devices = await Device.list_devices(project, page_size=3, client=client)
    sensor = next(d for d in devices if d.device_type == Device.TEMPERATURE)
    end = datetime.now(UTC)
    events = await EventHistory.list_events(
        sensor.device_id,
        project,
        event_types=[TEMPERATURE],
        start_time=end - timedelta(hours=24),
        end_time=end,
        page_size=5,
        client=client,
    )

    assert len(devices) == len(emulator.state.projects[project].devices)
    assert {d.device_type for d in devices} >= {Device.TEMPERATURE, Device.CLOUD_CONNECTOR}
    assert len(events) > 5  # more than one page
    assert {e["eventType"] for e in events} == {TEMPERATURE}
    assert len({e["eventId"] for e in events}) == len(events)
    assert all(e["targetName"].endswith(f"/devices/{sensor.device_id}") for e in events)


async def test_expired_token_mid_run_is_replaced(emulator: RunningEmulator, client: Client) -> None:
    project = emulator.state.project_id
    await DataConnector.list_data_connectors(project, client=client)

    emulator.state.expire_tokens()
    connectors = await DataConnector.list_data_connectors(project, client=client)

    assert connectors == []


async def test_too_many_requests_and_unavailable_are_ridden_out(
    emulator: RunningEmulator,
) -> None:
    sleeps = Sleeps()
    emulator.state.faults.fail_next(1, 429, retry_after=2, method="GET")
    emulator.state.faults.fail_next(1, 503, method="GET")
    async with emulator_client(emulator, sleep=sleeps) as client:
        connectors = await DataConnector.list_data_connectors(
            emulator.state.project_id, client=client
        )

    assert connectors == []
    assert sleeps.delays[0] == 2.0
    assert len(sleeps.delays) == 2


async def test_create_whose_answer_is_lost_leaves_exactly_one_connector(
    emulator: RunningEmulator,
) -> None:
    project = emulator.state.project_id
    emulator.state.faults.delay_next(1, 1.5, method="POST", path_prefix="/v2/projects")
    async with emulator_client(emulator, request_timeout=0.3) as client:
        with pytest.raises(Timeout):
            await DataConnector.create_data_connector(
                project, HttpPushConfig(url=URL), display_name="dtpush", client=client
            )
        listed = await DataConnector.list_data_connectors(project, client=client)

    assert [(c.display_name, c.config.url if c.config else None) for c in listed] == [
        ("dtpush", URL)
    ]


async def test_create_or_adopt_after_a_dropped_answer_creates_no_second_connector(
    emulator: RunningEmulator, client: Client
) -> None:
    project = emulator.state.project_id
    emulator.state.faults.drop_next(1, method="POST", path_prefix="/v2/projects")

    adopted = await DataConnector.create_or_adopt(
        project, HttpPushConfig(url=URL), display_name="dtpush", client=client
    )
    listed = await DataConnector.list_data_connectors(project, client=client)

    assert [c.data_connector_id for c in listed] == [adopted.data_connector_id]
