"""The stored listing state stays within DynamoDB's 400 KB item limit when more
objects than it could name are written within one settle window (a bulk copy into the
prefix, a vendor catching up after an outage): before, its commit was refused and the
source found no new object ever again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lip_dagster.s3stream.arrivals import MAX_HANDLED, ArrivalFinder, ListingState
from lip_dagster.s3stream.objects import LocalObjectSource, ObjectInfo
from lip_dagster.state.aws import DynamoCursorStore
from lip_dagster.state.base import CursorStore
from lip_dagster.state.sqlite import SqliteCursorStore
from lip_dagster_tests.conftest import store_of_backend

T = datetime(2026, 3, 1, 10, 0, tzinfo=UTC).timestamp()
BURST = 12_000  # objects written within 10 minutes


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[CursorStore, str]]:
    cursors, source = store_of_backend(request, tmp_path, SqliteCursorStore, DynamoCursorStore)
    yield cursors, source
    cursors.close()


def info(key: str, t: float) -> ObjectInfo:
    return ObjectInfo(key=key, size=100, last_modified=datetime.fromtimestamp(t, UTC))


def test_a_burst_within_one_settle_window_is_committed_and_not_listed_again(
    store: tuple[CursorStore, str], tmp_path: Path
) -> None:
    cursors, source = store
    finder = ArrivalFinder(source, LocalObjectSource(tmp_path), None, cursors)
    burst = [(f"2026/03/01/10/{uuid.uuid4()}.json.gz", T + i * 0.05) for i in range(BURST)]
    for start in range(0, BURST, 500):  # the sensor commits what landed, tick by tick
        finder.commit_landed(burst[start : start + 500])
    stored = finder.stored_state()
    assert len(stored.handled) <= MAX_HANDLED
    assert len(cursors.get(source, "s3-listing").value) < 200_000  # type: ignore[union-attr]
    # nothing of the burst is listed again; what comes after it is
    later = f"2026/03/01/10/{uuid.uuid4()}.json.gz"
    listed = [info(k, t) for k, t in burst] + [info(later, burst[-1][1] + 1)]
    assert [o.key for o in stored.fresh(listed, T + 3600)] == [later]


def test_an_object_not_landed_yet_stays_new_when_the_state_is_cut() -> None:
    burst = [(f"k{i}", T + i * 0.05) for i in range(BURST)]
    waiting = info("waiting", T + 1.0)  # found early in the burst, its run not done
    state = ListingState().advance_keys(burst, unfinished=[T + 1.0])
    assert [o.key for o in state.fresh([waiting], T + 3600)] == ["waiting"]


def test_objects_of_the_newest_second_not_taken_yet_stay_new() -> None:
    same = T + 100.0
    taken = [(f"a{i}", same) for i in range(MAX_HANDLED + 10)]
    state = ListingState().advance_keys([(f"old{i}", T + i * 0.001) for i in range(50)])
    state = state.advance_keys(taken)
    assert [o.key for o in state.fresh([info("b", same)], T + 3600)] == ["b"]
    # the state round-trips with its floor
    again = ListingState.from_json(state.to_json())
    assert again == state
