"""A crash between any two steps of landing yields at worst a retry: never a lost
event, never a duplicate in the lake (DESIGN §4)."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lip_dagster.errors import LakeWriteError
from lip_dagster.lake.backends import LocalLake
from lip_dagster.lake.writer import LakeWriter
from lip_dagster.state.aws import DynamoDedupeStore
from lip_dagster.state.base import DedupeKey, DedupeStore
from lip_dagster.state.sqlite import SqliteDedupeStore

from .conftest import OKTA, keys_of
from .test_writer import lake_ids


class Crash(Exception):
    """Stands in for the process dying at that line."""


class CrashingLake(LocalLake):
    def __init__(self, *a: object, mode: str, **kw: object) -> None:
        super().__init__(*a, **kw)  # type: ignore[arg-type]
        self.mode = mode
        self.armed = True

    def put(self, key: str, data: bytes) -> bool:
        if self.armed and self.mode == "before_put":
            self.armed = False
            raise Crash("died after claim, before put")
        written = super().put(key, data)
        if self.armed and self.mode == "after_put":
            self.armed = False
            raise Crash("died after put, before marking landed")
        return written


class CrashingDedupe(SqliteDedupeStore):
    def __init__(self, *a: object, mode: str, **kw: object) -> None:
        super().__init__(*a, **kw)  # type: ignore[arg-type]
        self.mode = mode
        self.armed = True

    def mark_landed(self, source: str, keys: Sequence[DedupeKey], object_key: str) -> None:
        if self.armed and self.mode == "mid_mark":
            # DynamoDB marks 25 ids per request: a kill can leave part of an object
            # marked landed and the rest pending
            self.armed = False
            super().mark_landed(source, keys[: len(keys) // 2], object_key)
            raise Crash("died while marking ids landed")
        super().mark_landed(source, keys, object_key)
        if self.armed and self.mode == "after_mark":
            self.armed = False
            raise Crash("died after marking landed, before the cursor commit")


@pytest.mark.parametrize("mode", ["before_put", "after_put", "mid_mark", "after_mark"])
@pytest.mark.parametrize("retry_split", [False, True])
def test_crash_then_retry_lands_each_event_once(
    tmp_path: Path, make_events, mode: str, retry_split: bool
) -> None:
    events = make_events(1200, step=timedelta(seconds=5))  # spans two hours
    lake = CrashingLake(tmp_path / "lake", tmp_path / "tmp", mode=mode)
    dedupe = CrashingDedupe(tmp_path / "s.db", mode=mode)
    w = LakeWriter(lake, dedupe, max_object_events=500)
    with pytest.raises((Crash, LakeWriteError), match=r"died|failed to land"):
        w.write("okta", events, OKTA, "polling")
    # the retry may cut the batch differently (a smaller page size after a restart)
    batches = [events[:700], events[700:]] if retry_split else [events]
    for b in batches:
        w.write("okta", b, OKTA, "polling")
    w.close()
    ids = lake_ids(lake.root)
    assert len(ids) == 1200, "an event was lost"
    assert max(ids.values()) == 1, "an event landed twice"
    # a third attempt changes nothing
    w2 = LakeWriter(lake, dedupe, max_object_events=500)
    again = w2.write("okta", events, OKTA, "polling")
    w2.close()
    assert again.events == 0 and again.duplicates == 1200
    assert lake_ids(lake.root) == ids


def test_an_object_partly_marked_is_never_rewritten_with_fewer_events(
    tmp_path: Path, make_events
) -> None:
    """A crash after putting K1; a later page overlapping part of K1 finds those ids
    pending under K1, which exists, and marks them landed(K1) one by one; then K1's
    own page is retried. Its candidates name K1 again, some now landed(K1), some
    still pending: rewriting K1 with only the pending ones would delete the others
    from the lake."""
    events = make_events(40)
    lake = CrashingLake(tmp_path / "lake", tmp_path / "tmp", mode="after_put")
    dedupe = SqliteDedupeStore(tmp_path / "s.db")
    w = LakeWriter(lake, dedupe)
    with pytest.raises(Crash):
        w.write("okta", events[:30], OKTA, "polling")
    overlap = w.write("okta", events[:10] + events[30:], OKTA, "polling")
    assert (overlap.events, overlap.duplicates) == (10, 10)
    retry = w.write("okta", events[:30], OKTA, "polling")
    w.close()
    assert (retry.events, retry.duplicates, retry.objects) == (0, 30, 0)
    ids = lake_ids(lake.root)
    assert len(ids) == 40, "an event was lost"
    assert max(ids.values()) == 1, "an event landed twice"
    states = dedupe.get("okta", keys_of(events, dedupe))
    assert {s.status for s in states.values()} == {"landed"}
    dedupe.close()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_landed_object_is_never_rewritten_with_other_ids_after_some_expired(
    tmp_path: Path, make_events
) -> None:
    """Ids 0-4 land in K0; the page of ids 0-19 then lands 5-19 in K. Once the ids
    of K0 have expired from the commit log, that page comes again (a backfill): its
    candidates name K again, 5-19 landed there, 0-4 unknown. K is kept as it is;
    0-4 go to an object of their own (here K0 again: same ids, same name)."""
    events = make_events(20)
    lake = LocalLake(tmp_path / "lake", tmp_path / "tmp")
    clock = Clock(datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp())
    dedupe = SqliteDedupeStore(tmp_path / "s.db", ttl_seconds=3600, clock=clock)
    w = LakeWriter(lake, dedupe)
    (k0,) = w.write("okta", events[:5], OKTA, "polling").hours["2026-03-01-10:00"].keys
    clock.now += 1000
    page = w.write("okta", events, OKTA, "polling")
    (k,) = page.hours["2026-03-01-10:00"].keys
    assert (page.events, page.duplicates) == (15, 5)
    before = (lake.root / k).read_bytes()
    clock.now += 3000
    assert dedupe.prune() == 5  # the ids of K0
    again = w.write("okta", events, OKTA, "polling")
    w.close()
    dedupe.close()
    assert (again.events, again.duplicates) == (5, 15)
    assert again.hours["2026-03-01-10:00"].keys == [k0]
    assert (lake.root / k).read_bytes() == before, "a landed object was rewritten"
    ids = lake_ids(lake.root)
    assert len(ids) == 20 and max(ids.values()) == 1


def test_a_mark_cut_short_on_dynamodb_then_a_retry_lands_each_event_once(
    tmp_path: Path, make_events, boto_session, moto_endpoint: str
) -> None:
    """DynamoDB marks 25 ids per request, so a kill can leave an object partly
    marked: the retry must neither rewrite that object with the rest nor lose any."""

    class CutShort(DynamoDedupeStore):
        armed = True

        def mark_landed(self, source: str, keys: Sequence[DedupeKey], object_key: str) -> None:
            if self.armed:
                self.armed = False
                super().mark_landed(source, keys[:25], object_key)
                raise Crash("died while marking ids landed")
            super().mark_landed(source, keys, object_key)

    source = f"t{uuid.uuid4().hex[:12]}"
    dedupe = CutShort(session=boto_session, endpoint_url=moto_endpoint)
    dedupe.ensure(source)
    lake = LocalLake(tmp_path / "lake", tmp_path / "tmp")
    events = make_events(60)
    w = LakeWriter(lake, dedupe)
    with pytest.raises(Crash):
        w.write(source, events, OKTA, "polling")
    retry = w.write(source, events, OKTA, "polling")
    w.close()
    assert (retry.events, retry.duplicates, retry.objects) == (0, 60, 0)
    ids = lake_ids(lake.root)
    assert len(ids) == 60 and max(ids.values()) == 1
    states = dedupe.get(source, keys_of(events, dedupe))
    assert {s.status for s in states.values()} == {"landed"}
    dedupe.close()


class CrashOnMarkOf:
    """A dedupe store wrapper that dies the first time ids are marked landed in an
    object other than one its own run put (the repair of an earlier crash)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.armed = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def mark_landed(self, source: str, keys: Sequence[DedupeKey], object_key: str) -> None:
        if self.armed:
            self.armed = False
            raise Crash("died before marking ids found in an earlier run's object")
        self.inner.mark_landed(source, keys, object_key)  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", ["sqlite", "dynamodb"])
