"""The landing path: what the SAM reads, and exactly-once under retries."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from lip_dagster.errors import UnwritableEvents
from lip_dagster.lake.backends import LocalLake
from lip_dagster.lake.layout import OBJECT_KEY_RE
from lip_dagster.lake.writer import LakeWriter
from lip_dagster.state.sqlite import SqliteDedupeStore

from .conftest import OKTA


def lake_lines(root: Path) -> list[dict]:
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out.extend(orjson.loads(line) for line in gzip.decompress(p.read_bytes()).splitlines())
    return out


def lake_ids(root: Path) -> Counter[str]:
    return Counter(rec["_lip"]["id"] for rec in lake_lines(root))


def test_objects_follow_the_contract(writer: LakeWriter, lake: LocalLake, make_events) -> None:
    events = make_events(720, step=timedelta(seconds=10))  # two hours
    res = writer.write("okta", events, OKTA, "polling")
    assert res.events == 720 and set(res.hours) == {"2026-03-01-10:00", "2026-03-01-11:00"}
    files = [p for p in lake.root.rglob("*") if p.is_file()]
    assert len(files) == 2
    for p in files:
        rel = p.relative_to(lake.root).as_posix()
        assert OBJECT_KEY_RE.match(rel), rel
        raw = gzip.decompress(p.read_bytes())
        assert raw.endswith(b"\n") and b"\n\n" not in raw
        hour = rel.split("/hour=")[1][:2]
        for line in raw.split(b"\n")[:-1]:
            rec = orjson.loads(line)
            assert rec["published"][11:13] == hour
            lip = rec["_lip"]
            assert lip["source"] == "okta" and lip["pattern"] == "polling"
            assert lip["id"] == rec["uuid"] and lip["hour_from"] == "event"
            assert lip["ingested_at"].endswith("Z")
            # the vendor's event is kept whole
            assert rec["actor"]["id"] == "00u1abvz4pYqdM8ms4x6"


@pytest.mark.skipif(shutil.which("zcat") is None, reason="zcat is part of gzip on every target")
def test_zcat_reads_every_object(writer: LakeWriter, lake: LocalLake, make_events) -> None:
    writer.write("okta", make_events(500), OKTA, "polling")
    for p in lake.root.rglob("*.ndjson.gz"):
        out = subprocess.run(["zcat", str(p)], check=True, capture_output=True).stdout
        assert out == gzip.decompress(p.read_bytes())


def test_events_without_time_go_to_arrival_hour_and_say_so(
    writer: LakeWriter, lake: LocalLake, make_events
) -> None:
    events = make_events(3)
    events[0]["published"] = "not a time"
    del events[1]["published"]
    arrival = datetime(2026, 3, 2, 7, 15, tzinfo=UTC)
    res = writer.write("okta", events, OKTA, "polling", arrival=arrival)
    assert res.hours["2026-03-02-07:00"].events == 2
    recs = {r["uuid"]: r["_lip"]["hour_from"] for r in lake_lines(lake.root)}
    assert sorted(recs.values()) == ["arrival", "arrival", "event"]


def test_same_batch_same_key_and_lake_holds_each_event_once(
    writer: LakeWriter, lake: LocalLake, make_events
) -> None:
    events = make_events(300)
    first = writer.write("okta", events, OKTA, "polling")
    second = writer.write("okta", events, OKTA, "polling")
    assert second.events == 0 and second.duplicates == 300 and second.objects == 0
    assert set(lake_ids(lake.root).values()) == {1} and len(lake_ids(lake.root)) == 300
    assert first.objects == 1


def test_a_page_overlapping_landed_pages_puts_nothing_and_reports_no_new_events(
    writer: LakeWriter, lake: LocalLake, make_events
) -> None:
    """Pollers re-read a window's edge (Google's lag, Slack's inclusive oldest): a page
    whose ids all landed, in this object and in others, must not put any object again
    nor count its events as new in the run's metadata."""
    events = make_events(30)
    writer.write("okta", events[:10], OKTA, "polling")
    writer.write("okta", events[:20], OKTA, "polling")  # 10 old + 10 new: lands the 10
    before = {p: p.stat().st_mtime_ns for p in lake.root.rglob("*.ndjson.gz")}
    again = writer.write("okta", events[:20], OKTA, "polling")
    assert (again.events, again.objects, again.duplicates) == (0, 0, 20)
    assert {p: p.stat().st_mtime_ns for p in lake.root.rglob("*.ndjson.gz")} == before
    writer.write("okta", events, OKTA, "polling")
    assert len(lake_ids(lake.root)) == 30 and set(lake_ids(lake.root).values()) == {1}


def test_keys_are_a_function_of_the_batch(tmp_path: Path, make_events) -> None:
    keys = []
    for run in ("a", "b"):
        w = LakeWriter(
            LocalLake(tmp_path / run / "lake", tmp_path / run / "tmp"),
            SqliteDedupeStore(tmp_path / run / "s.db"),
        )
        res = w.write(
            "okta",
            list(reversed(make_events(50))) if run == "b" else make_events(50),
            OKTA,
            "polling",
        )
        keys.append(sorted(k for h in res.hours.values() for k in h.keys))
        w.close()
    assert keys[0] == keys[1]


