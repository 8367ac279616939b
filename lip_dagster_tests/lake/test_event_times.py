"""Event times the lake does not file by: unset values (Go's zero time, Unix time 0)
and sentinels (9999-12-31) land in their arrival hour, flagged, under an identity that
does not depend on the arrival; one of them never holds up the rest of a page. A time
merely ahead of arrival (a vendor clock running fast) is filed by itself: a bound
relative to arrival would make the same event's key depend on when it was fetched."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from lip_dagster.errors import LakeWriteError
from lip_dagster.lake.backends import LocalLake
from lip_dagster.lake.envelope import time_and_hour
from lip_dagster.lake.identity_keys import UNTIMED_HOUR, dedupe_keys, event_key
from lip_dagster.lake.writer import LakeWriter
from lip_dagster.state.base import KeyResolution
from lip_dagster.state.sqlite import SqliteDedupeStore

from .conftest import OKTA, keys_of

ARRIVAL = datetime(2026, 3, 2, 7, 15, tzinfo=UTC)
ARRIVAL_HOUR = "2026-03-02-07:00"

# Values vendors send for "no time", and sentinels no event time can be.
IMPLAUSIBLE: dict[str, Any] = {
    "go-zero": "0001-01-01T00:00:00Z",
    "go-zero-nanos": "0001-01-01T00:00:00.000000000Z",
    "go-zero-offset": "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
    "year-999": "0999-06-15T12:00:00Z",
    "before-epoch": "1969-12-31T23:59:59Z",
    "unix-zero": 0,
    "epoch-hour": "1970-01-01T00:30:00Z",
    "go-zero-epoch": -62135596800,
    "max-date": "9999-12-31T23:59:59Z",
    "max-date-offset": "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
    "year-2100": 4102444800,
}
# The nearest times that are still filed by themselves.
PLAUSIBLE_EDGES: dict[str, tuple[Any, str]] = {
    "first-hour-after-epoch": ("1970-01-01T01:00:00Z", "1970-01-01-01:00"),
    "a-week-ahead-of-arrival": ("2026-03-09T07:15:00Z", "2026-03-09-07:00"),
    "last-hour-before-2100": ("2099-12-31T23:59:59Z", "2099-12-31-23:00"),
    "on-time": ("2026-03-02T07:14:59.123Z", ARRIVAL_HOUR),
}


def lake_lines(root: Path) -> list[tuple[str, dict[str, Any]]]:
    """(object key, record) of every line in the lake."""
    out = []
    for p in sorted(root.rglob("*.ndjson.gz")):
        key = p.relative_to(root).as_posix()
        out += [(key, orjson.loads(x)) for x in gzip.decompress(p.read_bytes()).splitlines()]
    return out


def stamped(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"uuid": name, "published": value, "kind": "test"} for name, value in values.items()]


@pytest.mark.parametrize("name", IMPLAUSIBLE)
def test_implausible_times_are_no_time(name: str) -> None:
    """``locate`` gives no time for them, as for a missing or unparseable one."""
    ev = stamped({name: IMPLAUSIBLE[name]})[0]
    assert OKTA.locate(ev) == (name, None, None)
    assert time_and_hour(IMPLAUSIBLE[name]) == (None, None)


@pytest.mark.parametrize("name", PLAUSIBLE_EDGES)
def test_the_nearest_plausible_times_keep_their_hour(name: str) -> None:
    value, hour = PLAUSIBLE_EDGES[name]
    _, t, got = OKTA.locate(stamped({name: value})[0])
    assert got == hour and t is not None


def test_an_event_ahead_of_arrival_lands_once_whenever_it_is_fetched(
    writer: LakeWriter, lake: LocalLake
) -> None:
    """A vendor clock a day ahead: fetched once, then again by a retry an hour later.
    Its identity must be the same both times, or the lake holds it twice."""
    page = stamped({"clock-ahead": "2026-03-03T07:30:00Z"})
    assert writer.write("okta", page, OKTA, "polling", arrival=ARRIVAL).events == 1
    again = writer.write("okta", page, OKTA, "polling", arrival=ARRIVAL + timedelta(hours=1))
    assert again.events == 0 and again.duplicates == 1
    ((key, rec),) = lake_lines(lake.root)
    assert "/year=2026/month=03/day=03/hour=07/" in key and rec["_lip"]["hour_from"] == "event"


def test_a_page_with_go_zero_time_lands_whole_and_the_zero_by_arrival(
    writer: LakeWriter, lake: LocalLake, make_events
) -> None:
    """Go's zero time used to make a key no backend accepts, failing the page on every
    retry: a polled source stayed stuck on that page."""
    good = make_events(9)
    page = [*good, *stamped({"zero": "0001-01-01T00:00:00Z"})]
    res = writer.write("okta", page, OKTA, "polling", arrival=ARRIVAL)
    assert res.events == 10
    lines = {rec["uuid"]: (key, rec) for key, rec in lake_lines(lake.root)}
    assert set(lines) == {e["uuid"] for e in page}
    key, zero = lines["zero"]
    assert "/year=2026/month=03/day=02/hour=07/" in key
    assert zero["_lip"]["hour_from"] == "arrival"
    assert zero["published"] == "0001-01-01T00:00:00Z"  # the vendor's event, unchanged
    for e in good:
        key, rec = lines[e["uuid"]]
        assert "/year=2026/month=03/day=01/hour=10/" in key
        assert rec["_lip"]["hour_from"] == "event"
    assert all("year=0001" not in k for k, _ in lake_lines(lake.root))
    assert res.newest_event == max(datetime.fromisoformat(e["published"]) for e in good)


def test_implausible_times_land_by_arrival_once_across_retries(
    writer: LakeWriter, lake: LocalLake, make_events
) -> None:
    """A retry arrives in another hour; the events' identity must not follow it, or
    the retry would land them a second time."""
    stable = IMPLAUSIBLE
    page = [*make_events(5), *stamped(stable)]
    first = writer.write("okta", page, OKTA, "polling", arrival=ARRIVAL)
    assert first.events == len(page)
    assert first.hours[ARRIVAL_HOUR].events == len(stable)
    objects = sorted(p for p in lake.root.rglob("*.ndjson.gz"))
    retry = writer.write("okta", page, OKTA, "polling", arrival=ARRIVAL + timedelta(hours=5))
    assert retry.events == 0 and retry.duplicates == len(page)
    assert sorted(p for p in lake.root.rglob("*.ndjson.gz")) == objects
    by_id = {rec["uuid"]: (key, rec["_lip"]["hour_from"]) for key, rec in lake_lines(lake.root)}
    assert len(by_id) == len(page) == len(lake_lines(lake.root))
    for name in stable:
        key, hour_from = by_id[name]
        assert "/year=2026/month=03/day=02/hour=07/" in key and hour_from == "arrival", name


def test_times_on_either_side_of_the_limits_land_where_they_say(
    writer: LakeWriter, lake: LocalLake
) -> None:
    page = stamped(IMPLAUSIBLE) + stamped({n: v for n, (v, _) in PLAUSIBLE_EDGES.items()})
    writer.write("okta", page, OKTA, "webhook", arrival=ARRIVAL)
    got = {
        rec["uuid"]: (key.split("/")[1:5], rec["_lip"]["hour_from"])
        for key, rec in lake_lines(lake.root)
    }
    assert len(got) == len(page)
    for name in IMPLAUSIBLE:
        assert got[name] == (["year=2026", "month=03", "day=02", "hour=07"], "arrival"), name
    for name, (_, hour) in PLAUSIBLE_EDGES.items():
        y, m, d, h = hour[:4], hour[5:7], hour[8:10], hour[11:13]
        assert got[name] == ([f"year={y}", f"month={m}", f"day={d}", f"hour={h}"], "event")


@pytest.mark.parametrize("resolution", ["hour", "second"])
def test_the_receiver_and_the_writer_key_implausible_times_alike(
    resolution: KeyResolution, make_events
) -> None:
    """The receiver marks ids ``accepted`` under ``dedupe_keys``; the writer claims
    them under the keys it prepares. Both must agree, here under ``UNTIMED_HOUR``."""
    page = [*make_events(3), *stamped(IMPLAUSIBLE), *stamped({"untimed": None})]
    writer = LakeWriter.__new__(LakeWriter)  # only its _prepare: no stores
    groups, _ = writer._prepare("okta", page, OKTA, "webhook", ARRIVAL, ARRIVAL, None, resolution)
    written = sorted(k for chunk in groups.values() for k in chunk.keys)
    received = dedupe_keys(page, OKTA, resolution)
    assert sorted(received) == written
    assert received == [event_key(e, OKTA, resolution).dedupe_key for e in page]
    for e in page[3:]:
        k = event_key(e, OKTA, resolution)
        assert k.dedupe_key.bucket == UNTIMED_HOUR and k.time is None, e["uuid"]
    # a delivery the drain lands hours after the receiver keyed it: the same keys
    ahead = stamped({"ahead": "2026-03-04T07:00:00Z"})
    later = ARRIVAL + timedelta(hours=30)
    groups, _ = writer._prepare("okta", ahead, OKTA, "webhook", later, later, None, resolution)
    (chunk,) = groups.values()
    assert dedupe_keys(ahead, OKTA, resolution) == chunk.keys
    assert chunk.keys[0].bucket.startswith("2026-03-04-07:")


def test_a_key_that_cannot_be_built_fails_the_page_as_a_lake_error(
    writer: LakeWriter,
    lake: LocalLake,
    dedupe: SqliteDedupeStore,
    make_events,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Should a key come out that the backends refuse, the writer says so as a
    ``LakeWriteError`` naming source and hour, which pollers and drains handle,
    before any id is claimed under it."""

    def unpadded_key(source: str, hour: str, ts: datetime, batch: str) -> str:
        return f"source={source}/year=1/{ts.year}0101T000000Z_{batch}.ndjson.gz"

    monkeypatch.setattr("lip_dagster.lake.writer.object_key", unpadded_key)
    events = make_events(4)
    with pytest.raises(LakeWriteError, match=r"source 'okta'.*hour '2026-03-01-10:00'") as err:
        writer.write("okta", events, OKTA, "polling")
    assert "not a lake object key" in str(err.value)
    assert [p for p in lake.root.rglob("*") if p.is_file()] == []
    assert dedupe.get("okta", keys_of(events, dedupe)) == {}


