"""Google Workspace Reports adapter against the simulator (VENDORS.md §4)."""

from __future__ import annotations

import gzip
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from lip_dagster.components.coverage import hour_coverage, polling_head
from lip_dagster.errors import ConfigError, VendorAuthError, VendorError
from lip_dagster.lake.envelope import parse_timestamp
from lip_dagster.lake.layout import hour_of
from lip_dagster.polling.base import BasePoller
from lip_dagster.polling.window import WindowPass

from .conftest import Harness


def activity_id(event: dict) -> str:
    """The id LIP gives a Google activity (VENDORS.md §4)."""
    parts = ("time", "uniqueQualifier", "applicationName", "customerId")
    return "|".join(str(event["id"][k]) for k in parts)


def sim_ids(h: Harness, app: str) -> set[str]:
    return {activity_id(e) for e in h.sim.events("google_workspace", app)}


def test_every_application_lands_with_string_int64_identity(harness: Harness) -> None:
    report = harness.poller("google_workspace", initial_lookback_hours=4).run()
    expected = set().union(*(sim_ids(harness, a) for a in ("admin", "login", "drive", "token")))
    ids = harness.lake_ids("google_workspace")
    assert set(ids) == expected and max(ids.values()) == 1
    assert all(r.stopped == "caught_up" for r in report.endpoints.values())
    qualifiers = [i.split("|")[1] for i in ids]
    assert any(q.startswith("-") for q in qualifiers)  # negative int64s survive as strings
    root = harness.backend.settings.lake_dir / "source=google_workspace"
    line = gzip.decompress(next(root.rglob("*.gz")).read_bytes()).splitlines()[0]
    assert isinstance(orjson.loads(line)["id"]["uniqueQualifier"], str)


def test_token_is_fetched_once_for_many_pages(harness: Harness) -> None:
    harness.poller("google_workspace", initial_lookback_hours=4, page_size=50).run()
    assert harness.sim.tokens_issued.get("google_workspace") == 1


def test_overlap_rereads_are_dropped_as_duplicates(harness: Harness) -> None:
    harness.poller("google_workspace", initial_lookback_hours=4, endpoints=("login",)).run()
    again = harness.poller(
        "google_workspace", endpoints=("login",), options={"overlap_minutes": "600"}
    ).run()
    assert again.result.events == 0 and again.result.duplicates > 0


def _late_ids(harness: Harness, app: str, minutes_late: float) -> set[str]:
    """Activities Google publishes now, stamped ``minutes_late`` minutes ago."""
    when = datetime.now(UTC) - timedelta(minutes=minutes_late)
    late = harness.sim.add_events("google", app, 3, when, when + timedelta(seconds=30))
    return {activity_id(e) for e in late}


def test_each_application_rereads_its_own_overlap(harness: Harness) -> None:
    """Token activity published 90 minutes late is still read (its overlap is two
    hours); login activity as late is past login's 30 minutes, until the tenant
    widens that one application's overlap."""
    apps = ("login", "token")
    harness.poller("google_workspace", initial_lookback_hours=4, endpoints=apps).run()
    late_token = _late_ids(harness, "token", 90)
    late_login = _late_ids(harness, "login", 90)
    harness.poller("google_workspace", endpoints=apps).run()
    landed = set(harness.lake_ids("google_workspace"))
    assert late_token <= landed
    assert not late_login & landed
    harness.poller(
        "google_workspace", endpoints=apps, options={"overlap_minutes_login": "120"}
    ).run()
    assert late_login <= set(harness.lake_ids("google_workspace"))


def _at(harness: Harness, clock: dict[str, float], **kw) -> BasePoller:
    """A poller (and its HTTP client) whose clock reads ``clock["now"]``."""
    p = harness.poller("google_workspace", **kw)
    p.clock = p.http.clock = lambda: clock["now"]
    return p


def _window(harness: Harness, app: str) -> WindowPass:
    return WindowPass.loads(harness.backend.cursors.get("google_workspace", app).value)


