"""A collector that stops dead at one step of landing page N while page N+1 is being
fetched, for the tests that kill it there (``test_pipelining.py``).

Run as ``python -m lip_dagster_tests.polling.pipeline_vendor HOME STEP WHERE``: it
collects a vendor of six 50-event pages (the recorded Okta event, re-stamped, all in
one hour, so each page is one object), and when page 3 reaches ``STEP`` it prints
what it is doing and waits there forever, until the test kills it.

STEP is ``put`` (page 3 claimed, its object not yet written), ``mark`` (object
written, ids not yet marked landed) or ``commit`` (page 3 landed and marked, its
cursor not yet committed). WHERE is where the collector's own loop is meanwhile:
``fetching`` page 4 (it prints ``fetching 4`` and waits there), or, with page 4
fetched and handed to the writer, ``waiting`` for page 3 to land before committing
its cursor (it prints ``waiting for 3``).
"""

from __future__ import annotations

import copy
import gzip
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from lip_dagster.lake.backends import LocalLake
from lip_dagster.lake.envelope import EventIdentity
from lip_dagster.lake.writer import LakeWriter, PendingWrite, WriteResult
from lip_dagster.polling.base import BasePoller, PollerConfig, PollResult
from lip_dagster.polling.http import HttpClient
from lip_dagster.secrets import Secret
from lip_dagster.state.base import DedupeKey
from lip_dagster.state.sqlite import SqliteCursorStore, SqliteDedupeStore

FIXTURE = Path(__file__).parent.parent / "fixtures" / "lake" / "okta_event.json"
PAGE = 50
PAGES = 6
STALL_PAGE = 3
SOURCE = "okta"


def vendor_events() -> list[dict[str, Any]]:
    base = orjson.loads(FIXTURE.read_bytes())
    start = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    out = []
    for i in range(PAGE * PAGES):
        ev = copy.deepcopy(base)
        ev["uuid"] = str(uuid.UUID(int=i + 1))
        ev["published"] = (start + timedelta(seconds=10 * i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        out.append(ev)
    return out


EVENTS = vendor_events()
STALL_IDS = {e["uuid"] for e in EVENTS[PAGE * (STALL_PAGE - 1) : PAGE * STALL_PAGE]}


class PagedVendor(BasePoller):
    """Pages of ``PAGE`` events; the cursor is the offset of the next page."""

    identity = EventIdentity(id_fields=("uuid",), time_field="published")
    default_endpoints = ("logs",)
    before_fetch: Any = None  # called with the 1-based number of the page fetched

    def get_auth_token(self) -> Secret:
        return Secret("not-used")

    def call_api(
        self,
        auth_token: Secret,
        endpoint: str,
        cursor: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
    ) -> PollResult:
        offset = int(cursor) if cursor else 0
        if self.before_fetch is not None:
            self.before_fetch(offset // PAGE + 1)
        page = EVENTS[offset : offset + PAGE]
        nxt = offset + len(page)
        return PollResult(page, str(nxt), has_more=nxt < len(EVENTS))

    def get_cursor_key(self, endpoint: str) -> str:
        return endpoint


def collector(
    home: Path,
    lake: LocalLake | None = None,
    dedupe: SqliteDedupeStore | None = None,
    writer_class: type[LakeWriter] = LakeWriter,
) -> PagedVendor:
    lake = lake or LocalLake(home / "lake", home / "tmp")
    dedupe = dedupe or SqliteDedupeStore(home / "state.db")
    return PagedVendor(
        PollerConfig(source=SOURCE, base_url="https://vendor.test", endpoints=("logs",)),
        http=HttpClient(),
        secrets=None,  # type: ignore[arg-type]
        cursors=SqliteCursorStore(home / "state.db"),
        writer=writer_class(lake, dedupe),
    )


_SAY = threading.Lock()


def _say(what: str) -> None:
    """One whole line at a time: two threads announce where they stopped."""
    with _SAY:
        sys.stdout.write(what + "\n")
        sys.stdout.flush()


def _stall(what: str) -> None:
    _say(what)
    while True:  # until killed
        time.sleep(60)


class _StallingLake(LocalLake):
    def __init__(self, home: Path, step: str) -> None:
        super().__init__(home / "lake", home / "tmp")
        self.step = step

    def put(self, key: str, data: bytes) -> bool:
        ids = {orjson.loads(line)["_lip"]["id"] for line in gzip.decompress(data).splitlines()}
        if ids & STALL_IDS and self.step == "put":
            _stall(f"landing {STALL_PAGE}: put")
        return super().put(key, data)


class _StallingDedupe(SqliteDedupeStore):
    def __init__(self, home: Path, step: str) -> None:
        super().__init__(home / "state.db")
        self.step = step
        self.page_marked = threading.Event()

    def mark_landed(self, source: str, keys: Sequence[DedupeKey], object_key: str) -> None:
        stalled_page = any(k.event_id in STALL_IDS for k in keys)
        if stalled_page and self.step == "mark":
            _stall(f"landing {STALL_PAGE}: mark")
        super().mark_landed(source, keys, object_key)
        if stalled_page:
            self.page_marked.set()


class _Watched(PendingWrite):
    """Says when the collector starts waiting for page ``STALL_PAGE`` to land."""

    def __init__(self, inner: PendingWrite, page: int) -> None:
        self.inner, self.page = inner, page

    def done(self) -> bool:
        return self.inner.done()

    def result(self, timeout: float | None = None) -> WriteResult:
        if self.page == STALL_PAGE:
            _say(f"waiting for {STALL_PAGE}")
        return self.inner.result(timeout)


class _WatchedWriter(LakeWriter):
    submitted = 0

    def submit(self, *args: Any, **kwargs: Any) -> PendingWrite:
        self.submitted += 1
        return _Watched(super().submit(*args, **kwargs), self.submitted)


def main(home: Path, step: str, where: str) -> None:
    dedupe = _StallingDedupe(home, step)
    poller = collector(home, _StallingLake(home, step), dedupe, _WatchedWriter)

    def before_fetch(page: int) -> None:
        if page == STALL_PAGE + 1 and where == "fetching":
            if step == "commit":
                dedupe.page_marked.wait()
                _say(f"landing {STALL_PAGE}: commit")
            _stall(f"fetching {page}")

    poller.before_fetch = before_fetch
    poller.run()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
