"""Identity and time: the vendor's id, else a stable hash; the event's hour, else the
arrival hour, flagged."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lip_dagster.lake.envelope import (
    MAX_ID_BYTES,
    EventIdentity,
    bounded_id,
    parse_timestamp,
    stable_hash_id,
)
from lip_dagster.sources.google_workspace import GoogleWorkspacePoller
from lip_dagster.sources.okta import OktaPoller
from lip_dagster.sources.slack import SlackPoller
from lip_dagster.webhook.vendors import GITHUB_IDENTITY, JAMF_IDENTITY

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


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


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "yesterday",
        True,
        {"a": 1},
        "2024-13-45T99:00:00Z",
        "0001-01-01T00:00:00+01:00",  # before year 1 once in UTC
        "9999-12-31T23:59:59.123456789-01:00",  # after year 9999 once in UTC
        "²",  # digits to str.isdigit(), not to float()
        "-①",
        "1²",
    ],
)
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


def _fixture(path: str) -> dict[str, Any]:
    return json.loads((FIXTURES / path).read_text())


@pytest.mark.parametrize(
    ("identity", "event"),
    [
        (OktaPoller.identity, _fixture("okta/system_log_event.json")),
        (SlackPoller.identity, _fixture("slack/audit_entry.json")),
        (GoogleWorkspacePoller.identity, _fixture("google_workspace/activity.json")),
        (JAMF_IDENTITY, _fixture("jamf/webhook_computer_added.json")),
        (GITHUB_IDENTITY, {"guid": "72d3162e-cc78-11e3-81ab-4c9367dc0958", "event": "push"}),
    ],
    ids=["okta", "slack", "google", "jamf", "github"],
)
def test_locate_is_id_and_time_in_one_call(identity: EventIdentity, event: dict[str, Any]) -> None:
    """The writer and the receiver take id, time and hour from ``locate``; it must give
    what ``event_id`` and ``locate_time`` give, for the usual event and for the
    damaged ones (no id, a number for an id, an empty id, no time, a bogus time, an
    unset or far-future time)."""
    variants = [event]
    for field in (*identity.id_fields, identity.time_field):
        if field and "." not in field:
            variants += [
                {k: v for k, v in event.items() if k != field},
                {**event, field: 12345},
                {**event, field: ""},
                {**event, field: "2024-13-45T99:00:00Z"},
                {**event, field: "0001-01-01T00:00:00Z"},
                {**event, field: "9999-12-31T23:59:59Z"},
            ]
    for ev in variants:
        assert identity.locate(ev) == (identity.event_id(ev), *identity.locate_time(ev)), ev


def test_an_id_longer_than_the_bound_is_kept_as_its_hash() -> None:
    short = "x" * MAX_ID_BYTES
    assert bounded_id(short) == short
    long = "x" * (MAX_ID_BYTES + 1)
    assert bounded_id(long) == bounded_id(long) != long
    assert bounded_id(long).startswith("sha256:") and len(bounded_id(long)) == 71
    wide = "é" * (MAX_ID_BYTES // 2 + 1)  # under the bound in characters, over in bytes
    assert bounded_id(wide).startswith("sha256:")
    event = {"uuid": long, "published": "2026-03-01T10:00:00.000Z"}
    ident = EventIdentity(id_fields=("uuid",), time_field="published")
    assert ident.locate(event)[0] == ident.event_id(event) == bounded_id(long)
