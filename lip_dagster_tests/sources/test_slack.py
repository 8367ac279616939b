"""Slack Audit Logs adapter against the simulator (VENDORS.md §2)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from lip_dagster.components.coverage import hour_coverage, polling_head
from lip_dagster.errors import ConfigError, VendorAuthError, VendorError
from lip_dagster.lake.layout import hour_of
from lip_dagster.polling.window import WindowPass

from .conftest import Harness


def sim_ids(h: Harness) -> set[str]:
    return {e["id"] for e in h.sim.events("slack", "logs")}


def test_newest_first_pages_to_the_end(harness: Harness) -> None:
    report = harness.poller("slack", initial_lookback_hours=4).run()
    ids = harness.lake_ids("slack")
    assert set(ids) == sim_ids(harness) and max(ids.values()) == 1
    assert report.endpoints["logs"].stopped == "caught_up"
    st = WindowPass.loads(harness.backend.cursors.get("slack", "logs").value)
    newest = max(e["date_create"] for e in harness.sim.events("slack", "logs"))
    assert st.page is None and st.hw == newest


def test_a_crash_mid_window_resumes_the_same_window(harness: Harness) -> None:
    p = harness.poller("slack", initial_lookback_hours=4)
    real = p.call_api
    calls = {"n": 0}

    def dies_on_third_page(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise VendorError("slack", "logs", 500, "died mid-window")
        return real(*a, **kw)

    p.call_api = dies_on_third_page  # type: ignore[method-assign]
    with pytest.raises(VendorError):
        p.run()
    mid = WindowPass.loads(harness.backend.cursors.get("slack", "logs").value)
    assert mid.page  # mid-window: the high-water mark has not jumped to the newest event
    harness.poller("slack").run()
    assert set(harness.lake_ids("slack")) == sim_ids(harness)


def test_next_run_picks_up_new_entries(harness: Harness) -> None:
    harness.poller("slack", initial_lookback_hours=4).run()
    now = datetime.now(UTC)
    harness.sim.add_events("slack", "logs", 12, start=now - timedelta(seconds=1), end=now)
    report = harness.poller("slack").run()
    assert report.result.events == 12
    assert set(harness.lake_ids("slack")) == sim_ids(harness)


def test_an_entry_published_two_minutes_late_lands_with_the_default_overlap(
    harness: Harness,
) -> None:
    """A newer entry was read first; one stamped two minutes earlier becomes visible
    only afterwards. The next window re-reads the 5 minutes before the previous one's
    end, so it is read; the newer entry re-read with it is dropped as a duplicate."""
    harness.poller("slack", initial_lookback_hours=4).run()
    now = datetime.now(UTC)
    harness.sim.add_events("slack", "logs", 1, start=now - timedelta(seconds=2), end=now)
    harness.poller("slack").run()
    late = harness.sim.add_events(
        "slack", "logs", 3, start=now - timedelta(minutes=2), end=now - timedelta(seconds=110)
    )
    report = harness.poller("slack").run()
    ids = harness.lake_ids("slack")
    assert {e["id"] for e in late} <= set(ids) and max(ids.values()) == 1
    assert report.result.events == 3 and report.result.duplicates >= 1
    st = WindowPass.loads(harness.backend.cursors.get("slack", "logs").value)
    assert st.overlap == 300


@pytest.mark.parametrize("value", ["five", "-1", "nan", "20000"])
def test_a_bad_overlap_names_the_option(harness: Harness, value: str) -> None:
    with pytest.raises(ConfigError, match="'overlap_minutes'"):
        harness.poller("slack", initial_lookback_hours=4, options={"overlap_minutes": value}).run()
    assert harness.backend.cursors.get("slack", "logs") is None


def test_429_retry_after_then_success(harness: Harness) -> None:
    harness.sim.script("slack", [429])
    report = harness.poller("slack", initial_lookback_hours=4).run()
    assert report.throttled == 1 and any(s >= 1 for s in harness.slept)
    assert set(harness.lake_ids("slack")) == sim_ids(harness)


def test_bad_token(harness: Harness, monkeypatch) -> None:
    monkeypatch.setenv("LIP_SECRET_SLACK_TOKEN", "xoxp-wrong")
    with pytest.raises(VendorAuthError, match="invalid_auth"):
        harness.poller("slack").run()


def test_backfill_window(harness: Harness) -> None:
    events = harness.sim.events("slack", "logs")
    mid = datetime.fromtimestamp(events[len(events) // 2]["date_create"], UTC)
    start = mid.replace(minute=0, second=0, microsecond=0)
    window = (start, start + timedelta(hours=1))
    harness.poller("slack").run(window=window)
    expected = {
        e["id"] for e in events if window[0].timestamp() <= e["date_create"] < window[1].timestamp()
    }
    assert set(harness.lake_ids("slack")) == expected


# ---------------------------------------------------------------- coverage


class SlowVendor:
    """Each page costs ``seconds`` of the poller's (fake) clock."""

    def __init__(self, poller, start: float, seconds: float) -> None:
        self.now = start
        self.real = poller.call_api
        self.seconds = seconds
        poller.clock = lambda: self.now
        poller.call_api = self

    def __call__(self, *a, **kw):
        page = self.real(*a, **kw)
        self.now += self.seconds
        return page