@pytest.mark.usefixtures("vendor_clock_follows_ours")
def test_a_quiet_application_never_lands_its_last_activity_twice(harness: Harness) -> None:
    """admin on a small tenant: no activity for a month. Each window starts at the end
    of the previous one minus the overlap, not at the last activity ever seen, so that
    activity is not re-read on every poll, and once its dedupe record has expired (the
    30-day TTL) it does not land a second time."""
    clock = {"now": time.time()}
    _at(harness, clock, initial_lookback_hours=4, endpoints=("admin",)).run()
    for _ in range(2):  # two polls, two quiet hours apart
        before = _window(harness, "admin")
        clock["now"] += 2 * 3600
        report = _at(harness, clock, endpoints=("admin",)).run()
        after = _window(harness, "admin")
        assert after.oldest == before.latest - 30 * 60 and after.latest == clock["now"]
        assert report.result.events == 0
    # the second re-read overlap held nothing: the last activity is not read again
    assert report.result.duplicates == 0
    assert harness.backend.dedupe.prune(now=clock["now"] + 31 * 86_400) > 0
    clock["now"] += 31 * 86_400
    report = _at(harness, clock, endpoints=("admin",)).run()
    assert report.result.events == 0 and report.result.duplicates == 0
    ids = harness.lake_ids("google_workspace")
    assert set(ids) == sim_ids(harness, "admin") and max(ids.values()) == 1


@pytest.mark.usefixtures("vendor_clock_follows_ours")
def test_an_hour_is_complete_only_once_its_overlap_has_been_polled(harness: Harness) -> None:
    """Token activity comes up to two hours late. Ten minutes after an hour ended it
    is not complete; activity of it that Google publishes then lands in an hour still
    open; two hours and more after its end, once a poll has re-read that far, it is
    complete and holds everything Google has of it."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hour = hour_of(end - timedelta(minutes=30))
    clock = {"now": (end + timedelta(minutes=10)).timestamp()}

    def coverage() -> str:
        return hour_coverage(hour, polling_head(harness.backend, "google_workspace", ["token"]))

    _at(harness, clock, initial_lookback_hours=4, endpoints=("token",)).run()
    assert coverage() == "open"
    when = end - timedelta(minutes=5)
    late = harness.sim.add_events("google", "token", 3, when, when + timedelta(seconds=30))
    clock["now"] += 10 * 60
    _at(harness, clock, endpoints=("token",)).run()
    landed = set(harness.lake_ids("google_workspace"))
    assert {activity_id(e) for e in late} <= landed
    assert coverage() == "open"
    clock["now"] = (end + timedelta(minutes=125)).timestamp()
    _at(harness, clock, endpoints=("token",)).run()
    assert coverage() == "complete"
    of_hour = {
        activity_id(e)
        for e in harness.sim.events("google_workspace", "token")
        if hour_of(parse_timestamp(e["id"]["time"])) == hour
    }
    assert of_hour <= set(harness.lake_ids("google_workspace"))


@pytest.mark.parametrize("value", ["thirty", "-5", "nan", "20000"])
def test_a_bad_overlap_names_the_option(harness: Harness, value: str) -> None:
    with pytest.raises(ConfigError, match="overlap_minutes_token"):
        harness.poller(
            "google_workspace", endpoints=("token",), options={"overlap_minutes_token": value}
        ).run()


def test_503_overload_then_success(harness: Harness) -> None:
    harness.sim.script("google", [503, 503])
    harness.poller("google_workspace", initial_lookback_hours=4, endpoints=("admin",)).run()
    assert set(harness.lake_ids("google_workspace")) == sim_ids(harness, "admin")


def test_a_token_endpoint_answering_503_is_an_outage_not_throttling(harness: Harness) -> None:
    """503 is the Reports API's over-quota answer (VENDORS.md §4), not the OAuth token
    endpoint's: a token endpoint failing on every attempt fails the run, where a
    throttle would end it green with nothing collected."""
    harness.sim.script("google", [503] * 3)
    with pytest.raises(VendorError, match=r"'token': HTTP 503") as ei:
        harness.poller("google_workspace", endpoints=("admin",), max_attempts=3).run()
    assert not isinstance(ei.value, VendorAuthError)
    assert harness.backend.cursors.get("google_workspace", "admin") is None


def test_5xx_beyond_the_bound(harness: Harness) -> None:
    harness.sim.script("google", [500, 500, 500])
    with pytest.raises(VendorError, match="HTTP 500"):
        harness.poller("google_workspace", endpoints=("admin",), max_attempts=2).run()


def test_wrong_delegated_admin_key_is_refused(harness: Harness, monkeypatch) -> None:
    sa = orjson.loads(harness.sim.credentials()["google/service-account"])
    sa["client_email"] = "someone-else@project.iam.gserviceaccount.com"
    monkeypatch.setenv("LIP_SECRET_GOOGLE_SERVICE_ACCOUNT", orjson.dumps(sa).decode())
    with pytest.raises(VendorAuthError, match="token"):
        harness.poller("google_workspace", endpoints=("admin",)).run()


def test_a_malformed_key_file_names_the_problem_not_the_key(harness: Harness, monkeypatch) -> None:
    monkeypatch.setenv("LIP_SECRET_GOOGLE_SERVICE_ACCOUNT", "-----BEGIN PRIVATE KEY----- oops")
    with pytest.raises(ConfigError, match="not a Google key file") as ei:
        harness.poller("google_workspace", endpoints=("admin",)).run()
    assert "oops" not in str(ei.value)


def test_a_run_stopped_mid_window_calls_no_unfetched_hour_complete(harness: Harness) -> None:
    """Activities come newest first: until a window is paged to its end, coverage does
    not move, so the older hours of the window are not called complete."""
    p = harness.poller(
        "google_workspace", initial_lookback_hours=4, endpoints=("login",), page_size=50
    )
    fake = {"now": time.time()}
    real = p.call_api

    def slow(*a, **kw):
        page = real(*a, **kw)
        fake["now"] += 100
        return page

    p.clock = lambda: fake["now"]
    p.call_api = slow  # type: ignore[method-assign]
    assert p.run().endpoints["login"].stopped == "budget"
    head = polling_head(harness.backend, "google_workspace", ["login"])
    landed = set(harness.lake_ids("google_workspace"))
    by_hour: dict[str, set[str]] = {}
    for e in harness.sim.events("google_workspace", "login"):
        key = "|".join(
            str(e["id"][k]) for k in ("time", "uniqueQualifier", "applicationName", "customerId")
        )
        by_hour.setdefault(hour_of(parse_timestamp(e["id"]["time"])), set()).add(key)
    wrong = [
        h
        for h, ids in by_hour.items()
        if hour_coverage(h, head) == "complete" and not ids <= landed
    ]
    assert wrong == []


class SlowTransport(httpx.HTTPTransport):
    """Every answer takes 30 s of the poller's (fake) clock: an overloaded API."""

    def __init__(self) -> None:
        super().__init__()
        self.now = time.time()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.now += 30.0
        return super().handle_request(request)