def test_two_crashes_in_a_row_still_land_each_event_once(
    tmp_path: Path, make_events, backend: str, request: pytest.FixtureRequest
) -> None:
    """Run 1 puts K1 (ids 0-9) and dies before marking. Run 2's page (ids 0-19) finds
    0-9 pending under K1, which is in the lake, and dies before marking them
    landed(K1). Run 3's page (ids 0-29) must still find them in K1: had run 2's
    claim moved them to its own object first, run 3 would see them pending under an
    object never written and land them a second time."""
    events = make_events(30)
    source = "okta"
    if backend == "sqlite":
        inner: object = SqliteDedupeStore(tmp_path / "s.db")
    else:
        source = f"t{uuid.uuid4().hex[:12]}"
        inner = DynamoDedupeStore(
            session=request.getfixturevalue("boto_session"),
            endpoint_url=request.getfixturevalue("moto_endpoint"),
        )
        inner.ensure(source)  # type: ignore[attr-defined]
    dedupe = CrashOnMarkOf(inner)
    lake = CrashingLake(tmp_path / "lake", tmp_path / "tmp", mode="after_put")
    w = LakeWriter(lake, dedupe)  # type: ignore[arg-type]
    with pytest.raises(Crash):
        w.write(source, events[:10], OKTA, "polling")
    dedupe.armed = True
    with pytest.raises(Crash, match="earlier run's object"):
        w.write(source, events[:20], OKTA, "polling")
    third = w.write(source, events, OKTA, "polling")
    w.close()
    assert (third.events, third.duplicates) == (20, 10)
    ids = lake_ids(lake.root)
    assert len(ids) == 30, "an event was lost"
    assert max(ids.values()) == 1, "an event landed twice"
    inner.close()  # type: ignore[attr-defined]


