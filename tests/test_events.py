"""`receiver.events.parse`: every DT event type, the envelope rules, and every quarantine reason."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from receiver.errors import NotAnEvent
from receiver.events import (
    EVENT_TYPES,
    NOT_AN_EVENT_REASONS,
    BatteryStatus,
    CellularStatus,
    Co2,
    ConnectionStatus,
    Contact,
    DeskOccupancy,
    EthernetStatus,
    Event,
    Humidity,
    HumiditySample,
    LabelsChanged,
    Metadata,
    Motion,
    NetworkStatus,
    NetworkStatusCloudConnector,
    ObjectPresent,
    ObjectPresentCount,
    Pressure,
    ProbeWireStatus,
    Temperature,
    TemperatureSample,
    Touch,
    TouchCount,
    WaterPresent,
    parse,
)
from receiver.testing import sample_bodies, sample_body


def _sample(event_type: str) -> Event:
    return parse(sample_body(event_type))


def _body(event: dict[str, Any] | None = None, **top: Any) -> bytes:
    """A temperature push with `event` fields replaced (None deletes) and top-level fields."""
    doc = orjson.loads(sample_body("temperature"))
    for key, value in (event or {}).items():
        if value is None:
            del doc["event"][key]
        else:
            doc["event"][key] = value
    for key, value in top.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    return orjson.dumps(doc)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- every type -------------------------------------------------------------------------------


def test_event_types_are_the_nineteen_dt_documents_in_the_sdk_order() -> None:
    import disruptive.events

    assert list(EVENT_TYPES) == disruptive.events.EVENT_TYPES
    assert len(EVENT_TYPES) == 19


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_parse_sample_of_each_type_gives_typed_data_and_envelope(event_type: str) -> None:
    body = sample_body(event_type)
    doc = orjson.loads(body)

    event = parse(body)

    assert event.event_type == event_type
    assert event.event_id == doc["event"]["eventId"]
    assert event.target_name == doc["event"]["targetName"]
    assert event.device_id == doc["metadata"]["deviceId"]
    assert event.project_id == doc["metadata"]["projectId"]
    assert event.target_name == f"projects/{event.project_id}/devices/{event.device_id}"
    assert event.timestamp == _at(doc["event"]["timestamp"])
    assert event.timestamp.utcoffset() == timedelta(0)
    assert event.labels == doc["labels"]
    assert event.metadata == Metadata(doc["metadata"]["deviceType"], "")
    assert not isinstance(event.data, dict)
    assert event.data.update_time == event.data.timestamp
    assert event.raw is body
    assert event.raw_data() == doc["event"]["data"]


def test_parse_temperature_sample_keeps_the_integer_dt_sent() -> None:
    event = _sample("temperature")
    when = _at("2024-05-29T10:34:03.970415Z")

    assert event.data == Temperature(
        celsius=27,
        samples=(TemperatureSample(celsius=27, timestamp=when),),
        is_backfilled=False,
        update_time=when,
    )
    assert type(event.data.celsius) is int
    assert event.data.fahrenheit == pytest.approx(80.6)
    assert event.metadata == Metadata(device_type="temperature", product_number="")
    assert event.labels == {"name": "test temp"}
    assert (event.device_id, event.project_id) == (
        "emucdd6ef2eu277bo8f52vg",
        "ccol8iuk9smqiha4e8l0",
    )


def test_parse_humidity_sample_gives_celsius_and_relative_humidity() -> None:
    when = _at("2019-05-16T06:13:46.369Z")

    assert _sample("humidity").data == Humidity(
        celsius=22.45,
        relative_humidity=17,
        samples=(HumiditySample(celsius=22.45, relative_humidity=17, timestamp=when),),
        is_backfilled=False,
        update_time=when,
    )


def test_parse_counter_samples_give_their_totals() -> None:
    assert _sample("touchCount").data == TouchCount(469, _at("2019-05-16T08:25:21.604Z"))
    assert _sample("objectPresentCount").data == ObjectPresentCount(
        4176, _at("2019-05-16T08:23:43.209Z")
    )


def test_parse_air_samples_give_ppm_and_pascal() -> None:
    when = _at("2022-01-27T15:50:34.471Z")

    assert _sample("co2").data == Co2(ppm=526, update_time=when)
    assert _sample("pressure").data == Pressure(pascal=99301, update_time=when)
    assert _sample("pressure").metadata == Metadata("co2", "")


def test_parse_state_samples_give_their_state() -> None:
    assert _sample("objectPresent").data == ObjectPresent(
        "NOT_PRESENT", _at("2019-05-16T08:37:10.711412Z")
    )
    assert _sample("waterPresent").data == WaterPresent("PRESENT", _at("2019-05-16T08:43:16.266Z"))
    assert _sample("motion").data == Motion("MOTION_DETECTED", _at("2023-08-02T11:03:18.595777Z"))
    assert _sample("contact").data == Contact("OPEN", _at("2024-12-06T14:23:50.728Z"))
    assert _sample("probeWireStatus").data == ProbeWireStatus(
        "THREE_WIRE", _at("2024-12-06T14:30:11.402Z")
    )
    assert _sample("deskOccupancy").data == DeskOccupancy(
        state="OCCUPIED", remarks=(), update_time=_at("2025-05-08T07:53:02Z")
    )
    assert _sample("touch").data == Touch(_at("2022-02-10T12:42:13.313949Z"))


def test_parse_network_status_sample_lists_its_cloud_connectors() -> None:
    assert _sample("networkStatus").data == NetworkStatus(
        signal_strength=45,
        rssi=-83,
        cloud_connectors=(
            NetworkStatusCloudConnector(
                device_id="emucm90101j4pcfkfl6bpa0", signal_strength=45, rssi=-83
            ),
        ),
        transmission_mode="LOW_POWER_STANDARD_MODE",
        update_time=_at("2019-05-16T08:21:21.076013Z"),
    )


def test_parse_device_status_samples_give_their_fields() -> None:
    when = _at("2019-05-16T08:21:21.076013Z")

    assert _sample("batteryStatus").data == BatteryStatus(percentage=100, update_time=when)
    assert _sample("connectionStatus").data == ConnectionStatus(
        connection="ETHERNET", available=("CELLULAR", "ETHERNET"), update_time=when
    )
    assert _sample("ethernetStatus").data == EthernetStatus(
        mac_address="f0:b5:b7:00:0a:08", ip_address="10.0.0.1", errors=(), update_time=when
    )
    assert _sample("cellularStatus").data == CellularStatus(
        signal_strength=80, errors=(), update_time=when
    )
    assert _sample("cellularStatus").metadata == Metadata("ccon", "")


def test_parse_labels_changed_takes_the_event_timestamp_as_update_time() -> None:
    event = _sample("labelsChanged")

    assert event.data == LabelsChanged(
        added={"room": "kitchen"},
        modified={"name": "Fridge 3 (new)"},
        removed=("old-label",),
        update_time=event.timestamp,
    )
    assert event.timestamp == _at("2019-05-16T08:30:02.114052Z")


def test_parse_ethernet_status_with_errors_lists_code_and_message() -> None:
    doc = orjson.loads(sample_body("ethernetStatus"))
    doc["event"]["data"]["ethernetStatus"]["errors"] = [{"code": 3, "message": "link down"}]

    data = parse(orjson.dumps(doc)).data

    assert isinstance(data, EthernetStatus)
    assert [(e.code, e.message) for e in data.errors] == [(3, "link down")]


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_parse_sample_of_each_type_agrees_with_the_official_sdk(event_type: str) -> None:
    import disruptive.events

    body = sample_body(event_type)
    theirs: Any = disruptive.events.Event(orjson.loads(body)["event"]).data

    ours = parse(body).data

    _assert_same_as_sdk(ours, theirs)
    assert ours.timestamp == theirs.timestamp


def _assert_same_as_sdk(ours: Any, theirs: Any) -> None:
    if dataclasses.is_dataclass(ours):
        for f in dataclasses.fields(ours):
            if f.name not in ("update_time", "errors"):  # not modelled by the SDK
                _assert_same_as_sdk(getattr(ours, f.name), getattr(theirs, f.name))
        if hasattr(theirs, "fahrenheit"):
            assert getattr(ours, "fahrenheit") == pytest.approx(theirs.fahrenheit)  # noqa: B009
    elif isinstance(ours, tuple):
        assert len(ours) == len(theirs)
        for mine, sdk in zip(ours, theirs, strict=True):
            _assert_same_as_sdk(mine, sdk)
    else:
        assert ours == theirs
        assert type(ours) is type(theirs)


def test_typed_data_is_frozen() -> None:
    data = _sample("temperature").data

    with pytest.raises(dataclasses.FrozenInstanceError):
        data.celsius = 30


# --- unknown types and unexpected shapes ------------------------------------------------------


def test_parse_unknown_type_keeps_the_data_dict() -> None:
    data = {"rainfall": {"mm": 3.5, "updateTime": "2024-05-29T10:34:03.970415Z"}}

    event = parse(_body({"eventType": "rainfall", "data": data}))

    assert event.event_type == "rainfall"
    assert event.data == data


@pytest.mark.parametrize(
    "data",
    [
        {"temperature": {"value": "hot", "updateTime": "2024-05-29T10:34:03Z"}},
        {"temperature": {"updateTime": "2024-05-29T10:34:03Z"}},
        {"temperature": {"value": True}},
        {"temperature": {"value": 27, "samples": {"value": 27}}},
        {"temperature": {"value": 27, "samples": [{"value": 27, "sampleTime": 1716978843}]}},
        {"temperature": {"value": 27, "isBackfilled": "no"}},
        {"temperature": {"value": 27, "updateTime": "yesterday"}},
        {"temperature": [27]},
        {"value": 27},
        {},
    ],
    ids=[
        "value-text",
        "value-missing",
        "value-bool",
        "samples-not-list",
        "sample-time-number",
        "backfilled-text",
        "bad-update-time",
        "not-object",
        "not-keyed",
        "empty",
    ],
)
def test_parse_known_type_with_unexpected_shape_keeps_the_data_dict(data: dict[str, Any]) -> None:
    event = parse(_body({"data": data}))

    assert event.event_type == "temperature"
    assert event.data == data


def test_parse_known_type_with_extra_fields_is_still_typed() -> None:
    data = {"temperature": {"value": 21.5, "unit": "C", "updateTime": "2024-05-29T10:35:00Z"}}

    event = parse(_body({"data": data, "newField": 1}, extra={"a": 1}))

    assert event.data == Temperature(21.5, (), False, _at("2024-05-29T10:35:00Z"))


def test_parse_data_without_update_or_sample_time_takes_the_event_timestamp() -> None:
    samples = [{"temperature": 21, "relativeHumidity": 40}]
    data = {"humidity": {"temperature": 21, "relativeHumidity": 40, "samples": samples}}

    event = parse(_body({"eventType": "humidity", "data": data}))

    sample = HumiditySample(21, 40, event.timestamp)
    assert event.data == Humidity(21, 40, (sample,), False, event.timestamp)


def test_parse_network_status_without_transmission_mode_gives_none() -> None:
    doc = orjson.loads(sample_body("networkStatus"))
    del doc["event"]["data"]["networkStatus"]["transmissionMode"]

    data = parse(orjson.dumps(doc)).data

    assert isinstance(data, NetworkStatus)
    assert data.transmission_mode is None


# --- the envelope -----------------------------------------------------------------------------


def test_parse_without_optional_fields_gives_empty_values() -> None:
    event = parse(_body({"targetName": None}, labels=None, metadata=None))

    assert (event.device_id, event.project_id, event.target_name) == ("", "", "")
    assert event.labels == {}
    assert event.metadata is None
    assert isinstance(event.data, Temperature)


def test_parse_without_metadata_takes_ids_from_target_name() -> None:
    event = parse(_body({"targetName": "projects/p1/devices/d1"}, metadata=None))

    assert (event.project_id, event.device_id) == ("p1", "d1")
    assert event.metadata is None


def test_parse_with_incomplete_metadata_gives_no_metadata_but_keeps_its_ids() -> None:
    metadata = {"deviceId": "d2", "projectId": "p2", "deviceType": "temperature"}

    event = parse(_body({"targetName": "projects/p1/devices/d1"}, metadata=metadata))

    assert (event.project_id, event.device_id) == ("p2", "d2")
    assert event.metadata is None


@pytest.mark.parametrize("target_name", ["devices/d1", "projects/p1/sensors/d1", 42])
def test_parse_with_odd_target_name_and_no_metadata_gives_empty_ids(target_name: Any) -> None:
    event = parse(_body({"targetName": target_name}, metadata=None))

    assert (event.project_id, event.device_id) == ("", "")


def test_parse_real_hardware_metadata_keeps_the_product_number() -> None:
    metadata = {
        "deviceId": "d",
        "projectId": "p",
        "deviceType": "humidity",
        "productNumber": "102081",
    }

    assert parse(_body(metadata=metadata)).metadata == Metadata("humidity", "102081")


def test_parse_labels_keeps_only_text_values() -> None:
    event = parse(_body(labels={"name": "fridge", "floor": 3, "room": None}))

    assert event.labels == {"name": "fridge"}


def test_parse_labels_not_an_object_gives_empty_labels() -> None:
    assert parse(_body(labels=["name"])).labels == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-29T10:34:03.970415Z", datetime(2024, 5, 29, 10, 34, 3, 970415, UTC)),
        ("2024-05-29T10:34:03Z", datetime(2024, 5, 29, 10, 34, 3, tzinfo=UTC)),
        ("2024-05-29T10:34:03.970415123Z", datetime(2024, 5, 29, 10, 34, 3, 970415, UTC)),
        (
            "2024-05-29T12:34:03.5+02:00",
            datetime(2024, 5, 29, 12, 34, 3, 500000, timezone(timedelta(hours=2))),
        ),
        ("2024-05-29t10:34:03z", datetime(2024, 5, 29, 10, 34, 3, tzinfo=UTC)),
        ("2024-05-29 10:34:03Z", datetime(2024, 5, 29, 10, 34, 3, tzinfo=UTC)),
    ],
    ids=["micro", "whole", "nano-truncated", "offset", "lower-case", "space"],
)
def test_parse_rfc3339_timestamp_gives_aware_datetime(text: str, expected: datetime) -> None:
    event = parse(_body({"timestamp": text}))

    assert event.timestamp == expected
    assert event.timestamp.utcoffset() == expected.utcoffset()


# --- not an event -----------------------------------------------------------------------------

_NOT_EVENTS: list[tuple[str, bytes, str]] = [
    ("empty", b"", "not_json"),
    ("text", b"hello", "not_json"),
    ("truncated", sample_body("touch")[:-1], "not_json"),
    ("not-utf8", b'{"event": "\xff"}', "not_json"),
    ("array", b"[]", "not_an_object"),
    ("string", b'"event"', "not_an_object"),
    ("null", b"null", "not_an_object"),
    ("no-event", b'{"labels": {}}', "missing_event"),
    ("event-list", b'{"event": []}', "missing_event"),
    ("no-id", _body({"eventId": None}), "missing_event_id"),
    ("id-number", _body({"eventId": 17}), "missing_event_id"),
    ("id-empty", _body({"eventId": ""}), "missing_event_id"),
    ("no-type", _body({"eventType": None}), "missing_event_type"),
    ("type-list", _body({"eventType": ["touch"]}), "missing_event_type"),
    ("no-data", _body({"data": None}), "missing_data"),
    ("data-list", _body({"data": [1]}), "missing_data"),
    ("no-timestamp", _body({"timestamp": None}), "missing_timestamp"),
    ("timestamp-number", _body({"timestamp": 1716978843}), "missing_timestamp"),
    ("timestamp-word", _body({"timestamp": "yesterday"}), "bad_timestamp"),
    ("timestamp-naive", _body({"timestamp": "2024-05-29T10:34:03.970415"}), "bad_timestamp"),
    ("timestamp-date", _body({"timestamp": "2024-05-29"}), "bad_timestamp"),
    ("timestamp-basic", _body({"timestamp": "20240529T103403Z"}), "bad_timestamp"),
    ("timestamp-no-seconds", _body({"timestamp": "2024-05-29T10:34Z"}), "bad_timestamp"),
    ("timestamp-month-13", _body({"timestamp": "2024-13-29T10:34:03Z"}), "bad_timestamp"),
]


@pytest.mark.parametrize(
    ("body", "reason"), [c[1:] for c in _NOT_EVENTS], ids=[c[0] for c in _NOT_EVENTS]
)
def test_parse_body_that_is_not_an_event_raises_not_an_event_with_reason(
    body: bytes, reason: str
) -> None:
    with pytest.raises(NotAnEvent) as caught:
        parse(body)

    assert caught.value.reason == reason


def test_not_an_event_reasons_are_all_raised_by_parse() -> None:
    assert {reason for _, _, reason in _NOT_EVENTS} == set(NOT_AN_EVENT_REASONS)


def test_parse_sample_bodies_round_trip_byte_exact() -> None:
    for body in sample_bodies().values():
        assert parse(body).raw == body