def hours_complete_but_incomplete(h: Harness) -> list[str]:
    """Hours that coverage calls complete while the vendor holds events of them that
    are not in the lake: what DESIGN §2 says a materialized hour must never be."""
    head = polling_head(h.backend, "slack", ["logs"])
    landed = set(h.lake_ids("slack"))
    by_hour: dict[str, set[str]] = {}
    for e in h.sim.events("slack", "logs"):
        by_hour.setdefault(hour_of(datetime.fromtimestamp(e["date_create"], UTC)), set()).add(
            e["id"]
        )
    return [
        hour
        for hour, ids in sorted(by_hour.items())
        if hour_coverage(hour, head) == "complete" and not ids <= landed
    ]


def test_a_run_stopped_mid_window_calls_no_unfetched_hour_complete(harness: Harness) -> None:
    """Pages come newest first: the first pages of a window say nothing about the
    older hours still to be paged."""
    p = harness.poller("slack", initial_lookback_hours=4, time_budget_seconds=240)
    SlowVendor(p, time.time(), seconds=100)
    report = p.run()  # three pages, then the budget ends
    assert report.endpoints["logs"].stopped == "budget"
    assert report.result.events < len(harness.sim.events("slack", "logs"))
    assert hours_complete_but_incomplete(harness) == []
    # the next run finishes the window: then its hours are complete, and truly so
    assert harness.poller("slack").run().endpoints["logs"].stopped == "caught_up"
    head = polling_head(harness.backend, "slack", ["logs"])
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    assert head is not None and hour_coverage(hour_of(two_hours_ago), head) == "complete"
    assert set(harness.lake_ids("slack")) == sim_ids(harness)
    assert hours_complete_but_incomplete(harness) == []


@pytest.mark.usefixtures("vendor_clock_follows_ours")
def test_a_finished_window_covers_only_up_to_its_own_end(harness: Harness) -> None:
    """The window was asked up to 30 s before the hour's end; its ten pages took 200 s.
    An event 10 s after the window's end is not fetched yet, so the hour stays open;
    and the window covers only up to its end minus the 5-minute overlap, since Slack
    may still make entries that old visible."""
    end_of_hour = (datetime.now(UTC) + timedelta(hours=1)).replace(
        minute=0, second=0, microsecond=0
    )
    window_end = end_of_hour - timedelta(seconds=30)
    later = window_end + timedelta(seconds=10)
    harness.sim.add_events("slack", "logs", 1, start=later, end=later + timedelta(seconds=1))
    p = harness.poller("slack", initial_lookback_hours=4)
    SlowVendor(p, window_end.timestamp(), seconds=20)
    assert p.run().endpoints["logs"].stopped == "caught_up"
    assert hours_complete_but_incomplete(harness) == []
    head = polling_head(harness.backend, "slack", ["logs"])
    assert head == window_end - timedelta(minutes=5)
    assert hour_coverage(hour_of(window_end), head) == "open"


FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "slack"


class _WindowedSlack:
    """A Slack that honours ``oldest``/``latest`` for its entries, and once returns one
    entry outside the window asked for (stamped far in the future)."""

    def __init__(self, rogue_date: int) -> None:
        self.entries: list[dict] = []
        self.rogue_date = rogue_date
        self.rogue_sent = False

    def add(self, eid: str, date_create: int) -> None:
        entry = orjson.loads((FIXTURES / "audit_entry.json").read_bytes())
        entry.update(id=eid, date_create=date_create)
        self.entries.append(entry)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        oldest = int(request.url.params["oldest"])
        latest = int(request.url.params["latest"])
        page = [e for e in self.entries if oldest <= e["date_create"] <= latest]
        if not self.rogue_sent:
            self.rogue_sent = True
            rogue = orjson.loads((FIXTURES / "audit_entry.json").read_bytes())
            rogue.update(id="rogue", date_create=self.rogue_date)
            page.append(rogue)
        page.sort(key=lambda e: -e["date_create"])
        body = {"ok": True, "entries": page, "response_metadata": {"next_cursor": ""}}
        return httpx.Response(200, json=body)


@pytest.mark.parametrize("rogue", ["a-year-ahead", "milliseconds"])
def test_an_entry_outside_the_window_asked_for_does_not_skip_the_next_window(
    harness: Harness, rogue: str
) -> None:
    """Slack returns entries of ``[oldest, latest]``; one stamped past ``latest`` (a
    vendor clock or unit slip) once moved the next window's start past its end, and
    every later window asked for nothing but the current second: entries published
    in between were never read, while their hours were reported complete."""
    # a year ahead of the window asked for, or milliseconds where Slack documents
    # seconds (computed here, not at collection: test ids must not depend on time)
    rogue_date = (
        int(time.time()) + 86_400 * 365 if rogue == "a-year-ahead" else int(time.time() * 1000)
    )
    vendor = _WindowedSlack(rogue_date)
    now = int(time.time())
    vendor.add("first", now - 60)
    transport = httpx.MockTransport(vendor)
    harness.poller("slack", initial_lookback_hours=1, transport=transport).run()
    assert set(harness.lake_ids("slack")) == {"first", "rogue"}
    # an entry Slack makes visible late, inside the re-read overlap of the next window
    vendor.add("late", now - 10)
    harness.poller("slack", transport=transport).run()
    assert "late" in harness.lake_ids("slack")


def test_our_clock_ahead_of_slacks_by_more_than_the_overlap_loses_nothing(
    harness: Harness,
) -> None:
    """Each window is asked up to our clock, and Slack answers with what it has
    stamped by its own. With our clock 10 minutes ahead (a host whose NTP stopped),
    the next window started 5 minutes before our clock, still 5 minutes after
    Slack's: everything Slack stamped in between was never read, run after run.
    Windows now end at Slack's clock (its Date header) when that is behind."""
    ahead = 600.0

    def poller():
        p = harness.poller("slack", initial_lookback_hours=4)
        p.clock = lambda: time.time() + ahead
        return p

    poller().run()
    for _ in range(2):
        now = datetime.now(UTC)
        new = harness.sim.add_events("slack", "logs", 5, start=now, end=now + timedelta(seconds=1))
        time.sleep(1.1)  # published: Slack's clock has passed them
        report = poller().run()
        assert {e["id"] for e in new} <= set(harness.lake_ids("slack"))
        assert report.result.events == 5
    st = WindowPass.loads(harness.backend.cursors.get("slack", "logs").value)
    assert st.latest <= time.time() + 1  # the window ended at Slack's clock, not ours
