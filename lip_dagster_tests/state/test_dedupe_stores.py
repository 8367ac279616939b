"""Dedupe store (the commit log) contract, run against SQLite and against DynamoDB on
the local moto server: accepted -> pending(K) -> landed(K), as base.py documents."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lip_dagster.errors import StateError
from lip_dagster.state.aws import DynamoDedupeStore
from lip_dagster.state.base import DedupeKey, DedupeStore, IdState, KeyResolution, time_bucket
from lip_dagster.state.sqlite import SqliteDedupeStore

H1 = "2024-05-01-10:00"
H2 = "2024-05-01-11:00"
K1 = "source=x/year=2024/month=05/day=01/hour=10/20240501T100000Z_aaaa.ndjson.gz"
K2 = "source=x/year=2024/month=05/day=01/hour=10/20240501T100500Z_bbbb.ndjson.gz"


def keys(n: int, hour: str = H1) -> list[DedupeKey]:
    return [DedupeKey(hour, f"evt-{uuid.uuid4().hex}") for _ in range(n)]


def test_accept_tells_new_ids_from_duplicates(dedupe_store: tuple[DedupeStore, str]) -> None:
    dedupe, source = dedupe_store
    a, b, c = keys(3)
    assert dedupe.accept(source, [a, b]) == [True, True]
    # A redelivery of b, and c twice in one request: only the first c is new.
    assert dedupe.accept(source, [b, c, c]) == [False, True, False]
    assert dedupe.get(source, [a, b, c]) == {
        a: IdState("accepted"),
        b: IdState("accepted"),
        c: IdState("accepted"),
    }


def test_the_same_event_id_in_another_hour_or_source_is_another_id(
    dedupe_store: tuple[DedupeStore, str],
) -> None:
    dedupe, source = dedupe_store
    assert dedupe.accept(source, [DedupeKey(H1, "e1")]) == [True]
    assert dedupe.accept(source, [DedupeKey(H2, "e1")]) == [True]
    assert dedupe.accept(source, [DedupeKey(H1, "e1")]) == [False]


def test_a_clean_claim_reports_nothing_and_leaves_ids_pending(
    dedupe_store: tuple[DedupeStore, str],
) -> None:
    dedupe, source = dedupe_store
    fresh = keys(3)
    accepted = keys(2)
    dedupe.accept(source, accepted)
    assert dedupe.claim(source, fresh + accepted, K1) == {}
    assert dedupe.get(source, fresh + accepted) == {
        k: IdState("pending", K1) for k in fresh + accepted
    }


def test_claiming_again_under_the_same_object_key_is_idempotent(
    dedupe_store: tuple[DedupeStore, str],
) -> None:
    dedupe, source = dedupe_store
    batch = keys(4)
    assert dedupe.claim(source, batch, K1) == {}
    assert dedupe.claim(source, batch, K1) == {}
    assert dedupe.get(source, batch) == {k: IdState("pending", K1) for k in batch}


def test_a_claim_reports_ids_pending_under_another_object_and_leaves_them_there(
    dedupe_store: tuple[DedupeStore, str],
) -> None:
    """The writer must look for K1 before they move: if K1 is in the lake, they are
    in it."""
    dedupe, source = dedupe_store
    old, new = keys(2), keys(2)
    dedupe.claim(source, old, K1)
    assert dedupe.claim(source, old + new, K2) == {k: IdState("pending", K1) for k in old}
    assert dedupe.get(source, old + new) == {
        **{k: IdState("pending", K1) for k in old},
        **{k: IdState("pending", K2) for k in new},
    }


def test_reclaim_moves_only_ids_still_pending_under_the_object_named(
    dedupe_store: tuple[DedupeStore, str],
) -> None:
    dedupe, source = dedupe_store
    stay, landed, other = keys(3), keys(2), keys(2)
    dedupe.claim(source, stay + landed, K1)
    dedupe.mark_landed(source, landed, K1)
    dedupe.claim(source, other, "elsewhere")
    moved = dedupe.reclaim(source, stay + landed + other, K1, K2)
    assert sorted(moved) == sorted(stay)
    assert dedupe.get(source, stay + landed + other) == {
        **{k: IdState("pending", K2) for k in stay},
        **{k: IdState("landed", K1) for k in landed},
        **{k: IdState("pending", "elsewhere") for k in other},
    }
    assert dedupe.reclaim(source, stay, K1, K2) == []  # compare-and-set: already moved
    dedupe.mark_landed(source, stay, K2)
    assert dedupe.get(source, stay) == {k: IdState("landed", K2) for k in stay}


def test_reclaim_from_landed_moves_only_ids_still_landed_under_the_object_named(
    dedupe_store: tuple[DedupeStore, str],
) -> None:
    """The writer found object K1 gone from the lake: the ids marked landed there
    move to the object it is writing, compare-and-set on landed(K1)."""
    dedupe, source = dedupe_store
    gone, pending, elsewhere, unknown = keys(3), keys(2), keys(2), keys(1)
    dedupe.claim(source, gone + pending, K1)
    dedupe.mark_landed(source, gone, K1)
    dedupe.mark_landed(source, elsewhere, "elsewhere")
    moved = dedupe.reclaim(
        source, gone + pending + elsewhere + unknown, K1, K2, from_status="landed"
    )
    assert sorted(moved) == sorted(gone)
    assert dedupe.get(source, gone + pending + elsewhere + unknown) == {
        **{k: IdState("pending", K2) for k in gone},
        **{k: IdState("pending", K1) for k in pending},
        **{k: IdState("landed", "elsewhere") for k in elsewhere},
    }
    # stale: they are no longer landed(K1), so nothing moves, whoever asks
    assert dedupe.reclaim(source, gone, K1, K2, from_status="landed") == []
    assert dedupe.reclaim(source, gone, K1, "K3", from_status="landed") == []
    assert dedupe.get(source, gone) == {k: IdState("pending", K2) for k in gone}
    dedupe.mark_landed(source, gone, K2)
    assert dedupe.get(source, gone) == {k: IdState("landed", K2) for k in gone}
    assert dedupe.claim(source, gone, K1) == {k: IdState("landed", K2) for k in gone}
    # and pending(K1) ids are not landed ones
    assert dedupe.reclaim(source, pending, K1, K2, from_status="landed") == []


def test_reclaim_from_landed_into_the_same_object_reads_pending_until_marked(
    dedupe_store: tuple[DedupeStore, str],
) -> None:
    """A page re-run after its object was removed names that object again."""
    dedupe, source = dedupe_store
    batch = keys(4)
    dedupe.claim(source, batch, K1)
    dedupe.mark_landed(source, batch, K1)
    assert sorted(dedupe.reclaim(source, batch, K1, K1, from_status="landed")) == sorted(batch)
    assert dedupe.get(source, batch) == {k: IdState("pending", K1) for k in batch}
    assert dedupe.claim(source, batch, K1) == {}  # pending here: the object's retry
    dedupe.mark_landed(source, batch, K1)
    assert dedupe.get(source, batch) == {k: IdState("landed", K1) for k in batch}


def test_landed_ids_are_reported_and_never_reclaimed(dedupe_store: tuple[DedupeStore, str]) -> None:
    dedupe, source = dedupe_store
    landed, other = keys(3), keys(2)
    dedupe.claim(source, landed, K1)
    dedupe.mark_landed(source, landed, K1)
    assert dedupe.get(source, landed) == {k: IdState("landed", K1) for k in landed}
    # The retry of the same batch and a different batch both see "landed(K1)".
    assert dedupe.claim(source, landed, K1) == {k: IdState("landed", K1) for k in landed}
    assert dedupe.claim(source, landed + other, K2) == {k: IdState("landed", K1) for k in landed}
    state = dedupe.get(source, landed + other)
    assert {k: state[k] for k in landed} == {k: IdState("landed", K1) for k in landed}
    assert {k: state[k] for k in other} == {k: IdState("pending", K2) for k in other}
    assert dedupe.accept(source, landed) == [False] * 3


def test_mark_landed_without_a_claim_still_records_the_ids(
    dedupe_store: tuple[DedupeStore, str],
) -> None:
    dedupe, source = dedupe_store
    batch = keys(2)
    dedupe.mark_landed(source, batch, K1)
    assert dedupe.get(source, batch) == {k: IdState("landed", K1) for k in batch}


def test_get_omits_unknown_ids_and_empty_calls_do_nothing(
    dedupe_store: tuple[DedupeStore, str],
) -> None:
    dedupe, source = dedupe_store
    known, unknown = keys(1), keys(2)
    dedupe.accept(source, known)
    assert dedupe.get(source, known + unknown) == {known[0]: IdState("accepted")}
    assert dedupe.accept(source, []) == []
    assert dedupe.claim(source, [], K1) == {}
    dedupe.mark_landed(source, [], K1)
    assert dedupe.get(source, []) == {}


def test_sources_do_not_see_each_other(
    dedupe_store: tuple[DedupeStore, str], tmp_path: Path
) -> None:
    dedupe, source = dedupe_store
    other = f"t{uuid.uuid4().hex[:12]}"
    ensure = getattr(dedupe, "ensure", None)
    if ensure is not None:
        ensure(other)
    key = DedupeKey(H1, "shared-id")
    dedupe.mark_landed(source, [key], K1)
    assert dedupe.get(other, [key]) == {}
    assert dedupe.accept(other, [key]) == [True]


def test_a_page_spanning_hours_and_batch_limits(dedupe_store: tuple[DedupeStore, str]) -> None:
    # 130 ids over two hours: more than one DynamoDB BatchGetItem (100) and several
    # BatchWriteItem (25) chunks.
    dedupe, source = dedupe_store
    page = keys(70, H1) + keys(60, H2)
    dedupe.accept(source, page[:10])
    assert dedupe.claim(source, page, K1) == {}
    dedupe.mark_landed(source, page[:100], K1)
    state = dedupe.get(source, page)
    assert len(state) == 130
    assert all(state[k] == IdState("landed", K1) for k in page[:100])
    assert all(state[k] == IdState("pending", K1) for k in page[100:])
    retry = dedupe.claim(source, page, K2)
    assert retry == {
        **{k: IdState("landed", K1) for k in page[:100]},
        **{k: IdState("pending", K1) for k in page[100:]},
    }


def test_two_writers_claiming_the_same_ids_each_id_goes_to_one(
    dedupe_store: tuple[DedupeStore, str],
) -> None:
    dedupe, source = dedupe_store
    batch = keys(40)
    results: dict[str, dict[DedupeKey, IdState]] = {}
    barrier = threading.Barrier(2)

    def claim(object_key: str) -> None:
        barrier.wait()
        results[object_key] = dedupe.claim(source, batch, object_key)

    threads = [threading.Thread(target=claim, args=(k,)) for k in (K1, K2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = dedupe.get(source, batch)
    for key in batch:
        winner = final[key].object_key
        assert final[key].status == "pending" and winner in (K1, K2)
        loser = K2 if winner == K1 else K1
        # Whoever claimed first holds the id; the other was told so, and took nothing.
        assert results[loser].get(key) == IdState("pending", winner)
        assert key not in results[winner]


# ---------------------------------------------------------------------- SQLite only


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def hour_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d-%H:00")


def second_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d-%H:%M:%S")


@pytest.mark.parametrize("bucket_of", [hour_of, second_of])
def test_prune_removes_expired_ids_only(tmp_path: Path, bucket_of: Callable[[float], str]) -> None:
    start = datetime(2024, 5, 1, 10, 5, tzinfo=UTC).timestamp()
    clock = FakeClock(start)
    dedupe = SqliteDedupeStore(tmp_path / "state.db", ttl_seconds=3600, clock=clock)
    old, refreshed = keys(5, bucket_of(start)), keys(3, bucket_of(start))
    other_source = keys(2, bucket_of(start))
    dedupe.claim("okta", old + refreshed, K1)
    dedupe.accept("github", other_source)
    clock.now = start + 1800
    young = keys(4, bucket_of(clock.now))
    dedupe.claim("okta", young, K2)
    dedupe.mark_landed("okta", refreshed, K2)  # a write renews the 1-hour lease

    assert dedupe.prune(now=start + 3599) == 0
    assert dedupe.prune(now=start + 3600) == 5 + 2
    remaining = dedupe.get("okta", old + refreshed + young)
    assert set(remaining) == set(refreshed + young)
    # Surviving ids still know their object key after the old object was pruned.
    assert all(remaining[k] == IdState("landed", K2) for k in refreshed)
    assert all(remaining[k] == IdState("pending", K2) for k in young)
    assert dedupe.get("github", other_source) == {}
    assert dedupe.accept("okta", old) == [True] * 5  # expired ids are new again

    clock.now = start + 10 * 3600
    assert dedupe.prune() == 3 + 4 + 5
    assert dedupe.get("okta", old + refreshed + young) == {}


def test_prune_keeps_an_object_key_while_an_unexpired_id_points_at_it(tmp_path: Path) -> None:
    start = datetime(2024, 5, 1, 10, 5, tzinfo=UTC).timestamp()
    clock = FakeClock(start)
    dedupe = SqliteDedupeStore(tmp_path / "state.db", ttl_seconds=3600, clock=clock)
    early, late = keys(2, hour_of(start)), keys(2, hour_of(start))
    dedupe.claim("okta", early, K1)
    clock.now = start + 3000
    dedupe.claim("okta", late, K1)  # same object, later write
    assert dedupe.prune(now=start + 3600) == 2
    assert dedupe.get("okta", late) == {k: IdState("pending", K1) for k in late}


@pytest.mark.parametrize("bucket_of", [hour_of, second_of])
def test_prune_walks_many_ids_in_chunks(tmp_path: Path, bucket_of: Callable[[float], str]) -> None:
    start = datetime(2024, 5, 1, 10, 5, tzinfo=UTC).timestamp()
    clock = FakeClock(start)
    dedupe = SqliteDedupeStore(tmp_path / "state.db", ttl_seconds=60, clock=clock)
    batch = keys(6000, bucket_of(start)) + keys(6000, bucket_of(start + 3600))
    dedupe.claim("okta", batch, K1)
    clock.now = start + 30
    keep = keys(100, bucket_of(start))
    dedupe.claim("okta", keep, K2)
    assert dedupe.prune(now=start + 61) == 12000
    assert len(dedupe.get("okta", batch + keep)) == 100


@pytest.mark.parametrize(
    "bucket",
    [
        "2024-05-01T10",
        "2024-05-01-10:05",  # a minute is neither an hour nor a second
        "2024-05-01-10:00\n2024-05-01-11:00",  # two keys' times in one
        "\u0662\u0660\u0662\u0664-05-01-10:00",  # digits, but not ASCII ones
    ],
)
def test_a_malformed_key_time_is_refused(tmp_path: Path, bucket: str) -> None:
    """A key's time decides where it sorts, and pruning relies on that order."""
    dedupe = SqliteDedupeStore(tmp_path / "state.db")
    good = DedupeKey("2024-05-01-10:05:07", "e0")
    with pytest.raises(StateError, match="YYYY-MM-DD-HH:00"):
        dedupe.claim("okta", [good, DedupeKey(bucket, "e1")], K1)
    assert dedupe.get("okta", [good]) == {}


