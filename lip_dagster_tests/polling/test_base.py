"""The one polling loop: cursor, budget, backpressure, order of effects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from lip_dagster.errors import CursorConflict, VendorError
from lip_dagster.lake.backends import LocalLake
from lip_dagster.lake.envelope import EventIdentity
from lip_dagster.lake.writer import LakeWriter
from lip_dagster.polling.base import (
    BackfillBeyondRetention,
    BackfillIncomplete,
    Backpressure,
    BackpressurePolicy,
    BasePoller,
    EndpointsFailed,
    PollerConfig,
    PollResult,
    failed_report,
)
from lip_dagster.polling.http import HttpClient
from lip_dagster.secrets import Secret
from lip_dagster.state.sqlite import SqliteCursorStore, SqliteDedupeStore

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class ListPoller(BasePoller):
    """A vendor with N events, one per minute, pages of 10, cursor = offset."""

    identity = EventIdentity(id_fields=("uuid",), time_field="published")
    default_endpoints = ("logs",)
    events: list[dict[str, Any]] = []
    seconds_per_call = 0.0
    calls: list[dict[str, Any]]

    def get_auth_token(self) -> Secret:
        return Secret("token")

    def call_api(self, auth_token, endpoint, cursor=None, start_time=None, end_time=None):
        self.calls.append({"cursor": cursor, "start": start_time, "end": end_time})
        self.clock.now += self.seconds_per_call  # type: ignore[attr-defined]
        pool = self.events
        if cursor is None:
            lo = start_time or datetime.min.replace(tzinfo=UTC)
            hi = end_time or datetime.max.replace(tzinfo=UTC)
            pool_idx = [
                i for i, e in enumerate(pool) if lo <= datetime.fromisoformat(e["published"]) < hi
            ]
            offset = pool_idx[0] if pool_idx else len(pool)
        else:
            offset = int(cursor)
        page = pool[offset : offset + 10]
        if end_time is not None:
            page = [e for e in page if datetime.fromisoformat(e["published"]) < end_time]
        nxt = offset + len(page)
        return PollResult(page, str(nxt), has_more=bool(page) and nxt < len(pool))

    def get_cursor_key(self, endpoint: str) -> str:
        return endpoint


def events(n: int, start: datetime) -> list[dict[str, Any]]:
    return [
        {"uuid": f"id-{i}", "published": (start + timedelta(minutes=i)).isoformat()}
        for i in range(n)
    ]


@pytest.fixture
def make_poller(tmp_path: Path):
    made = []

    def make(evs: list[dict[str, Any]], **cfg: Any) -> ListPoller:
        clock = FakeClock()
        lake = LocalLake(tmp_path / "lake", tmp_path / "tmp")
        writer = LakeWriter(lake, SqliteDedupeStore(tmp_path / "s.db"))
        p = ListPoller(
            PollerConfig(source="fake", base_url="https://vendor.test", endpoints=("logs",), **cfg),
            http=HttpClient(),
            secrets=None,  # type: ignore[arg-type]
            cursors=SqliteCursorStore(tmp_path / "s.db"),
            writer=writer,
            clock=clock,
        )
        p.events = evs
        p.calls = []
        made.append(p)
        return p

    yield make
    for p in made:
        p.writer.close()
        p.http.close()


def test_first_run_starts_initial_lookback_back(make_poller) -> None:
    start = datetime.fromtimestamp(NOW, UTC) - timedelta(hours=30)
    p = make_poller(events(30 * 60, start), initial_lookback_hours=2)
    report = p.run()
    assert p.calls[0]["start"] == datetime.fromtimestamp(NOW, UTC) - timedelta(hours=2)
    assert report.result.events == 120  # the last two hours only
    assert report.endpoints["logs"].stopped == "caught_up"


def test_second_run_resumes_from_the_committed_cursor(make_poller) -> None:
    start = datetime.fromtimestamp(NOW, UTC) - timedelta(hours=1)
    p = make_poller(events(55, start))
    p.run()
    p.events = events(80, start)  # 25 new events arrive
    report = p.run()
    assert p.calls[-1]["start"] is None and p.calls[len(p.calls) - 3]["cursor"] == "55"
    assert report.result.events == 25
    assert p.cursors.get("fake", "logs").value == "80"


def test_budget_is_respected_and_raising_it_raises_throughput(make_poller) -> None:
    start = datetime.fromtimestamp(NOW, UTC) - timedelta(hours=20)
    small = make_poller(events(1000, start), time_budget_seconds=60, safety_margin_seconds=10)
    small.seconds_per_call = 2.0
    r1 = small.run()
    assert r1.endpoints["logs"].stopped == "budget"
    assert r1.seconds <= 60 - 10 + 2.0  # stops at the margin (plus the call in flight)
    assert r1.result.events == 250  # 25 calls x 10 events
    # the cursor was committed, so nothing of what was landed is lost
    assert small.cursors.get("fake", "logs").value == "250"


def test_bigger_budget_lands_more(make_poller) -> None:
    start = datetime.fromtimestamp(NOW, UTC) - timedelta(hours=20)
    big = make_poller(events(1000, start), time_budget_seconds=240, safety_margin_seconds=10)
    big.seconds_per_call = 2.0
    assert big.run().result.events == 1000


@pytest.mark.parametrize(
    ("depth", "expected"), [(0, "normal"), (2, "reduced"), (4, "reduced"), (5, "skip")]
)
def test_backpressure_thresholds(make_poller, depth: int, expected: str) -> None:
    start = datetime.fromtimestamp(NOW, UTC) - timedelta(hours=20)
    p = make_poller(events(1000, start), time_budget_seconds=200, safety_margin_seconds=0)
    p.seconds_per_call = 1.0
    report = p.run(depth_probe=lambda: depth)
    assert report.backpressure == expected
    if expected == "skip":
        assert p.calls == [] and report.result.events == 0
    elif expected == "reduced":
        assert report.seconds <= 200 * 0.25 + 1.0


def test_a_failing_probe_fails_open(make_poller) -> None:
    def broken() -> int:
        raise ConnectionError("dagster instance unreachable")

    assert BackpressurePolicy().decide(broken) is Backpressure.NORMAL
    p = make_poller(events(5, datetime.fromtimestamp(NOW, UTC) - timedelta(hours=1)))
    assert p.run(depth_probe=broken).result.events == 5


def test_a_stale_writer_cannot_move_the_cursor(make_poller) -> None:
    p = make_poller(events(5, datetime.fromtimestamp(NOW, UTC) - timedelta(hours=1)))
    p.cursors.commit("fake", "logs", "3", None)
    first = p.cursors.get("fake", "logs")
    p.cursors.commit("fake", "logs", "5", first.version)  # another run wins
    with pytest.raises(CursorConflict):
        p.cursors.commit("fake", "logs", "4", first.version)
    assert p.cursors.get("fake", "logs").value == "5"


def test_vendor_failure_fails_the_run_and_commits_nothing(make_poller) -> None:
    p = make_poller(events(30, datetime.fromtimestamp(NOW, UTC) - timedelta(hours=1)))
    real = p.call_api

    def failing(*a: Any, **kw: Any) -> PollResult:
        if len(p.calls) >= 2:
            raise VendorError("fake", "logs", 503, "gave up after 6 attempts")
        return real(*a, **kw)

    p.call_api = failing  # type: ignore[method-assign]
    with pytest.raises(VendorError, match="HTTP 503") as ei:
        p.run()
    # the first two pages were landed and committed; nothing beyond
    assert p.cursors.get("fake", "logs").value == "20"
    # and the error carries the run's report, so the asset can still record their hours
    report = failed_report(ei.value)
    assert report is not None
    assert report.result.events == 20 and report.result.hours
    assert report.endpoints["logs"].stopped == "failed"
    assert report.endpoints["logs"].cursor_after == "20"


def test_backfill_fetches_exactly_the_window_and_commits_no_cursor(make_poller) -> None:
    start = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    p = make_poller(events(180, start))  # 08:30 .. 11:29
    window = (datetime(2026, 3, 1, 9, tzinfo=UTC), datetime(2026, 3, 1, 10, tzinfo=UTC))
    report = p.run(window=window)
    assert set(report.result.hours) == {"2026-03-01-09:00"}
    assert report.result.events == 60
    assert p.cursors.get("fake", "logs") is None
    # again: nothing new lands
    assert p.run(window=window).result.events == 0


def test_backfill_that_cannot_finish_fails(make_poller) -> None:
    start = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    p = make_poller(events(600, start), time_budget_seconds=20, safety_margin_seconds=0)
    p.seconds_per_call = 5.0
    window = (start, start + timedelta(hours=10))
    with pytest.raises(BackfillIncomplete, match="ran out of its time budget"):
        p.run(window=window)


def test_one_broken_endpoint_does_not_keep_the_others_from_being_collected(
    make_poller,
) -> None:
    start = datetime.fromtimestamp(NOW, UTC) - timedelta(hours=1)
    p = make_poller(events(30, start))
    p.config = PollerConfig(
        source="fake", base_url="https://vendor.test", endpoints=("a", "broken", "c", "d")
    )
    real = p.call_api
    polled: list[str] = []

    def vendor(auth_token, endpoint, *a: Any, **kw: Any) -> PollResult:
        polled.append(endpoint)
        if endpoint in ("broken", "d"):
            raise VendorError(
                "fake", endpoint, 503, "Service Unavailable (gave up after 6 attempts)"
            )
        return real(auth_token, endpoint, *a, **kw)

    p.call_api = vendor  # type: ignore[method-assign]
    with pytest.raises(VendorError) as ei:
        p.run()
    assert {"a", "broken", "c", "d"} <= set(polled)
    msg = str(ei.value)
    assert "'broken'" in msg and "'d'" in msg and "HTTP 503" in msg
    assert "'a'" not in msg and "'c'" not in msg
    for endpoint in ("a", "c"):  # collected and committed despite the failure
        assert p.cursors.get("fake", endpoint).value == "30"


def test_a_failing_backfill_hands_back_what_it_landed(make_poller) -> None:
    start = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    p = make_poller(events(600, start), time_budget_seconds=20, safety_margin_seconds=0)
    p.seconds_per_call = 5.0
    with pytest.raises(BackfillIncomplete) as ei:
        p.run(window=(start, start + timedelta(hours=10)))
    report = failed_report(ei.value)
    assert report is not None and report.result.events > 0


def test_a_backfill_past_the_vendors_retention_fails_instead_of_looking_quiet(
    make_poller,
) -> None:
    """A vendor that no longer keeps an hour answers its window with nothing: the
    backfill must not turn that hour green with 0 events, as if it had been quiet."""
    p = make_poller([])
    p.retention = timedelta(days=90)  # type: ignore[misc]
    hour = datetime.fromtimestamp(NOW, UTC).replace(minute=0) - timedelta(days=100)
    with pytest.raises(BackfillBeyondRetention, match="90 days") as ei:
        p.run(window=(hour, hour + timedelta(hours=1)))
    assert p.calls == []  # nothing of it is left to ask for
    report = failed_report(ei.value)
    assert report is not None and report.result.events == 0


def test_a_backfill_across_the_retention_edge_lands_what_is_left_then_fails(
    make_poller,
) -> None:
    now = datetime.fromtimestamp(NOW, UTC) + timedelta(minutes=30)
    cutoff = now - timedelta(days=90)  # half past an hour
    start = cutoff.replace(minute=0) - timedelta(hours=1)
    # the vendor still returns only what is newer than the cutoff
    kept = [e for e in events(180, start) if datetime.fromisoformat(e["published"]) >= cutoff]
    p = make_poller(kept)
    p.clock.now = now.timestamp()  # type: ignore[attr-defined]
    p.retention = timedelta(days=90)  # type: ignore[misc]
    window = (cutoff.replace(minute=0), cutoff.replace(minute=0) + timedelta(hours=1))
    with pytest.raises(BackfillBeyondRetention, match="only what is newer than") as ei:
        p.run(window=window)
    report = failed_report(ei.value)
    assert report is not None and report.result.events == sum(
        1 for e in kept if datetime.fromisoformat(e["published"]) < window[1]
    )
    # an hour the vendor still keeps in full is backfilled as before
    inside = (window[0] + timedelta(hours=1), window[0] + timedelta(hours=2))
    assert p.run(window=inside).result.events == 60


class HungPoller(ListPoller):
    """The ListPoller behind a real HTTP call to a vendor that never answers."""

    def call_api(self, auth_token, endpoint, cursor=None, start_time=None, end_time=None):
        self.request("GET", f"https://vendor.test/{endpoint}")
        return super().call_api(auth_token, endpoint, cursor, start_time, end_time)


@pytest.mark.parametrize(
    ("budget", "queued"),
    [(240, 2), (90, 0)],
    ids=["backlog_cuts_the_budget_to_a_quarter", "a_90_s_budget"],
)
def test_a_hung_vendor_turns_the_run_red_even_when_its_share_is_short(
    tmp_path: Path, budget: int, queued: int
) -> None:
    """Three endpoints sharing a reduced or short budget each get less than the 30 s
    read timeout; a vendor that never answers must still fail the run."""
    clock = FakeClock()

    def never_answers(request: httpx.Request) -> httpx.Response:
        clock.now += request.extensions["timeout"]["read"]
        raise httpx.ReadTimeout("no answer", request=request)

    def sleep(s: float) -> None:
        clock.now += s

    writer = LakeWriter(
        LocalLake(tmp_path / "lake", tmp_path / "tmp"), SqliteDedupeStore(tmp_path / "s.db")
    )
    p = HungPoller(
        PollerConfig(
            source="fake",
            base_url="https://vendor.test",
            endpoints=("a", "b", "c"),
            time_budget_seconds=budget,
        ),
        http=HttpClient(transport=httpx.MockTransport(never_answers), sleep=sleep, clock=clock),
        secrets=None,  # type: ignore[arg-type]
        cursors=SqliteCursorStore(tmp_path / "s.db"),
        writer=writer,
        clock=clock,
    )
    p.events, p.calls = [], []
    try:
        with pytest.raises(EndpointsFailed) as ei:
            p.run(depth_probe=lambda: queued)
    finally:
        writer.close()
    assert set(ei.value.failures) == {"a", "b", "c"}
    assert "timed out (ReadTimeout)" in str(ei.value)
