"""An object that left the lake (the on-call moved a damaged one out, as the
``lake_content`` check tells them to, then re-ran the hour) must not leave its
events marked landed and missing: the re-run lands them again, once. Pages that
repeat ids whose objects are still there put nothing, at one look per object."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from lip_dagster.errors import LakeReadError, LakeWriteError
from lip_dagster.lake.backends import LocalLake
from lip_dagster.lake.writer import LakeWriter
from lip_dagster.state.base import DedupeStore, IdState
from lip_dagster.state.sqlite import SqliteDedupeStore
from lip_dagster_tests.state.test_dedupe_stores import marked_whole

from .conftest import OKTA, keys_of
from .test_order_of_effects import Crash, CrashingLake
from .test_writer import lake_ids

HOUR = "2026-03-01-10:00"


class CountingLake(LocalLake):
    """A local lake that records every existence check (a HEAD on S3)."""

    def __init__(self, root: Path, tmp_dir: Path) -> None:
        super().__init__(root, tmp_dir)
        self.looked: list[str] = []

    def exists(self, key: str) -> bool:
        self.looked.append(key)
        return super().exists(key)


class UnsureLake(LocalLake):
    """A local lake whose existence checks fail (a disk error; on S3, a HEAD that
    timed out or was refused)."""

    broken = True

    def exists(self, key: str) -> bool:
        if self.broken:
            raise OSError(errno.EIO, "Input/output error")
        return super().exists(key)


def remove(lake: LocalLake, key: str) -> None:
    (lake.root / key).unlink()


def test_a_page_whose_object_was_removed_lands_again_when_rerun(
    dedupe_store: tuple[DedupeStore, str], tmp_path: Path, make_events
) -> None:
    dedupe, source = dedupe_store
    lake = LocalLake(tmp_path / "lake", tmp_path / "tmp")
    events = make_events(60)
    w = LakeWriter(lake, dedupe)
    (key,) = w.write(source, events, OKTA, "polling").hours[HOUR].keys
    remove(lake, key)
    rerun = w.write(source, events, OKTA, "polling")
    assert (rerun.events, rerun.duplicates, rerun.objects) == (60, 0, 1)
    ids = lake_ids(lake.root)
    assert len(ids) == 60 and max(ids.values()) == 1
    assert dedupe.get(source, keys_of(events, dedupe)) == {
        k: IdState("landed", key) for k in keys_of(events, dedupe)
    }
    # and once back, it is whole again: the next repeat puts nothing
    again = w.write(source, events, OKTA, "polling")
    w.close()
    assert (again.events, again.duplicates, again.objects) == (0, 60, 0)
    assert lake_ids(lake.root) == ids


def test_a_page_partly_in_a_removed_object_lands_only_what_the_lake_lacks(
    dedupe_store: tuple[DedupeStore, str], tmp_path: Path, make_events
) -> None:
    """Ids 0-9 land in K_a, 10-19 in K_b; K_a is removed. A page of ids 0-29 (a
    wider window, so another object name) lands 0-9 again and 20-29 for the first
    time, and counts 10-19, still in K_b, as duplicates."""
    dedupe, source = dedupe_store
    lake = LocalLake(tmp_path / "lake", tmp_path / "tmp")
    events = make_events(30)
    w = LakeWriter(lake, dedupe)
    (k_a,) = w.write(source, events[:10], OKTA, "polling").hours[HOUR].keys
    (k_b,) = w.write(source, events[10:20], OKTA, "polling").hours[HOUR].keys
    remove(lake, k_a)
    page = w.write(source, events, OKTA, "polling")
    w.close()
    (k_c,) = page.hours[HOUR].keys
    assert (page.events, page.duplicates, page.objects) == (20, 10, 1)
    ids = lake_ids(lake.root)
    assert len(ids) == 30 and max(ids.values()) == 1
    assert {p.relative_to(lake.root).as_posix() for p in lake.root.rglob("*.gz")} == {k_b, k_c}
    states = dedupe.get(source, keys_of(events, dedupe))
    where = [states[k].object_key for k in keys_of(events, dedupe)]
    assert where == [k_c] * 10 + [k_b] * 10 + [k_c] * 10
    assert {s.status for s in states.values()} == {"landed"}


def test_repeated_ids_whose_objects_are_in_the_lake_put_nothing_at_one_look_per_object(
    tmp_path: Path, dedupe: SqliteDedupeStore, make_events
) -> None:
    lake = CountingLake(tmp_path / "lake", tmp_path / "tmp")
    events = make_events(20)
    w = LakeWriter(lake, dedupe)
    (k_a,) = w.write("okta", events[:10], OKTA, "polling").hours[HOUR].keys
    (k_b,) = w.write("okta", events[10:], OKTA, "polling").hours[HOUR].keys
    assert lake.looked == [], "a page of new ids paid for a look in the lake"
    before = {p: p.stat().st_mtime_ns for p in lake.root.rglob("*.gz")}
    overlap = w.write("okta", events + events[:5], OKTA, "polling")
    assert (overlap.events, overlap.duplicates, overlap.objects) == (0, 25, 0)
    assert sorted(lake.looked) == sorted([k_a, k_b])
    lake.looked.clear()
    same = w.write("okta", events[:10], OKTA, "polling")  # the very object K_a names
    w.close()
    assert (same.events, same.duplicates, same.objects) == (0, 10, 0)
    assert lake.looked == [k_a]
    assert {p: p.stat().st_mtime_ns for p in lake.root.rglob("*.gz")} == before


def test_a_lake_that_cannot_say_whether_an_object_exists_fails_the_write(
    tmp_path: Path, dedupe: SqliteDedupeStore, make_events
) -> None:
    """Taken as "absent", a failed check would land the events a second time; it
    fails the write instead (the run fails before its cursor moves), and a later
    run that can look decides."""
    lake = UnsureLake(tmp_path / "lake", tmp_path / "tmp")
    events = make_events(10)
    w = LakeWriter(lake, dedupe)
    (key,) = w.write("okta", events, OKTA, "polling").hours[HOUR].keys
    with pytest.raises(LakeWriteError, match="Input/output error"):
        w.write("okta", events, OKTA, "polling")
    assert lake_ids(lake.root) == {e["uuid"]: 1 for e in events}
    assert dedupe.get("okta", keys_of(events, dedupe)) == {
        k: IdState("landed", key) for k in keys_of(events, dedupe)
    }
    lake.broken = False
    again = w.write("okta", events, OKTA, "polling")
    w.close()
    assert (again.events, again.duplicates) == (0, 10)
    assert lake_ids(lake.root) == {e["uuid"]: 1 for e in events}


def test_ids_landed_through_a_whole_object_mark_land_again_once_their_object_is_gone(
    tmp_path: Path, dedupe: SqliteDedupeStore, make_events
) -> None:
    """SQLite marks an object landed with one row, not a row per id. Its ids, once
    the object is gone, land again like ids marked one by one, and read landed
    under the new object after it was put."""
    lake = LocalLake(tmp_path / "lake", tmp_path / "tmp")
    events = make_events(40)
    page = keys_of(events, dedupe)
    w = LakeWriter(lake, dedupe)
    (key,) = w.write("okta", events[:30], OKTA, "polling").hours[HOUR].keys
    assert marked_whole(dedupe, "okta", page[:30])
    remove(lake, key)
    res = w.write("okta", events, OKTA, "polling")
    w.close()
    (new_key,) = res.hours[HOUR].keys
    assert (res.events, res.duplicates) == (40, 0)
    assert [p.relative_to(lake.root).as_posix() for p in lake.root.rglob("*.gz")] == [new_key]
    assert lake_ids(lake.root) == {e["uuid"]: 1 for e in events}
    assert dedupe.get("okta", page) == {k: IdState("landed", new_key) for k in page}


@pytest.mark.parametrize("mode", ["before_put", "after_put"])
@pytest.mark.parametrize("wider", [False, True], ids=["same page", "wider page"])
def test_a_crash_while_landing_again_then_a_retry_lands_each_event_once(
    tmp_path: Path, dedupe: SqliteDedupeStore, make_events, mode: str, wider: bool
) -> None:
    """The ids moved back to pending before the put: a run that dies after the move
    leaves them pending under an object not written (or written and not marked),
    which the next run lands or marks, as after any other crash."""
    lake = CrashingLake(tmp_path / "lake", tmp_path / "tmp", mode=mode)
    lake.armed = False
    events = make_events(40)
    first = events[:30]
    w = LakeWriter(lake, dedupe)
    (key,) = w.write("okta", first, OKTA, "polling").hours[HOUR].keys
    remove(lake, key)
    page = events if wider else first
    lake.armed = True
    with pytest.raises((Crash, LakeWriteError), match=r"died|failed to land"):
        w.write("okta", page, OKTA, "polling")
    w.write("okta", page, OKTA, "polling")
    again = w.write("okta", page, OKTA, "polling")
    w.close()
    assert (again.events, again.duplicates) == (0, len(page))
    ids = lake_ids(lake.root)
    assert len(ids) == len(page), "an event was lost"
    assert max(ids.values()) == 1, "an event landed twice"
    states = dedupe.get("okta", keys_of(page, dedupe))
    assert {s.status for s in states.values()} == {"landed"}


def test_a_local_lake_that_cannot_look_says_so_instead_of_absent(tmp_path: Path) -> None:
    """Only a missing file is "absent"; a path the system cannot resolve (here a
    symlink loop where an hour directory should be) is an error."""
    lake = LocalLake(tmp_path / "lake", tmp_path / "tmp")
    hour_dir = lake.root / "source=okta/year=2026/month=03/day=01/hour=10"
    hour_dir.parent.mkdir(parents=True)
    hour_dir.symlink_to(hour_dir)
    name = "20260301T100000Z_00000000-0000-5000-8000-000000000001.ndjson.gz"
    with pytest.raises(LakeReadError, match="could not check whether lake object"):
        lake.exists(f"source=okta/year=2026/month=03/day=01/hour=10/{name}")
    assert lake.exists(f"source=okta/year=2026/month=03/day=01/hour=11/{name}") is False
