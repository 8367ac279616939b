"""The listing fallback finds every object once, whatever order the vendor writes keys
in: GitHub names objects by uuid within a minute folder, an organization trail writes
one folder per account and region."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson

from lip_dagster.s3stream.arrivals import ArrivalFinder, ListingState
from lip_dagster.s3stream.objects import LocalObjectSource, ObjectInfo
from lip_dagster.state.sqlite import SqliteCursorStore

from .conftest import github_events, gz, ndjson

T = datetime(2026, 3, 1, 10, 0, tzinfo=UTC).timestamp()


def write(root: Path, key: str, modified: float) -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gz(ndjson(github_events(2, seed=len(key)))))
    os.utime(path, (modified, modified))


def github_key(minute: int) -> str:
    return f"2026/03/01/10/{minute:02d}/{uuid.uuid4()}.json.gz"


def finder(root: Path, state_db: Path, settle: float = 900.0) -> ArrivalFinder:
    return ArrivalFinder(
        "github_audit_stream",
        LocalObjectSource(root),
        None,
        SqliteCursorStore(state_db),
        settle_seconds=settle,
    )


def sweep(f: ArrivalFinder, limit: int = 100) -> list[str]:
    """One pass as a run does it: discover, then commit once the objects are safe."""
    found = f.discover(None, limit)
    if found.state is not None:
        f.commit(found.state)
    return [o.key for o in found.objects]


def test_a_key_that_sorts_before_handled_keys_is_still_found(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    first = sorted(github_key(5) for _ in range(300))
    for i, key in enumerate(first):
        write(root, key, T + i * 0.1)
    f = finder(root, tmp_path / "state.db")
    assert sorted(sweep(f, limit=1000)) == first
    # GitHub finishes an object of the same minute later, under a uuid that sorts
    # before everything handled so far
    late = "2026/03/01/10/05/00000000-0000-4000-8000-000000000000.json.gz"
    write(root, late, T + 40)
    assert sweep(f) == [late]
    assert sweep(f) == []


def test_objects_are_taken_oldest_first_and_the_rest_wait_for_the_next_pass(
    tmp_path: Path,
) -> None:
    root = tmp_path / "bucket"
    keys = [github_key(m) for m in range(10)]
    for i, key in enumerate(reversed(keys)):  # newest key written first
        write(root, key, T + i)
    f = finder(root, tmp_path / "state.db")
    got = sweep(f, limit=4) + sweep(f, limit=4) + sweep(f, limit=4) + sweep(f, limit=4)
    assert got == list(reversed(keys))


def test_objects_older_than_the_settle_window_are_not_listed_again(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    old, new = github_key(1), github_key(2)
    write(root, old, T)
    write(root, new, T + 3600)
    f = finder(root, tmp_path / "state.db", settle=600)
    assert sweep(f) == [old, new]
    stored = orjson.loads(f.cursors.get("github_audit_stream", "s3-listing").value)
    assert len(stored["handled"]) == 1  # only the newest hour is remembered key by key
    # a restart reads the stored state: the old object is not handled again
    assert sweep(finder(root, tmp_path / "state.db", settle=600)) == []
    # an object that shows up late but inside the window is
    slow = github_key(3)
    write(root, slow, T + 3600 - 300)
    assert sweep(f) == [slow]


def test_the_state_never_moves_backwards_and_survives_a_round_trip() -> None:
    a = ListingState().advance([ObjectInfo("k1", last_modified=None)], listed_at=T + 50)
    b = ListingState().advance(
        [ObjectInfo("k2", last_modified=datetime.fromtimestamp(T, UTC))], listed_at=T
    )
    merged = a.merge(b)
    assert merged.since == T + 50 and len(merged.handled) == 2
    assert b.merge(a) == merged
    assert ListingState.from_json(merged.to_json()) == merged
    assert merged.through == "2026-03-01T10:00:50Z"


def test_an_unreadable_or_older_state_starts_over_instead_of_failing() -> None:
    assert ListingState.from_json('{"after": "k", "recent": ["k"]}') is None
    assert ListingState.from_json("not json") is None