def test_several_stores_share_one_database_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first, second = SqliteDedupeStore(path), SqliteDedupeStore(path)
    batch = keys(3)
    first.mark_landed("okta", batch, K1)
    assert second.claim("okta", batch, K2) == {k: IdState("landed", K1) for k in batch}
    first.close()
    second.close()
    # A closed store reopens on next use rather than failing.
    assert first.get("okta", batch) == {k: IdState("landed", K1) for k in batch}


def _open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


def test_threads_that_ended_do_not_keep_database_files_open(tmp_path: Path) -> None:
    """The Dagster daemon and the receiver run each job on new threads for days: a
    connection per finished thread would grow file handles and memory without end."""
    dedupe = SqliteDedupeStore(tmp_path / "state.db")
    ids = keys(41)
    try:

        def one_job(n: int) -> None:
            dedupe.accept("okta", ids[n : n + 1])

        worker = threading.Thread(target=one_job, args=(0,))
        worker.start()
        worker.join()
        baseline = _open_fds()
        for n in range(1, 41):
            worker = threading.Thread(target=one_job, args=(n,))
            worker.start()
            worker.join()
        assert _open_fds() <= baseline + 3
        assert len(dedupe.get("okta", ids)) == 41
    finally:
        dedupe.close()


def test_a_state_db_written_before_whole_object_marks_keeps_its_meaning(tmp_path: Path) -> None:
    """Ids marked landed one by one, in the layout of earlier versions (no table of
    objects marked whole), read and behave as they always did."""
    import sqlite3

    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE lip_dedupe (source TEXT NOT NULL, hour TEXT NOT NULL,
            event_id TEXT NOT NULL, status INTEGER NOT NULL, object_id INTEGER,
            expires_at REAL NOT NULL, PRIMARY KEY (source, hour, event_id)) WITHOUT ROWID;
        CREATE TABLE lip_dedupe_object (id INTEGER PRIMARY KEY,
            object_key TEXT NOT NULL UNIQUE, max_hour TEXT NOT NULL, expires_at REAL NOT NULL);
        """
    )
    expires = datetime.now(UTC).timestamp() + 3600
    conn.execute("INSERT INTO lip_dedupe_object VALUES (1, ?, ?, ?)", (K1, H1, expires))
    rows = [("okta", H1, "landed-1", 2, 1), ("okta", H1, "pending-1", 1, 1)]
    rows.append(("okta", H1, "accepted-1", 0, None))
    conn.executemany(
        "INSERT INTO lip_dedupe VALUES (?, ?, ?, ?, ?, ?)", [(*r, expires) for r in rows]
    )
    conn.commit()
    conn.close()
    dedupe = SqliteDedupeStore(path)
    landed, pending, accepted = (DedupeKey(H1, r[2]) for r in rows)
    assert dedupe.get("okta", [landed, pending, accepted]) == {
        landed: IdState("landed", K1),
        pending: IdState("pending", K1),
        accepted: IdState("accepted"),
    }
    new = keys(2)
    assert dedupe.claim("okta", [landed, pending, accepted, *new], K2) == {
        landed: IdState("landed", K1),
        pending: IdState("pending", K1),
    }
    dedupe.mark_landed("okta", [pending, accepted, *new], K2)
    assert dedupe.get("okta", [landed, pending, accepted, *new]) == {
        landed: IdState("landed", K1),
        **{k: IdState("landed", K2) for k in (pending, accepted, *new)},
    }
    dedupe.close()


def test_a_mark_after_a_restart_still_marks_every_id(tmp_path: Path) -> None:
    """The claim and the mark of one object in different processes (a restart in
    between, or another worker): the mark cannot lean on the claim, and marks each id."""
    path = tmp_path / "state.db"
    first, second = SqliteDedupeStore(path), SqliteDedupeStore(path)
    batch, other = keys(30), keys(5)
    first.claim("okta", batch + other, K1)
    second.mark_landed("okta", batch, K1)
    assert first.get("okta", batch + other) == {
        **{k: IdState("landed", K1) for k in batch},
        **{k: IdState("pending", K1) for k in other},
    }
    first.close()
    second.close()


def test_an_id_claimed_into_an_object_after_its_mark_is_pending_not_landed(
    tmp_path: Path,
) -> None:
    """An object marked landed whole covers the ids that were in it, not an id a
    later claim under the same key puts there (one whose row had expired, say)."""
    clock = FakeClock(datetime(2024, 5, 1, 10, 5, tzinfo=UTC).timestamp())
    dedupe = SqliteDedupeStore(tmp_path / "state.db", clock=clock)
    batch, late = keys(20), keys(1)
    assert dedupe.claim("okta", batch, K1) == {}
    dedupe.mark_landed("okta", batch, K1)
    clock.now += 60
    assert dedupe.claim("okta", batch + late, K1) == {k: IdState("landed", K1) for k in batch}
    assert dedupe.get("okta", late) == {late[0]: IdState("pending", K1)}
    dedupe.mark_landed("okta", late, K1)
    assert dedupe.get("okta", batch + late) == {k: IdState("landed", K1) for k in batch + late}
    dedupe.close()


def marked_whole(dedupe: SqliteDedupeStore, source: str, batch: list[DedupeKey]) -> bool:
    """Whether every id of ``batch`` reads landed only through its object's mark:
    its own row still says pending, and that object has a whole-object mark."""
    conn = dedupe._db.connection()
    for key in batch:
        status, object_id = conn.execute(
            "SELECT status, object_id FROM lip_dedupe WHERE source = ? AND hour = ? "
            "AND event_id = ?",
            (source, key.bucket, key.event_id),
        ).fetchone()
        mark = conn.execute(
            "SELECT 1 FROM lip_dedupe_landed WHERE object_id = ?", (object_id,)
        ).fetchone()
        if status != 1 or mark is None:
            return False
    return True


@pytest.mark.parametrize("to", [K2, K1], ids=["another object", "the same object"])
def test_ids_landed_through_a_whole_object_mark_move_and_land_again(
    tmp_path: Path, to: str
) -> None:
    """Ids landed through the mark of their object (not a row each) move like ids
    marked one by one: to another object, or back into the same one (a re-run of
    the page). They then read pending there, at the same instant of the clock too,
    and landed once that object is marked; ids of the object not moved stay
    landed."""
    clock = FakeClock(datetime(2024, 5, 1, 10, 5, tzinfo=UTC).timestamp())
    dedupe = SqliteDedupeStore(tmp_path / "state.db", clock=clock)
    moving, staying = keys(5), keys(3)
    assert dedupe.claim("okta", moving + staying, K1) == {}
    dedupe.mark_landed("okta", moving + staying, K1)
    assert marked_whole(dedupe, "okta", moving + staying)
    assert dedupe.claim("okta", moving, to) == {k: IdState("landed", K1) for k in moving}
    moved = dedupe.reclaim("okta", moving, K1, to, from_status="landed")
    assert sorted(moved) == sorted(moving)
    assert dedupe.get("okta", moving + staying) == {
        **{k: IdState("pending", to) for k in moving},
        **{k: IdState("landed", K1) for k in staying},
    }
    assert dedupe.reclaim("okta", moving, K1, to, from_status="landed") == []
    dedupe.mark_landed("okta", moving, to)
    assert dedupe.get("okta", moving + staying) == {
        **{k: IdState("landed", to) for k in moving},
        **{k: IdState("landed", K1) for k in staying},
    }
    dedupe.close()


# ---------------------------------------------------------------------- DynamoDB only


def test_dynamodb_pages_that_repeat_landed_ids_stop_paying_for_failed_writes(
    boto_session, moto_endpoint: str
) -> None:
    """A conditional write that fails still costs a write unit. Once a page of a
    source turned out mostly known (Google's collector re-reads a 30-minute
    overlap), the next claims read the ids first and write only what can succeed;
    the outcome is the same."""
    source = f"t{uuid.uuid4().hex[:12]}"
    dedupe = DynamoDedupeStore(session=boto_session, endpoint_url=moto_endpoint)
    dedupe.ensure(source)
    writes: list[str] = []
    dedupe._client.meta.events.register(
        "before-call.dynamodb.UpdateItem", lambda **kw: writes.append("update")
    )
    landed = keys(30)
    dedupe.claim(source, landed, K1)
    dedupe.mark_landed(source, landed, K1)
    writes.clear()
    first_repeat = dedupe.claim(source, landed, K2)  # nothing known yet: written
    assert first_repeat == {k: IdState("landed", K1) for k in landed}
    assert len(writes) == 30
    writes.clear()
    new = keys(5)
    overlap = dedupe.claim(source, landed + new, K2)  # read first
    assert overlap == {k: IdState("landed", K1) for k in landed}
    assert len(writes) == 5, "a write bound to fail was made"
    assert dedupe.get(source, new) == {k: IdState("pending", K2) for k in new}
    dedupe.close()


# ------------------------------------------------------ SQLite: the keys' time resolution


def _wal_frames_of(dedupe: SqliteDedupeStore, write: Callable[[], object]) -> int:
    """Pages ``write`` put in the WAL: what a commit costs the disk."""
    conn = dedupe._db.connection()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    write()
    return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


def _page_keys(start: datetime, n: int, resolution: KeyResolution) -> list[DedupeKey]:
    """A page of ``n`` new events, one every 100 ms from ``start``, random ids."""
    out = []
    for i in range(n):
        t = start + timedelta(milliseconds=100 * i)
        hour = t.strftime("%Y-%m-%d-%H:00")
        out.append(DedupeKey(time_bucket(hour, t, resolution), str(uuid.uuid4())))
    return out


@pytest.mark.parametrize("resolution", ["hour", "second"])
def test_a_page_claimed_into_a_full_hour_writes_pages_for_itself_only_by_the_second(
    tmp_path: Path, resolution: KeyResolution
) -> None:
    """Vendor ids are random, so by the hour a page of new ids lands all over the
    hour's part of the index and every index page it touches is written again: the
    cost of a claim grows with the hour. By the second, the same page adds to the
    newest index pages only."""
    dedupe = SqliteDedupeStore(tmp_path / "state.db")
    start = datetime(2026, 10, 31, 5, tzinfo=UTC)
    for p in range(20):  # 20,000 ids already in the hour
        dedupe.claim("okta", _page_keys(start + timedelta(seconds=100 * p), 1000, resolution), K1)
    page = _page_keys(start + timedelta(seconds=2000), 1000, resolution)
    frames = _wal_frames_of(dedupe, lambda: dedupe.claim("okta", page, K2))
    if resolution == "second":
        assert frames < 60, frames
    else:
        assert frames > 200, frames  # what the second resolution is for
    dedupe.close()


def test_a_new_state_file_keys_by_the_second_and_keeps_it(tmp_path: Path) -> None:
    assert SqliteDedupeStore(tmp_path / "state.db").key_resolution == "second"
    dedupe = SqliteDedupeStore(tmp_path / "state.db")
    dedupe.claim("okta", keys(3), K1)
    assert SqliteDedupeStore(tmp_path / "state.db").key_resolution == "second"


def test_a_state_file_that_held_ids_by_the_hour_keeps_the_hour(tmp_path: Path) -> None:
    """A commit log written before keys had seconds (its ids keyed by hour) must go on
    finding them: a re-delivered event would otherwise land a second time."""
    path = tmp_path / "state.db"
    older = SqliteDedupeStore(path)
    landed = keys(3, H1)
    older.claim("okta", landed, K1)  # written without asking the resolution
    older.mark_landed("okta", landed, K1)
    older._db.connection().execute("DELETE FROM lip_meta")  # as before lip_meta existed
    older.close()
    reopened = SqliteDedupeStore(path)
    assert reopened.key_resolution == "hour"
    assert reopened.claim("okta", landed, K2) == {k: IdState("landed", K1) for k in landed}
    assert SqliteDedupeStore(path).key_resolution == "hour"
