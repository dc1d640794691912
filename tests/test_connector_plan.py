"""The reconcile plan (pure): current connectors + desired state -> one action."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from receiver.config import load_settings
from receiver.connector import (
    AMBIGUOUS,
    CREATE,
    NOTHING,
    PATCH,
    Desired,
    Plan,
    plan,
)
from receiver.dt import DataConnector
from receiver.errors import ConfigError

PROJECT = "proj0123456789abcdefg"
URL = "https://receiver.example.com/events"
SECRET = "plan-secret-0123456789abcdef0123456789"

DESIRED = Desired(
    project_id=PROJECT,
    display_name="dtpush",
    url=URL,
    secret=SECRET,
    event_types=("temperature", "touch"),
    labels=("name",),
)


def connector(
    connector_id: str = "dc1",
    *,
    display_name: str = "dtpush",
    url: str = URL,
    secret: str = SECRET,
    status: str = "ACTIVE",
    events: list[str] | None = None,
    labels: list[str] | None = None,
    kind: str = "HTTP_PUSH",
) -> DataConnector:
    raw: dict[str, Any] = {
        "name": f"projects/{PROJECT}/dataconnectors/{connector_id}",
        "displayName": display_name,
        "type": kind,
        "status": status,
        "events": ["temperature", "touch"] if events is None else events,
        "labels": ["name"] if labels is None else labels,
    }
    if kind == "HTTP_PUSH":
        raw["httpConfig"] = {"url": url, "signatureSecret": secret, "headers": {}}
    return DataConnector(raw)


def test_plan_without_connectors_creates() -> None:
    assert plan([], DESIRED) == Plan(CREATE)


def test_plan_with_the_configured_connector_does_nothing() -> None:
    assert plan([connector()], DESIRED) == Plan(NOTHING, "dc1")


def test_plan_ignores_the_order_of_event_types_and_labels() -> None:
    current = connector(events=["touch", "temperature"], labels=["name"])
    assert plan([current], DESIRED).action == NOTHING


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"url": "https://elsewhere.example.com/x"}, "httpConfig.url"),
        ({"secret": "someone-else-set-this"}, "httpConfig.signatureSecret"),
        ({"events": ["touch"]}, "events"),
        ({"events": []}, "events"),
        ({"labels": ["name", "room"]}, "labels"),
    ],
)
def test_plan_one_drifted_field_patches_only_that_field(
    changes: dict[str, Any], field: str
) -> None:
    assert plan([connector(**changes)], DESIRED) == Plan(PATCH, "dc1", (field,))


def test_plan_every_drifted_field_goes_into_one_patch_in_mask_order() -> None:
    current = connector(url="https://x.example.com/", secret="old", events=[], labels=[])
    assert plan([current], DESIRED) == Plan(
        PATCH,
        "dc1",
        ("httpConfig.url", "httpConfig.signatureSecret", "events", "labels"),
    )


def test_plan_connector_renamed_in_dt_but_pushing_to_our_url_is_adopted_and_renamed() -> None:
    current = [connector("other", display_name="theirs", url="https://x.example.com/")]
    current.append(connector("ours", display_name="renamed by someone"))
    assert plan(current, DESIRED) == Plan(PATCH, "ours", ("displayName",))


def test_plan_two_connectors_with_the_display_name_is_ambiguous_naming_both() -> None:
    current = [connector("dcA"), connector("other", display_name="x"), connector("dcB")]
    decided = plan(current, DESIRED)
    assert decided.action == AMBIGUOUS
    assert decided.ids == ("dcA", "dcB")
    assert decided.connector_id is None


def test_plan_other_peoples_connectors_do_not_stop_a_create() -> None:
    current = [
        connector("a", display_name="a", url="https://a.example.com/"),
        connector("b", display_name="b", kind="AWS_SQS"),
    ]
    assert plan(current, DESIRED) == Plan(CREATE)


def test_plan_two_unnamed_connectors_pushing_to_our_url_create_ours() -> None:
    current = [connector("a", display_name="a"), connector("b", display_name="b")]
    assert plan(current, DESIRED) == Plan(CREATE)


@pytest.mark.parametrize("status", ["USER_DISABLED", "SYSTEM_DISABLED"])
def test_plan_never_touches_the_status(status: str) -> None:
    assert plan([connector(status=status)], DESIRED) == Plan(NOTHING, "dc1")
    drifted = plan([connector(status=status, labels=[])], DESIRED)
    assert drifted == Plan(PATCH, "dc1", ("labels",))


def test_desired_from_settings_takes_the_current_secret_and_connector_settings(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        env={
            "DTPUSH_CONNECTOR_PROJECT_ID": PROJECT,
            "DTPUSH_CONNECTOR_PUBLIC_URL": URL,
            "DTPUSH_CONNECTOR_EVENT_TYPES": "temperature,touch",
            "DTPUSH_VERIFY_SECRETS": f"{SECRET},older-secret",
        },
        cwd=tmp_path,
    )
    assert Desired.from_settings(settings) == DESIRED
    assert Desired.from_settings(settings, project_id="other").project_id == "other"


def test_desired_without_project_and_url_names_both_settings(tmp_path: Path) -> None:
    settings = load_settings(env={}, cwd=tmp_path)
    with pytest.raises(ConfigError) as caught:
        Desired.from_settings(settings)
    assert [p.split(":")[0] for p in caught.value.problems] == [
        "connector.project_id",
        "connector.public_url",
    ]


def test_desired_and_plan_reprs_never_show_the_secret() -> None:
    assert SECRET not in repr(DESIRED)
    assert SECRET not in repr(plan([connector(secret="x")], DESIRED))
