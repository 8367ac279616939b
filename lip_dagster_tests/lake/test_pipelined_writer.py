"""``LakeWriter.submit``: pages land in the background, settle in order, and a page
that repeats ids of the page before it still lands each id once."""

from __future__ import annotations

import gzip
import hashlib
import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from lip_dagster.errors import LakeWriteError
from lip_dagster.lake.backends import LocalLake
from lip_dagster.lake.layout import parse_object_key
from lip_dagster.lake.writer import LakeWriter, batch_uuid
from lip_dagster.state.sqlite import SqliteDedupeStore

from .conftest import OKTA, keys_of
from .test_writer import lake_ids


class GatedLake(LocalLake):
    """Puts of objects holding ``gated_id`` wait for ``gate`` (at most
    ``gate_timeout`` seconds); the put of any other object opens it if
    ``open_on_other_put``. Every put is recorded."""

    def __init__(
        self,
        root: Path,
        tmp: Path,
        gated_id: str,
        open_on_other_put: bool = False,
        gate_timeout: float = 30.0,
    ) -> None:
        super().__init__(root, tmp)
        self.gated_id = gated_id
        self.open_on_other_put = open_on_other_put
        self.gate_timeout = gate_timeout
        self.gate = threading.Event()
        self.put_keys: list[str] = []

    def put(self, key: str, data: bytes) -> bool:
        if self.gated_id.encode() in gzip.decompress(data):
            self.gate.wait(timeout=self.gate_timeout)
        elif self.open_on_other_put:
            self.gate.set()
        written = super().put(key, data)
        self.put_keys.append(key)
        return written


def test_submit_returns_at_once_and_a_page_lands_while_the_one_before_still_lands(
    tmp_path: Path, make_events: Any
) -> None:
    page1, page2 = make_events(20, seed=1), make_events(20, seed=2)
    lake = GatedLake(tmp_path / "lake", tmp_path / "tmp", gated_id=page1[0]["uuid"])
    dedupe = SqliteDedupeStore(tmp_path / "s.db")
    w = LakeWriter(lake, dedupe)
    try:
        first = w.submit("okta", page1, OKTA, "polling")
        second = w.submit("okta", page2, OKTA, "polling")
        # page 1's object is held back: page 2 lands meanwhile
        r2 = second.result(timeout=30)
        assert not first.done()
        lake.gate.set()
        r1 = first.result(timeout=30)
    finally:
        w.close()
        dedupe.close()
    assert (r1.events, r2.events) == (20, 20)
    assert lake.put_keys == r2.hours["2026-03-01-10:00"].keys + r1.hours["2026-03-01-10:00"].keys
    ids = lake_ids(lake.root)
    assert len(ids) == 40 and set(ids.values()) == {1}


def test_a_page_that_fails_fails_its_own_result_and_the_next_page_still_lands(
    tmp_path: Path, make_events: Any
) -> None:
    class FailingLake(LocalLake):
        def put(self, key: str, data: bytes) -> bool:
            if bad_id.encode() in gzip.decompress(data):
                raise LakeWriteError(f"could not write lake object {key}: disk full")
            return super().put(key, data)

    page1, page2 = make_events(10, seed=1), make_events(10, seed=2)
    bad_id = page1[0]["uuid"]
    dedupe = SqliteDedupeStore(tmp_path / "s.db")
    w = LakeWriter(FailingLake(tmp_path / "lake", tmp_path / "tmp"), dedupe)
    try:
        first = w.submit("okta", page1, OKTA, "polling")
        second = w.submit("okta", page2, OKTA, "polling")
        with pytest.raises(LakeWriteError, match="disk full"):
            first.result(timeout=30)
        assert second.result(timeout=30).events == 10
    finally:
        w.close()
    # the failed page's ids stay pending, so a retry lands them
    states = dedupe.get("okta", keys_of(page1, dedupe))
    assert {s.status for s in states.values()} == {"pending"}
    dedupe.close()


def test_a_page_repeating_ids_of_a_page_still_in_flight_lands_each_id_once(
    tmp_path: Path, make_events: Any
) -> None:
    """Page 2 repeats half of page 1 while page 1's object is still being put. Had
    page 2 claimed those ids then, it would have found them pending under an object
    not yet in the lake, kept them, and put them a second time. Page 1's put is held
    until page 2 puts an object (a writer that did not wait) or for a second (one
    that waits for page 1's object before claiming page 2)."""
    events = make_events(30)
    page1, page2 = events[:20], events[10:]
    lake = GatedLake(
        tmp_path / "lake",
        tmp_path / "tmp",
        gated_id=page1[0]["uuid"],
        open_on_other_put=True,
        gate_timeout=1.0,
    )
    dedupe = SqliteDedupeStore(tmp_path / "s.db")
    w = LakeWriter(lake, dedupe)
    try:
        first = w.submit("okta", page1, OKTA, "polling")
        second = w.submit("okta", page2, OKTA, "polling")
        r1, r2 = first.result(timeout=30), second.result(timeout=30)
    finally:
        w.close()
        dedupe.close()
    assert r1.events == 20 and (r2.events, r2.duplicates) == (10, 10)
    ids = lake_ids(lake.root)
    assert len(ids) == 30 and set(ids.values()) == {1}, "an event landed twice"


def test_object_names_do_not_change_between_versions(make_events: Any, tmp_path: Path) -> None:
    """A retry after an upgrade must rewrite the same key: the name stays
    sha256(source, hour, the sorted ids one per line) shaped as a version-5 UUID."""
    events = make_events(50, step=timedelta(seconds=1))
    ids = [e["uuid"] for e in reversed(events)]
    h = hashlib.sha256(b"okta\n2026-03-01-10:00\n")
    for i in sorted(ids):
        h.update(i.encode() + b"\n")
    expected = str(uuid.UUID(bytes=h.digest()[:16], version=5))
    assert batch_uuid("okta", "2026-03-01-10:00", ids) == expected
    dedupe = SqliteDedupeStore(tmp_path / "s.db")
    w = LakeWriter(LocalLake(tmp_path / "lake", tmp_path / "tmp"), dedupe)
    res = w.write("okta", events, OKTA, "polling")
    w.close()
    dedupe.close()
    (key,) = res.hours["2026-03-01-10:00"].keys
    assert key.endswith(f"20260301T100000Z_{expected}.ndjson.gz")
    assert parse_object_key(key)[0] == "okta"
