"""Cursor store contract, run against SQLite and against DynamoDB on the local moto
server: compare-and-set, never backwards, high_water kept as a max."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lip_dagster.errors import CursorConflict, InvalidSourceName, LipError, StateError
from lip_dagster.state.aws import DynamoCursorStore
from lip_dagster.state.base import CursorStore
from lip_dagster.state.sqlite import SqliteCursorStore
from lip_dagster_tests.conftest import store_of_backend


def new_source() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[CursorStore, str]]:
    cursor_store, source = store_of_backend(request, tmp_path, SqliteCursorStore, DynamoCursorStore)
    yield cursor_store, source
    cursor_store.close()


def test_no_cursor_before_the_first_commit(store: tuple[CursorStore, str]) -> None:
    cursors, source = store
    assert cursors.get(source, "logs") is None


def test_first_commit_creates_version_one(store: tuple[CursorStore, str]) -> None:
    cursors, source = store
    record = cursors.commit(source, "logs", "next-1", None, "2024-05-01T10:00:00Z")
    assert (record.value, record.version, record.high_water) == (
        "next-1",
        1,
        "2024-05-01T10:00:00Z",
    )
    stored = cursors.get(source, "logs")
    assert stored is not None
    assert (stored.value, stored.version, stored.high_water) == (
        "next-1",
        1,
        "2024-05-01T10:00:00Z",
    )
    assert stored.updated_at > 0


def test_a_second_first_commit_conflicts(store: tuple[CursorStore, str]) -> None:
    cursors, source = store
    cursors.commit(source, "logs", "winner", None)
    with pytest.raises(CursorConflict):
        cursors.commit(source, "logs", "loser", None)
    stored = cursors.get(source, "logs")
    assert stored is not None and stored.value == "winner" and stored.version == 1


def test_stale_writer_loses_and_the_winner_value_stays(store: tuple[CursorStore, str]) -> None:
    cursors, source = store
    cursors.commit(source, "logs", "c1", None)
    # Two runs both read version 1; the first to commit wins.
    cursors.commit(source, "logs", "winner", 1, "2024-05-01T12:00:00Z")
    with pytest.raises(CursorConflict) as caught:
        cursors.commit(source, "logs", "stale", 1, "2024-05-01T13:00:00Z")
    message = str(caught.value)
    assert source in message and "logs" in message
    assert "version 1" in message and "version 2" in message
    stored = cursors.get(source, "logs")
    assert stored is not None
    assert (stored.value, stored.version, stored.high_water) == (
        "winner",
        2,
        "2024-05-01T12:00:00Z",
    )


@pytest.mark.parametrize("expected", [0, 3, None])
def test_a_wrong_version_never_overwrites(
    store: tuple[CursorStore, str], expected: int | None
) -> None:
    cursors, source = store
    cursors.commit(source, "logs", "v1", None)
    cursors.commit(source, "logs", "v2", 1)
    with pytest.raises(CursorConflict):
        cursors.commit(source, "logs", "other", expected)
    stored = cursors.get(source, "logs")
    assert stored is not None and (stored.value, stored.version) == ("v2", 2)


def test_committing_an_absent_cursor_with_a_version_conflicts(
    store: tuple[CursorStore, str],
) -> None:
    cursors, source = store
    with pytest.raises(CursorConflict):
        cursors.commit(source, "logs", "x", 1)
    assert cursors.get(source, "logs") is None


@pytest.mark.parametrize("first", [True, False])
def test_a_dynamodb_commit_whose_answer_was_lost_is_not_a_conflict(
    boto_session: object, moto_endpoint: str, first: bool
) -> None:
    """botocore resends a write whose answer was lost (a timeout, a reset
    connection); the resent conditional write then fails against the write itself.
    That is our commit having succeeded, not a stale writer: the run must not fail."""
    source = new_source()
    store = DynamoCursorStore(session=boto_session, endpoint_url=moto_endpoint)
    store.ensure(source)
    expected = None if first else store.commit(source, "logs", "v1", None).version
    client = store._client
    name = "put_item" if first else "update_item"
    real = getattr(client, name)

    def answer_lost(**request: object) -> object:
        real(**request)  # applied by DynamoDB...
        return real(**request)  # ...and sent again: its condition no longer holds

    setattr(client, name, answer_lost)
    try:
        rec = store.commit(source, "logs", "v2", expected)
    finally:
        setattr(client, name, real)
    stored = store.get(source, "logs")
    assert stored is not None and (stored.value, stored.version) == ("v2", rec.version)
    # a writer that really is stale still conflicts
    with pytest.raises(CursorConflict):
        store.commit(source, "logs", "v3", expected)
    store.close()


def test_high_water_is_kept_as_the_latest_instant(store: tuple[CursorStore, str]) -> None:
    cursors, source = store
    rec = cursors.commit(source, "logs", "a", None, "2024-05-01T10:00:00Z")
    # Earlier, in another spelling of UTC: must not move the mark back.
    rec = cursors.commit(source, "logs", "b", rec.version, "2024-05-01T09:59:59.999+00:00")
    assert rec.high_water == "2024-05-01T10:00:00Z"
    # None keeps the stored mark.
    rec = cursors.commit(source, "logs", "c", rec.version, None)
    assert rec.high_water == "2024-05-01T10:00:00Z"
    # Later (11:30Z) but lexically smaller: compared as instants it wins, stored as given.
    rec = cursors.commit(source, "logs", "d", rec.version, "2024-05-01T09:30:00-02:00")
    assert rec.high_water == "2024-05-01T09:30:00-02:00"
    # Lexically larger but earlier (11:00Z): kept out.
    rec = cursors.commit(source, "logs", "e", rec.version, "2024-05-01T11:00:00Z")
    assert rec.high_water == "2024-05-01T09:30:00-02:00"
    # Nanoseconds and a naive (UTC) time compare as instants too.
    rec = cursors.commit(source, "logs", "f", rec.version, "2024-05-01T11:30:00.000000001Z")
    assert rec.high_water == "2024-05-01T09:30:00-02:00"
    stored = cursors.get(source, "logs")
    assert stored is not None
    assert (stored.value, stored.version, stored.high_water) == (
        "f",
        6,
        "2024-05-01T09:30:00-02:00",
    )
    rec = cursors.commit(source, "logs", "g", rec.version, "2024-05-01T11:30:01")
    assert rec.high_water == "2024-05-01T11:30:01"


def test_a_malformed_high_water_is_refused_and_nothing_changes(
    store: tuple[CursorStore, str],
) -> None:
    cursors, source = store
    rec = cursors.commit(source, "logs", "a", None, "2024-05-01T10:00:00Z")
    with pytest.raises(StateError, match="not an ISO-8601"):
        cursors.commit(source, "logs", "b", rec.version, "yesterday")
    stored = cursors.get(source, "logs")
    assert stored is not None and (stored.value, stored.version) == ("a", 1)


def test_endpoints_are_independent(store: tuple[CursorStore, str]) -> None:
    cursors, source = store
    cursors.commit(source, "users", "u1", None)
    cursors.commit(source, "groups", "g1", None)
    cursors.commit(source, "groups", "g2", 1)
    users, groups = cursors.get(source, "users"), cursors.get(source, "groups")
    assert users is not None and (users.value, users.version) == ("u1", 1)
    assert groups is not None and (groups.value, groups.version) == ("g2", 2)


def test_an_invalid_source_name_is_refused(store: tuple[CursorStore, str]) -> None:
    cursors, _ = store
    with pytest.raises(InvalidSourceName):
        cursors.get("../etc", "logs")


def test_racing_writers_exactly_one_wins(store: tuple[CursorStore, str]) -> None:
    cursors, source = store
    cursors.commit(source, "logs", "start", None)
    barrier = threading.Barrier(6)
    outcomes: list[str] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        barrier.wait()
        try:
            cursors.commit(source, "logs", f"writer-{n}", 1)
            result = f"won:{n}"
        except CursorConflict:
            result = "lost"
        except LipError as exc:  # shown in the assertion below
            result = f"error: {exc!r}"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o.startswith("won:")]
    assert len(winners) == 1 and outcomes.count("lost") == 5, outcomes
    stored = cursors.get(source, "logs")
    assert stored is not None
    assert stored.version == 2 and stored.value == f"writer-{winners[0][4:]}"


# ----------------------------------------------------------------- SQLite, processes


def _increment(path: str, source: str, times: int) -> int:
    """Commit ``times`` increments with the read / compare-and-set / retry loop a run
    would use; returns how many conflicts it saw."""
    store = SqliteCursorStore(path)
    conflicts = 0
    done = 0
    while done < times:
        current = store.get(source, "logs")
        expected = None if current is None else current.version
        count = 0 if current is None else int(current.value)
        try:
            store.commit(source, "logs", str(count + 1), expected)
            done += 1
        except CursorConflict:
            conflicts += 1
    store.close()
    return conflicts


def test_processes_sharing_one_file_never_lose_an_increment(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    source = new_source()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        pool.starmap(_increment, [(path, source, 40)] * 3)
    stored = SqliteCursorStore(path).get(source, "logs")
    assert stored is not None
    assert stored.value == "120" and stored.version == 120
