"""Identity and time: the vendor's id, else a stable hash; the event's hour, else the
arrival hour, flagged."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lip_dagster.lake.envelope import EventIdentity, parse_timestamp, stable_hash_id


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2020-02-14T22:18:51.843Z", datetime(2020, 2, 14, 22, 18, 51, 843000, tzinfo=UTC)),
        ("2022-10-24T21:16:52.827288935Z", datetime(2022, 10, 24, 21, 16, 52, 827288, tzinfo=UTC)),
        ("2021-06-11T16:32:50-03:00", datetime(2021, 6, 11, 19, 32, 50, tzinfo=UTC)),
        (1521214343, datetime(2018, 3, 16, 15, 32, 23, tzinfo=UTC)),  # Slack seconds
        (1606929874512, datetime(2020, 12, 2, 17, 24, 34, 512000, tzinfo=UTC)),  # GitHub ms
        ("1725269730", datetime(2024, 9, 2, 9, 35, 30, tzinfo=UTC)),
    ],
)
def test_vendor_timestamps_parse_to_utc(raw: object, expected: datetime) -> None:
    assert parse_timestamp(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "yesterday", True, {"a": 1}, "2024-13-45T99:00:00Z"])
def test_unusable_timestamps_are_none(raw: object) -> None:
    assert parse_timestamp(raw) is None


def test_composite_id_and_hash_fallback() -> None:
    google = EventIdentity(
        id_fields=("id.time", "id.uniqueQualifier", "id.applicationName", "id.customerId"),
        time_field="id.time",
    )
    ev = {
        "id": {
            "time": "2022-05-04T15:04:05Z",
            "uniqueQualifier": "-8365551478938402017",
            "applicationName": "admin",
            "customerId": "C015t6bdl",
        }
    }
    assert google.event_id(ev) == "2022-05-04T15:04:05Z|-8365551478938402017|admin|C015t6bdl"
    no_id = {"id": {"time": "2022-05-04T15:04:05Z"}}
    assert google.event_id(no_id) == stable_hash_id(no_id)
    # canonical: key order does not change the hash
    assert stable_hash_id({"a": 1, "b": 2}) == stable_hash_id({"b": 2, "a": 1})