def test_an_object_in_place_holding_other_events_is_never_overwritten(
    tmp_path: Path, make_events
) -> None:
    """Someone else's object under the key this run would put: the run fails naming
    it, writes nothing over it, and its events stay pending for a later run."""
    events = make_events(20, step=timedelta(seconds=5))
    lake = CrashingLake(tmp_path / "lake", tmp_path / "tmp", mode="after_put")
    dedupe = SqliteDedupeStore(tmp_path / "s.db")
    w = LakeWriter(lake, dedupe)
    with pytest.raises((Crash, LakeWriteError)):
        w.write("okta", events, OKTA, "polling")
    (path,) = lake.root.rglob("*.ndjson.gz")
    foreign = gzip.compress(b'{"_lip":{"id":"not-ours","hour_from":"event"}}\n')
    path.write_bytes(foreign)
    with pytest.raises(LakeWriteError, match="already in the lake without 20 of the 20"):
        w.write("okta", events, OKTA, "polling")
    w.close()
    assert path.read_bytes() == foreign


@pytest.mark.parametrize("backend", ["sqlite", "dynamodb"])
def test_a_backfill_older_than_the_ttl_of_a_page_that_overlapped_lands_instead_of_failing(
    tmp_path: Path, make_events, backend: str, request: pytest.FixtureRequest
) -> None:
    """Ids 0-4 land in K0; the page of ids 0-19 then lands 5-19 in K. Long after, every
    id has expired from the commit log and that hour is backfilled with the same page:
    its candidates name K again, which is in the lake with 5-19 only. K is kept as it
    is, 5-19 count as duplicates (they are in the lake once), and 0-4 land beside it.
    Before, the run failed on K every time it was retried, and the hour could never be
    backfilled again."""
    events = make_events(20)
    lake = LocalLake(tmp_path / "lake", tmp_path / "tmp")
    clock = Clock(datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp())
    dedupe: DedupeStore
    source = "okta"
    if backend == "sqlite":
        dedupe = SqliteDedupeStore(tmp_path / "s.db", ttl_seconds=3600, clock=clock)
    else:
        source = f"t{uuid.uuid4().hex[:12]}"
        dedupe = DynamoDedupeStore(
            session=request.getfixturevalue("boto_session"),
            endpoint_url=request.getfixturevalue("moto_endpoint"),
        )
        dedupe.ensure(source)
    w = LakeWriter(lake, dedupe)
    (k0,) = w.write(source, events[:5], OKTA, "polling").hours["2026-03-01-10:00"].keys
    (k,) = w.write(source, events, OKTA, "polling").hours["2026-03-01-10:00"].keys
    before = (lake.root / k).read_bytes()
    # every id expires (DynamoDB: what its TTL deletion does)
    if isinstance(dedupe, SqliteDedupeStore):
        clock.now += 10 * 24 * 3600
        assert dedupe.prune() == 20
    else:
        table = dedupe.table_name(source)
        for key in keys_of(events, dedupe):
            dedupe._client.delete_item(
                TableName=table, Key={"id": {"S": f"{key.bucket}#{key.event_id}"}}
            )
    assert dedupe.get(source, keys_of(events, dedupe)) == {}
    again = w.write(source, events, OKTA, "polling")
    assert (again.events, again.duplicates, again.objects) == (5, 15, 1)
    assert again.hours["2026-03-01-10:00"].keys == [k0]  # 0-4 again: same ids, same name
    assert (lake.root / k).read_bytes() == before, "a landed object was rewritten"
    ids = lake_ids(lake.root)
    assert len(ids) == 20 and max(ids.values()) == 1
    states = dedupe.get(source, keys_of(events, dedupe))
    assert {s.status for s in states.values()} == {"landed"} and len(states) == 20
    # and the next run of that page finds every id landed
    third = w.write(source, events, OKTA, "polling")
    assert (third.events, third.duplicates, third.objects) == (0, 20, 0)
    w.close()
    dedupe.close()