def overloaded(harness: Harness, status: int):
    slow = SlowTransport()
    p = harness.poller(
        "google_workspace",
        initial_lookback_hours=4,
        endpoints=("admin",),
        transport=slow,
        time_budget_seconds=100,
    )
    p.clock = p.http.clock = lambda: slow.now
    p.get_auth_token()  # the token is fine; the activities API is the one answering
    harness.sim.script("google", [status] * 6)
    return p


def test_503_is_googles_rate_limit_so_a_long_one_ends_the_poll_cleanly(harness: Harness) -> None:
    """VENDORS.md §4: Google answers over-quota with 503. Still throttled when the
    budget ends: the poll stops cleanly and the next run carries on."""
    report = overloaded(harness, 503).run()
    assert report.endpoints["admin"].stopped == "rate_limited" and report.throttled >= 1


def test_a_500_storm_past_the_budget_is_an_outage_and_fails_the_run(harness: Harness) -> None:
    with pytest.raises(VendorError, match=r"'admin': HTTP 500") as ei:
        overloaded(harness, 500).run()
    assert "time budget" in str(ei.value)


ACTIVITY = Path(__file__).resolve().parent.parent / "fixtures/google_workspace/activity.json"


class OneFutureActivity(httpx.HTTPTransport):
    """The simulator's answers, with one activity stamped a year past the window asked
    for added to the first page of activities (a vendor clock slip)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        resp = super().handle_request(request)
        if self.sent or "/activity/" not in request.url.path or resp.status_code != 200:
            return resp
        self.sent = True
        body = orjson.loads(resp.read())
        rogue = orjson.loads(ACTIVITY.read_bytes())
        rogue["id"].update(
            applicationName="login",
            time=datetime.fromtimestamp(time.time() + 86_400 * 365, UTC).isoformat(),
        )
        body["items"] = [rogue, *body.get("items", [])]
        return httpx.Response(200, json=body)


def test_an_activity_past_the_window_does_not_skip_the_next_window(harness: Harness) -> None:
    """One activity stamped after the window asked for once moved the next window's
    start past its end: every later window asked for an empty span, activities
    published meanwhile were never read and their hours were called complete."""
    transport = OneFutureActivity()
    harness.poller(
        "google_workspace", initial_lookback_hours=4, endpoints=("login",), transport=transport
    ).run()
    now = datetime.now(UTC)
    late = harness.sim.add_events(
        "google_workspace", "login", 3, start=now - timedelta(minutes=2), end=now
    )
    harness.poller("google_workspace", endpoints=("login",), transport=transport).run()
    assert {activity_id(e) for e in late} <= set(harness.lake_ids("google_workspace"))
