"""Partition definitions: lossless string forms, ranges, and errors that name the key."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, strategies as st

from flowstone import DailyPartitions, FlowStoneError, HourlyPartitions, StaticPartitions, ValidationError

DAILY = DailyPartitions(start="2025-01-01")
HOURLY = HourlyPartitions(start="2025-01-01T00:00:00+00:00")


@given(st.dates(min_value=date(2025, 1, 1), max_value=date(9999, 12, 31)))
def test_daily_round_trip(day: date) -> None:
    text = DAILY.serialize(day)
    assert text == day.isoformat()
    assert DAILY.deserialize(text) == day


@given(
    st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(9000, 1, 1)),
    st.integers(min_value=-12, max_value=14),
)
def test_hourly_round_trip_from_any_timezone(moment: datetime, offset_hours: int) -> None:
    key = moment.replace(minute=0, second=0, microsecond=0, tzinfo=UTC)
    local = key.astimezone(timezone(timedelta(hours=offset_hours)))
    text = HOURLY.serialize(local)
    back = HOURLY.deserialize(text)
    assert back == key and back.tzinfo == UTC
    assert HOURLY.serialize(back) == text


@given(st.lists(st.text(min_size=1), min_size=1, max_size=10, unique=True), st.data())
def test_static_round_trip(values: list[str], data: st.DataObject) -> None:
    static = StaticPartitions(values)
    key = data.draw(st.sampled_from(values))
    assert static.deserialize(static.serialize(key)) == key


def test_daily_key_text_is_the_iso_date() -> None:
    assert DAILY.serialize(date(2025, 1, 15)) == "2025-01-15"
    assert DAILY.deserialize("2025-01-15") == date(2025, 1, 15)


def test_ranges_include_both_ends() -> None:
    assert DAILY.range("2025-01-30", date(2025, 2, 2)) == [
        date(2025, 1, 30),
        date(2025, 1, 31),
        date(2025, 2, 1),
        date(2025, 2, 2),
    ]
    hours = HOURLY.range("2025-01-01T22:00:00+00:00", "2025-01-02T01:00:00+00:00")
    assert [h.hour for h in hours] == [22, 23, 0, 1]
    assert StaticPartitions(["eu", "us", "apac"]).range("us", "apac") == ["us", "apac"]


@pytest.mark.parametrize(
    ("definition", "key"),
    [
        (DAILY, "2024-12-31"),  # before start
        (DAILY, "2025-13-01"),
        (DAILY, "20250115"),
        (DAILY, datetime(2025, 1, 15, tzinfo=UTC)),  # a datetime is not a day
        (DailyPartitions("2025-01-01", "2025-01-31"), "2025-02-01"),  # after end
        (HOURLY, "2025-01-15T13:00:00"),  # no timezone
        (HOURLY, "2025-01-15T13:30:00+00:00"),  # not on the hour
        (HOURLY, 12),
        (StaticPartitions(["eu", "us"]), "mars"),
        (StaticPartitions(["eu", "us"]), 1),
    ],
)
def test_invalid_key_is_a_validation_error_naming_it(definition: object, key: object) -> None:
    with pytest.raises(FlowStoneError) as raised:
        definition.serialize(key)  # type: ignore[attr-defined]
    assert raised.value.type == "validation_error"
    assert repr(key) in raised.value.message


def test_hourly_accepts_a_day_and_dagster_keys_as_utc_hours() -> None:
    hourly = HourlyPartitions(start="2025-01-01")  # as DailyPartitions accepts it: its first hour
    assert hourly.start == datetime(2025, 1, 1, tzinfo=UTC)
    assert hourly.serialize("2025-01-01-05:00") == "2025-01-01T05:00:00+00:00"  # Dagster's key
    assert hourly.serialize("2025-01-02") == "2025-01-02T00:00:00+00:00"
    assert [h.hour for h in hourly.range("2025-01-01-22:00", "2025-01-02-01:00")] == [22, 23, 0, 1]
    assert HourlyPartitions(date(2025, 1, 1), "2025-01-02-00:00").end == datetime(2025, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: HourlyPartitions("2025-13-01"), "not an hour with a time zone"),
        (lambda: HourlyPartitions("2025-01-01T00:00:00"), "not an hour with a time zone"),
        (lambda: HourlyPartitions("2025-01-01-05:30"), "not on the hour"),
        (lambda: HourlyPartitions(12), "must be a datetime"),  # type: ignore[arg-type]
        (lambda: DailyPartitions("2025-02-30"), "not a YYYY-MM-DD date"),
        (lambda: StaticPartitions([]), "non-empty list"),
    ],
)
def test_a_bad_definition_is_a_validation_error_saying_what_fits(make: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as raised:
        make()
    assert raised.value.type == "validation_error"


def test_empty_or_reversed_range_is_rejected() -> None:
    with pytest.raises(FlowStoneError, match="empty"):
        DAILY.range("2025-02-01", "2025-01-01")


@pytest.mark.parametrize(
    "make",
    [
        lambda: DailyPartitions("2025-02-01", "2025-01-01"),
        lambda: HourlyPartitions("2025-01-01T00:00:00"),
        lambda: StaticPartitions([]),
        lambda: StaticPartitions(["a", "a"]),
        lambda: StaticPartitions("abc"),
    ],
)
def test_bad_definitions_are_rejected(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]
