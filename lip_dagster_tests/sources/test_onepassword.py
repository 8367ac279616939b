"""1Password Events API adapter against the simulator (VENDORS.md §3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lip_dagster.errors import VendorAuthError, VendorError
from lip_dagster.sources.onepassword import ENDPOINTS

from .conftest import Harness


def sim_ids(h: Harness, endpoint: str) -> set[str]:
    return {e["uuid"] for e in h.sim.events("onepassword", endpoint)}


def test_three_endpoints_land_every_event_once(harness: Harness) -> None:
    report = harness.poller("onepassword", initial_lookback_hours=4).run()
    expected = set().union(*(sim_ids(harness, ep) for ep in ENDPOINTS))
    ids = harness.lake_ids("onepassword")
    assert set(ids) == expected and max(ids.values()) == 1
    assert {ep: r.stopped for ep, r in report.endpoints.items()} == {
        ep: "caught_up" for ep in ENDPOINTS
    }


def test_first_request_resets_the_cursor_then_uses_the_returned_one(harness: Harness) -> None:
    p = harness.poller("onepassword", initial_lookback_hours=4, endpoints=("auditevents",))
    first = p.call_api(
        p.get_auth_token(), "auditevents", start_time=datetime.now(UTC) - timedelta(hours=4)
    )
    assert first.cursor and first.events
    p.run()
    stored = p.cursors.get("onepassword", "auditevents")
    assert stored is not None and stored.value
    now = datetime.now(UTC)
    harness.sim.add_events(
        "onepassword", "auditevents", 7, start=now - timedelta(seconds=5), end=now
    )
    again = harness.poller("onepassword", endpoints=("auditevents",)).run()
    assert again.result.events == 7  # the persistent cursor picks up only what is new


def test_has_more_then_an_empty_page_is_not_an_error(harness: Harness) -> None:
    # 900 events in pages of 300: the last full page says has_more, the next is empty
    p = harness.poller(
        "onepassword", page_size=300, endpoints=("signinattempts",), initial_lookback_hours=4
    )
    report = p.run()
    assert report.endpoints["signinattempts"].stopped == "caught_up"
    assert set(harness.lake_ids("onepassword")) == sim_ids(harness, "signinattempts")


def test_429_then_success_and_5xx_beyond_the_bound(harness: Harness) -> None:
    harness.sim.script("onepassword", [429])
    harness.poller("onepassword", endpoints=("itemusages",), initial_lookback_hours=4).run()
    assert set(harness.lake_ids("onepassword")) == sim_ids(harness, "itemusages")
    harness.sim.script("onepassword", [500, 500])
    with pytest.raises(VendorError, match=r"'onepassword' endpoint 'itemusages': HTTP 500"):
        harness.poller("onepassword", endpoints=("itemusages",), max_attempts=2).run()


def test_bad_token(harness: Harness, monkeypatch) -> None:
    monkeypatch.setenv("LIP_SECRET_ONEPASSWORD_TOKEN", "eyJ.bad.token")
    with pytest.raises(VendorAuthError, match="HTTP 401") as ei:
        harness.poller("onepassword").run()
    assert "eyJ.bad.token" not in str(ei.value)


def test_nanosecond_timestamps_file_under_the_right_hour(harness: Harness) -> None:
    harness.poller("onepassword", initial_lookback_hours=4, endpoints=("auditevents",)).run()
    root = harness.backend.settings.lake_dir / "source=onepassword"
    import gzip

    import orjson

    for p in root.rglob("*.gz"):
        hour = p.parent.name.split("=")[1]
        for line in gzip.decompress(p.read_bytes()).splitlines():
            rec = orjson.loads(line)
            assert rec["timestamp"][11:13] == hour and rec["_lip"]["hour_from"] == "event"
