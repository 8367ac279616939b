"""1Password Events API adapter against the simulator (VENDORS.md §3)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
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


class DeadEndpoint(httpx.HTTPTransport):
    """``itemusages`` never answers (each try eats a 30 s read timeout of the
    poller's fake clock); the other endpoints answer normally."""

    def __init__(self, dead: tuple[str, ...] = ("itemusages",)) -> None:
        super().__init__()
        self.now = time.time()
        self.dead = dead

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.rsplit("/", 1)[-1] in self.dead:
            self.now += 30.0
            raise httpx.ReadTimeout("no answer", request=request)
        return super().handle_request(request)


def with_dead(harness: Harness, dead: tuple[str, ...]):
    transport = DeadEndpoint(dead)
    p = harness.poller("onepassword", initial_lookback_hours=4, transport=transport)
    p.clock = p.http.clock = lambda: transport.now
    p.http.sleep = lambda s: setattr(transport, "now", transport.now + s)
    return p


def test_an_endpoint_outage_fails_the_run_after_the_others_are_collected(harness: Harness) -> None:
    """A vendor that stops answering is an outage, not throttling: the run fails (and
    the run-failure alert fires), naming the endpoint and the cause. The endpoints
    after it are still collected in the same run and keep their progress."""
    p = with_dead(harness, ("itemusages",))
    with pytest.raises(VendorError) as ei:
        p.run()
    msg = str(ei.value)
    assert "'itemusages'" in msg and "timed out (ReadTimeout)" in msg
    assert "'auditevents'" not in msg and "'signinattempts'" not in msg  # not blamed
    assert "collected: auditevents, signinattempts" in msg
    landed = set(harness.lake_ids("onepassword"))
    assert sim_ids(harness, "auditevents") | sim_ids(harness, "signinattempts") <= landed
    assert not sim_ids(harness, "itemusages") & landed
    cursors = {ep: harness.backend.cursors.get("onepassword", ep) for ep in ENDPOINTS}
    assert cursors["itemusages"] is None
    assert cursors["auditevents"] is not None and cursors["signinattempts"] is not None


def test_every_failed_endpoint_is_named(harness: Harness) -> None:
    p = with_dead(harness, ("auditevents", "signinattempts"))
    with pytest.raises(VendorError) as ei:
        p.run()
    msg = str(ei.value)
    assert "'auditevents'" in msg and "'signinattempts'" in msg and "timed out" in msg
    assert sim_ids(harness, "itemusages") <= set(harness.lake_ids("onepassword"))
