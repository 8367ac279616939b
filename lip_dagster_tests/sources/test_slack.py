"""Slack Audit Logs adapter against the simulator (VENDORS.md §2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lip_dagster.errors import VendorAuthError, VendorError
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
