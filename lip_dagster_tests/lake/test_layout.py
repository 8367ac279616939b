"""The lake contract's paths: one pair of functions, total and reversible."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from lip_dagster.errors import InvalidSourceName
from lip_dagster.lake.layout import (
    OBJECT_KEY_RE,
    hour_of,
    object_key,
    parse_object_key,
    partition_to_path,
    path_to_partition,
    validate_source_name,
)

CONTRACT_RE = re.compile(
    r"^source=[a-z0-9][a-z0-9_-]{0,62}/year=\d{4}/month=\d{2}/day=\d{2}/hour=\d{2}/"
    r"\d{8}T\d{6}Z_[0-9a-f-]{36}\.ndjson\.gz$"
)


@pytest.mark.parametrize("year", [2024, 2025])  # a leap year and a plain one
def test_every_hour_of_a_year_round_trips(year: int) -> None:
    t = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    seen = set()
    while t < end:
        key = hour_of(t)
        path = partition_to_path(key)
        assert path == t.strftime("year=%Y/month=%m/day=%d/hour=%H")
        assert path_to_partition(path) == key
        seen.add(key)
        t += timedelta(hours=1)
    assert len(seen) == (8784 if year == 2024 else 8760)


@pytest.mark.parametrize(
    ("local", "expected_hour"),
    [
        # US spring forward 2024-03-10 02:00 local does not exist; UTC hours all do
        ("2024-03-10T01:30:00-05:00", "2024-03-10-06:00"),
        ("2024-03-10T03:30:00-04:00", "2024-03-10-07:00"),
        # EU fall back 2024-10-27: 02:30 happens twice locally, two UTC hours
        ("2024-10-27T02:30:00+02:00", "2024-10-27-00:00"),
        ("2024-10-27T02:30:00+01:00", "2024-10-27-01:00"),
    ],
)
def test_dst_dates_map_to_utc_hours(local: str, expected_hour: str) -> None:
    assert hour_of(datetime.fromisoformat(local)) == expected_hour


def test_object_key_matches_contract_and_parses_back() -> None:
    key = object_key(
        "okta",
        "2024-03-10-02:00",
        datetime(2024, 3, 10, 2, 5, 7, tzinfo=UTC),
        "0b5e6f3c-8d5a-5b1e-9c1d-2f3a4b5c6d7e",
    )
    assert key == (
        "source=okta/year=2024/month=03/day=10/hour=02/"
        "20240310T020507Z_0b5e6f3c-8d5a-5b1e-9c1d-2f3a4b5c6d7e.ndjson.gz"
    )
    assert CONTRACT_RE.match(key) and OBJECT_KEY_RE.match(key)
    assert parse_object_key(key) == ("okta", "2024-03-10-02:00")


@pytest.mark.parametrize(
    ("ts", "hour", "expected"),
    [
        # Go's zero time: glibc's strftime('%Y') writes "1", not "0001"
        (
            datetime(1, 1, 1, tzinfo=UTC),
            "0001-01-01-00:00",
            "year=0001/month=01/day=01/hour=00/00010101T000000Z",
        ),
        (
            datetime(999, 12, 31, 23, 59, 59),
            "0999-12-31-23:00",
            "year=0999/month=12/day=31/hour=23/09991231T235959Z",
        ),
    ],
)
def test_keys_of_years_below_1000_keep_four_digits_and_parse_back(
    ts: datetime, hour: str, expected: str
) -> None:
    """Every lake key is built zero-padded, whatever the year, so the backends (which
    parse each key before they touch it) never refuse one the writer built."""
    assert hour_of(ts) == hour
    key = object_key("okta", hour, ts, "0b5e6f3c-8d5a-5b1e-9c1d-2f3a4b5c6d7e")
    assert key == f"source=okta/{expected}_0b5e6f3c-8d5a-5b1e-9c1d-2f3a4b5c6d7e.ndjson.gz"
    assert CONTRACT_RE.match(key)
    assert parse_object_key(key) == ("okta", hour)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "Okta",
        "okta!",
        "-okta",
        "_okta",
        "a" * 64,
        "ok ta",
        "../etc",
        "okta/x",
        "ökta",
        "okta\n",
    ],
)
def test_bad_source_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidSourceName, match="not allowed"):
        validate_source_name(bad)


@pytest.mark.parametrize("good", ["okta", "0", "a" * 63, "google_workspace", "one-password-2"])
def test_good_source_names_pass(good: str) -> None:
    assert validate_source_name(good) == good


@pytest.mark.parametrize(
    "bad",
    ["2024-02-30-01:00", "2024-01-01-24:00", "2024-01-01T01:00", "2024-1-01-01:00"],
)
def test_bad_partition_keys_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        partition_to_path(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "source=okta/year=2024/month=03/day=10/hour=02/x.ndjson.gz",
        "source=okta/year=2024/month=03/day=10/hour=02/../../../etc/passwd",
        "source=Okta/year=2024/month=03/day=10/hour=02/"
        "20240310T020507Z_0b5e6f3c-8d5a-5b1e-9c1d-2f3a4b5c6d7e.ndjson.gz",
    ],
)
def test_parse_object_key_refuses_anything_else(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_object_key(bad)
