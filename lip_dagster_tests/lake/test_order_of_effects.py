"""A crash between any two steps of landing yields at worst a retry: never a lost
event, never a duplicate in the lake (DESIGN §4)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from lip_dagster.errors import LakeWriteError
from lip_dagster.lake.backends import LocalLake
from lip_dagster.lake.writer import LakeWriter
from lip_dagster.state.base import DedupeKey
from lip_dagster.state.sqlite import SqliteDedupeStore

from .conftest import OKTA
from .test_writer import lake_ids


class Crash(Exception):
    """Stands in for the process dying at that line."""


class CrashingLake(LocalLake):
    def __init__(self, *a: object, mode: str, **kw: object) -> None:
        super().__init__(*a, **kw)  # type: ignore[arg-type]
        self.mode = mode
        self.armed = True

    def put(self, key: str, data: bytes) -> None:
        if self.armed and self.mode == "before_put":
            self.armed = False
            raise Crash("died after claim, before put")
        super().put(key, data)
        if self.armed and self.mode == "after_put":
            self.armed = False
            raise Crash("died after put, before marking landed")


class CrashingDedupe(SqliteDedupeStore):
    def __init__(self, *a: object, mode: str, **kw: object) -> None:
        super().__init__(*a, **kw)  # type: ignore[arg-type]
        self.mode = mode
        self.armed = True

    def mark_landed(self, source: str, keys: Sequence[DedupeKey], object_key: str) -> None:
        super().mark_landed(source, keys, object_key)
        if self.armed and self.mode == "after_mark":
            self.armed = False
            raise Crash("died after marking landed, before the cursor commit")


@pytest.mark.parametrize("mode", ["before_put", "after_put", "after_mark"])
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
