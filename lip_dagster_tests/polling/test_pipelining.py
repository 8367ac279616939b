"""Pipelined polling: page N+1 is fetched while page N lands, and still the cursor
never passes a page that has not landed, and a collector killed in the overlap loses
nothing and duplicates nothing when it runs again (DESIGN §4)."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from lip_dagster.errors import LakeWriteError, StateError
from lip_dagster.lake.backends import LocalLake
from lip_dagster.state.base import DedupeKey
from lip_dagster.state.sqlite import SqliteCursorStore, SqliteDedupeStore

from .pipeline_vendor import (
    EVENTS,
    PAGE,
    SOURCE,
    STALL_IDS,
    STALL_PAGE,
    PagedVendor,
    collector,
)

REPO = Path(__file__).resolve().parents[2]


def lake_ids(home: Path) -> Counter[str]:
    ids: Counter[str] = Counter()
    for p in (home / "lake").rglob("*"):
        if p.is_file():
            assert p.name.endswith(".ndjson.gz"), f"non-object file in the lake: {p}"
            ids.update(
                orjson.loads(line)["_lip"]["id"]
                for line in gzip.decompress(p.read_bytes()).splitlines()
            )
    return ids


def committed_cursor(home: Path) -> str | None:
    cursors = SqliteCursorStore(home / "state.db")
    try:
        rec = cursors.get(SOURCE, "logs")
    finally:
        cursors.close()
    return rec.value if rec else None


@contextmanager
def closing(poller: PagedVendor) -> Iterator[PagedVendor]:
    """The collector, its landing threads and HTTP client closed afterwards."""
    try:
        yield poller
    finally:
        poller.writer.close()
        poller.http.close()


def run_to_the_end(home: Path) -> None:
    with closing(collector(home)) as poller:
        report = poller.run()
    assert report.endpoints["logs"].stopped == "caught_up"


@pytest.mark.parametrize(
    ("step", "where"),
    [
        ("put", "fetching"),
        ("put", "waiting"),
        ("mark", "fetching"),
        ("mark", "waiting"),
        ("commit", "fetching"),
    ],
)
def test_killed_while_a_page_lands_and_the_next_is_fetched_loses_and_repeats_nothing(
    tmp_path: Path, step: str, where: str
) -> None:
    """Killed with page N at ``step`` of landing and the loop ``where``: fetching page
    N+1, or with N+1 fetched (and landing) and the loop waiting on page N."""
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lip_dagster_tests.polling.pipeline_vendor",
            str(home),
            step,
            where,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    watchdog = threading.Timer(60, proc.kill)  # a collector that never stalls fails
    watchdog.start()
    try:
        seen = set()
        want = {
            f"landing {STALL_PAGE}: {step}",
            f"fetching {STALL_PAGE + 1}" if where == "fetching" else f"waiting for {STALL_PAGE}",
        }
        assert proc.stdout is not None
        while not want <= seen:
            line = proc.stdout.readline()
            assert line, f"collector ended early: {proc.stderr.read().decode()[-2000:]}"
            seen.add(line.decode().strip())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        watchdog.cancel()
        proc.kill()
    # killed: page N was landing (at `step`) while page N+1 was being fetched; the
    # cursor is where the pages before N put it, never past N
    assert committed_cursor(home) == str(PAGE * (STALL_PAGE - 1))
    landed = lake_ids(home)
    assert max(landed.values()) == 1
    run_to_the_end(home)
    ids = lake_ids(home)
    assert set(ids) == {e["uuid"] for e in EVENTS}, "an event was lost"
    assert max(ids.values()) == 1, "an event landed twice"
    assert committed_cursor(home) == str(len(EVENTS))


def test_the_next_page_is_fetched_while_the_page_before_lands(tmp_path: Path) -> None:
    """The put of page 1 waits until page 2 is being fetched: a poller that waited
    for each page to land before fetching the next would never get there."""
    fetching_2 = threading.Event()
    overlapped: list[bool] = []

    first_id = EVENTS[0]["uuid"].encode()

    class SlowLake(LocalLake):
        def put(self, key: str, data: bytes) -> bool:
            if first_id in gzip.decompress(data):  # page 1's object
                overlapped.append(fetching_2.wait(timeout=20))
            return super().put(key, data)

    with closing(collector(tmp_path, lake=SlowLake(tmp_path / "lake", tmp_path / "tmp"))) as poller:
        poller.before_fetch = lambda page: fetching_2.set() if page == 2 else None
        report = poller.run()
    assert overlapped == [True], "page 2 was not fetched while page 1 was landing"
    assert report.result.events == len(EVENTS) and report.pages == len(EVENTS) // PAGE
    assert committed_cursor(tmp_path) == str(len(EVENTS))


def test_a_page_that_fails_to_land_fails_the_run_and_holds_the_cursor_before_it(
    tmp_path: Path,
) -> None:
    class BrokenLake(LocalLake):
        def put(self, key: str, data: bytes) -> bool:
            if any(i.encode() in gzip.decompress(data) for i in STALL_IDS):
                raise LakeWriteError(f"could not write lake object {key}: disk full")
            return super().put(key, data)

    lake = BrokenLake(tmp_path / "lake", tmp_path / "tmp")
    with (
        closing(collector(tmp_path, lake=lake)) as poller,
        pytest.raises(LakeWriteError, match="disk full"),
    ):
        poller.run()
    # the page after the failed one was fetched and may have landed, but the cursor
    # stays before the page that did not
    assert committed_cursor(tmp_path) == str(PAGE * (STALL_PAGE - 1))
    run_to_the_end(tmp_path)
    ids = lake_ids(tmp_path)
    assert set(ids) == {e["uuid"] for e in EVENTS} and max(ids.values()) == 1


def test_a_failure_to_mark_fails_the_run_and_the_rerun_lands_each_event_once(
    tmp_path: Path,
) -> None:
    class BrokenDedupe(SqliteDedupeStore):
        def mark_landed(self, source: str, keys: Sequence[DedupeKey], object_key: str) -> None:
            if any(k.event_id in STALL_IDS for k in keys):
                raise StateError("SQLite state database: marking ids failed: disk I/O error")
            super().mark_landed(source, keys, object_key)

    broken = BrokenDedupe(tmp_path / "state.db")
    with (
        closing(collector(tmp_path, dedupe=broken)) as poller,
        pytest.raises(LakeWriteError, match="disk I/O error"),
    ):
        poller.run()
    assert committed_cursor(tmp_path) == str(PAGE * (STALL_PAGE - 1))
    run_to_the_end(tmp_path)
    ids = lake_ids(tmp_path)
    assert set(ids) == {e["uuid"] for e in EVENTS} and max(ids.values()) == 1