def test_in_batch_duplicates_are_dropped(writer: LakeWriter, lake: LocalLake, make_events) -> None:
    events = make_events(10)
    res = writer.write("okta", events + events[:4], OKTA, "polling")
    assert res.events == 10 and res.duplicates == 4
    assert len(lake_ids(lake.root)) == 10


def test_objects_split_at_the_event_bound(lake: LocalLake, dedupe, make_events) -> None:
    w = LakeWriter(lake, dedupe, max_object_events=100)
    res = w.write("okta", make_events(250, step=timedelta(seconds=1)), OKTA, "polling")
    w.close()
    assert res.objects == 3
    assert sum(lake_ids(lake.root).values()) == 250


def test_objects_split_at_the_byte_bound(lake: LocalLake, dedupe, make_events) -> None:
    events = make_events(400, step=timedelta(seconds=1))
    for i, ev in enumerate(events):  # incompressible padding defeats the raw estimate
        ev["debugContext"]["debugData"]["pad"] = orjson.dumps(
            [hash((i, j)) for j in range(60)]
        ).decode()
    w = LakeWriter(lake, dedupe, max_object_bytes=64 * 1024)
    res = w.write("okta", events, OKTA, "polling")
    w.close()
    sizes = [p.stat().st_size for p in lake.root.rglob("*.gz")]
    assert res.objects == len(sizes) > 1
    assert max(sizes) <= 64 * 1024
    assert sum(lake_ids(lake.root).values()) == 400


def test_no_temp_file_in_the_lake_after_a_failed_put(
    lake: LocalLake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def broken_link(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    # a lake object is linked into place, never renamed over another (create-only)
    monkeypatch.setattr("lip_dagster.lake.backends.os.link", broken_link)
    key = (
        "source=okta/year=2026/month=03/day=01/hour=10/"
        "20260301T100000Z_0b5e6f3c-8d5a-5b1e-9c1d-2f3a4b5c6d7e.ndjson.gz"
    )
    from lip_dagster.errors import LakeWriteError

    with pytest.raises(LakeWriteError, match="No space left"):
        lake.put(key, b"x" * 100)
    assert [p for p in lake.root.rglob("*") if p.is_file()] == []
    assert list(lake.tmp_dir.iterdir()) == []


def test_a_put_is_durable_down_to_its_directory_entries(
    lake: LocalLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer marks an object landed once ``put`` returns; a power cut must not
    then lose the rename (or the new hour directory holding it), or the events would
    be marked landed and gone. Every directory whose entries changed is fsynced."""
    import os

    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr("lip_dagster.lake.backends.os.fsync", recording_fsync)
    key = (
        "source=okta/year=2026/month=03/day=01/hour=10/"
        "20260301T100000Z_0b5e6f3c-8d5a-5b1e-9c1d-2f3a4b5c6d7e.ndjson.gz"
    )
    lake.put(key, b"x" * 100)
    hour_dir = lake.root / "source=okta/year=2026/month=03/day=01/hour=10"
    # the object's directory, and the parent of every directory the put created
    for d in [hour_dir, *hour_dir.parents]:
        if d == lake.root.parent:
            break
        assert str(d) in synced, d
    synced.clear()
    lake.put(key.replace("100000Z_0", "100500Z_1"), b"y" * 100)  # same hour, one more
    assert str(hour_dir) in synced and str(hour_dir.parent) not in synced


def test_a_page_with_an_event_that_is_not_an_object_is_refused_whole(
    writer: LakeWriter, lake: LocalLake, make_events
) -> None:
    """A vendor page holding a bare string or list cannot get a ``_lip`` key; landing
    it would put a line no reader can parse into the lake."""
    from lip_dagster.errors import LakeWriteError

    for bad in ("a string", ["a", "list"]):
        with pytest.raises(LakeWriteError, match="not a JSON object"):
            writer.write("okta", [*make_events(3), bad], OKTA, "polling")  # type: ignore[list-item]
    assert [p for p in lake.root.rglob("*") if p.is_file()] == []


def test_a_writer_without_quarantine_refuses_a_page_it_cannot_hold_by_name(
    writer: LakeWriter, lake: LocalLake, make_events
) -> None:
    """orjson reads 1,024 levels and writes 254: the page is refused with a typed
    error naming the source and handing back the events, before anything lands,
    where it used to be the serializer's bare "Recursion limit reached"."""
    events = make_events(5)
    deep: dict = {"leaf": 1}
    for _ in range(300):
        deep = {"a": deep}
    events[2]["debugContext"] = deep
    with pytest.raises(UnwritableEvents, match=r"source 'okta'.*nested deeper than 254") as info:
        writer.write("okta", events, OKTA, "polling")
    assert info.value.events == [events[2]]
    assert not lake_lines(lake.root)
    rest = [e for i, e in enumerate(events) if i != 2]
    assert writer.write("okta", rest, OKTA, "polling").events == 4
