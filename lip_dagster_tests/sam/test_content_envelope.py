"""``lake_content`` holds the values of the four fixed ``_lip`` keys to the lake
contract (DESIGN §1), not only their presence. LIP's own writer always gets them
right; a lake-layout producer writes its own objects, and this check is the only thing
between them and the SAM: a line whose ``_lip.source`` names another source is missed
by every query on ``_lip.source``, an id that is not a string defeats the SAM's
deduplication, and an ``ingested_at`` that is no timestamp breaks a column the SAM
types as one."""

from __future__ import annotations

import gzip
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from lip_dagster.lake.backends import LocalLake
from lip_dagster.lake.envelope import EventIdentity
from lip_dagster.lake.layout import object_key
from lip_dagster.lake.writer import LakeWriter
from lip_dagster.sam.content import verify_partition
from lip_dagster.state.sqlite import SqliteDedupeStore

FIXTURES = Path(__file__).parent.parent / "fixtures"
OKTA = EventIdentity(id_fields=("uuid",), time_field="published")
HOUR = "2026-03-01-10:00"
START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def okta_event(i: int) -> dict[str, Any]:
    base = orjson.loads((FIXTURES / "lake" / "okta_event.json").read_bytes())
    t = START + timedelta(seconds=7 * i)
    return {**base, "uuid": str(uuid.uuid4()), "published": t.strftime("%Y-%m-%dT%H:%M:%S.000Z")}


@pytest.fixture
def lake(tmp_path: Path) -> LocalLake:
    return LocalLake(tmp_path / "lake", tmp_path / "tmp")


def produce(lake: LocalLake, lines: list[dict[str, Any]]) -> str:
    """One object of ``partner`` in HOUR, as a producer in the lake layout writes it."""
    key = object_key("partner", HOUR, START, str(uuid.uuid4()))
    lake.put(key, gzip.compress(b"".join(orjson.dumps(rec) + b"\n" for rec in lines)))
    return key


def enveloped(i: int, **lip: Any) -> dict[str, Any]:
    ev = okta_event(i)
    ev["_lip"] = {
        "source": "partner",
        "id": ev["uuid"],
        "ingested_at": "2026-03-01T10:20:00.123456Z",
        "pattern": "polling",
        **lip,
    }
    return ev


def test_what_lips_own_writer_lands_passes(lake: LocalLake, tmp_path: Path) -> None:
    untimed = {**okta_event(99), "published": None}  # filed by arrival, hour_from=arrival
    dedupe = SqliteDedupeStore(tmp_path / "state.db")
    try:
        events = [okta_event(i) for i in range(5)] + [untimed]
        LakeWriter(lake, dedupe).write(
            "partner", events, OKTA, "polling", arrival=START + timedelta(minutes=20)
        )
    finally:
        dedupe.close()
    report = verify_partition(lake, "partner", HOUR)
    assert report.problems == []
    assert report.events == 6


def test_a_producer_with_well_formed_envelopes_passes(lake: LocalLake) -> None:
    produce(
        lake,
        [
            enveloped(0),
            enveloped(1, ingested_at="2026-03-01T10:20:00Z", pattern="s3"),
            enveloped(2, ingested_at="2026-03-01T11:20:00.123456789+01:00", pattern="webhook"),
        ],
    )
    assert verify_partition(lake, "partner", HOUR).problems == []


@pytest.mark.parametrize(
    ("lip", "words"),
    [
        ({"source": "okta"}, "_lip.source is 'okta', not 'partner'"),
        ({"id": None}, "_lip.id is not a non-empty string"),
        ({"id": 12345}, "_lip.id is not a non-empty string"),
        ({"id": ""}, "_lip.id is not a non-empty string"),
        ({"pattern": "kafka"}, "_lip.pattern is 'kafka', not one of polling, webhook, s3"),
        ({"ingested_at": "x"}, "_lip.ingested_at is not an RFC 3339 time with a zone"),
        ({"ingested_at": 1772359200}, "_lip.ingested_at is not an RFC 3339 time with a zone"),
        ({"ingested_at": "2026-03-01T10:20:00"}, "_lip.ingested_at is not an RFC 3339 time"),
        ({"ingested_at": "2026-13-01T10:20:00Z"}, "_lip.ingested_at is not an RFC 3339 time"),
    ],
)
def test_a_fixed_envelope_key_with_the_wrong_value_fails_naming_the_line(
    lake: LocalLake, lip: dict[str, Any], words: str
) -> None:
    key = produce(lake, [enveloped(0), enveloped(1, **lip)])
    report = verify_partition(lake, "partner", HOUR)
    assert not report.ok
    assert len(report.problems) == 1
    assert report.problems[0].startswith(f"{key}:2: {words}")