@pytest.mark.parametrize("crash_at", ["marking_the_held", "putting_the_rest", "marking_the_rest"])
def test_a_crash_while_landing_beside_an_object_found_in_place_then_a_retry_lands_each_once(
    tmp_path: Path, make_events, crash_at: str
) -> None:
    """As above, the process dying at each step of landing the ids an object found in
    place lacks: the retry (with the same page, then with another) lands each once."""
    events = make_events(20)
    clock = Clock(datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp())
    keys: dict[str, str] = {}

    class Dying(SqliteDedupeStore):
        armed = False

        def mark_landed(self, source: str, ks: Sequence[DedupeKey], object_key: str) -> None:
            if self.armed and (
                (crash_at == "marking_the_held" and object_key == keys["k"])
                or (crash_at == "marking_the_rest" and object_key != keys["k"])
            ):
                self.armed = False
                raise Crash("died while landing beside an object in place")
            super().mark_landed(source, ks, object_key)

    class DyingLake(LocalLake):
        armed = False

        def put(self, key: str, data: bytes) -> bool:
            if self.armed and crash_at == "putting_the_rest" and key != keys["k"]:
                self.armed = False
                raise Crash("died before putting the rest")
            return super().put(key, data)

    lake = DyingLake(tmp_path / "lake", tmp_path / "tmp")
    dedupe = Dying(tmp_path / "s.db", ttl_seconds=3600, clock=clock)
    w = LakeWriter(lake, dedupe)
    w.write("okta", events[:5], OKTA, "polling")
    (keys["k"],) = w.write("okta", events, OKTA, "polling").hours["2026-03-01-10:00"].keys
    clock.now += 10 * 24 * 3600
    assert dedupe.prune() == 20
    dedupe.armed = lake.armed = True
    with pytest.raises((Crash, LakeWriteError)):
        w.write("okta", events, OKTA, "polling")
    w.write("okta", events[3:], OKTA, "polling")  # another page first
    w.write("okta", events, OKTA, "polling")
    w.close()
    dedupe.close()
    ids = lake_ids(lake.root)
    assert len(ids) == 20, "an event was lost"
    assert max(ids.values()) == 1, "an event landed twice"