# The last instant of 2025 written every way a vendor writes times: nanoseconds
# (Cloudflare Logpush ``unixnano``), microseconds, a numeric string, a float, RFC 3339.
# Each is still 2025-12-31 23:59:59, so each belongs in that year's last hour.
LAST_INSTANT_OF_2025: dict[str, Any] = {
    "unixnano": 1767225599_999999999,
    "unixnano-half-microsecond-left": 1767225599_999999500,
    "unixnano-string": "1767225599999999999",
    "unix-micros": 1767225599_999999,
    "unix-seconds-string": "1767225599.9999999",
    "unix-seconds-float": 1767225599.9999995,  # the nearest float is still in 2025
    "rfc3339-nanos": "2025-12-31T23:59:59.999999999Z",
}


@pytest.mark.parametrize("name", LAST_INSTANT_OF_2025)
def test_the_last_instant_of_an_hour_stays_in_its_hour(name: str) -> None:
    t, hour = time_and_hour(LAST_INSTANT_OF_2025[name])
    assert hour == "2025-12-31-23:00"
    assert t is not None and (t.year, t.second, t.microsecond) == (2025, 59, 999999)


def test_a_logpush_request_at_the_end_of_the_year_lands_in_that_year(
    writer: LakeWriter, lake: LocalLake
) -> None:
    """Cloudflare stamps ``EdgeStartTimestamp`` in nanoseconds; a request in the last
    microsecond of the year was filed under year=2026 before."""
    from lip_dagster.s3stream.formats import CLOUDFLARE_DATASETS

    event = orjson.loads(
        (Path(__file__).parent.parent / "fixtures/cloudflare/http_request.json").read_bytes()
    )
    event["EdgeStartTimestamp"] = 1767225599_999999700
    writer.write("cf", [event], CLOUDFLARE_DATASETS["http_requests"], "s3", arrival=ARRIVAL)
    [(key, rec)] = lake_lines(lake.root)
    assert key.split("/")[1:5] == ["year=2025", "month=12", "day=31", "hour=23"]
    assert rec["_lip"]["hour_from"] == "event"
