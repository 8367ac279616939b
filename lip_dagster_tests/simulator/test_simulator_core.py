"""Simulator machinery other tests rely on: fault injection and scripts (with each
vendor's throttling headers), live event arrival, ground truth and id uniqueness,
``add_events``, the benchmark generator, lifecycle and the ``python -m`` entry point."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from lip_dagster.simulator import Faults, SimConfig, VendorSimulator
from lip_dagster.simulator.generators import (
    google_events,
    okta_events,
    onepassword_events,
    slack_events,
)

ENDPOINTS = {
    "okta": ["logs"],
    "onepassword": ["auditevents", "itemusages", "signinattempts"],
    "slack": ["logs"],
    "google_workspace": ["admin", "login", "drive", "token"],
}


@pytest.fixture(scope="module")
def sim() -> Iterator[VendorSimulator]:
    with VendorSimulator(
        SimConfig(seed=3, history_hours=1, events_per_hour=120, live_rate_per_s=0)
    ) as s:
        yield s


def google_token(sim: VendorSimulator) -> str:
    import jwt

    sa = orjson.loads(sim.credentials()["google/service-account"])
    now = int(time.time())
    a = jwt.encode(
        {
            "iss": sa["client_email"],
            "sub": sim.credentials()["google/admin-email"],
            "scope": "https://www.googleapis.com/auth/admin.reports.audit.readonly",
            "aud": sa["token_uri"],
            "iat": now,
            "exp": now + 600,
        },
        sa["private_key"],
        algorithm="RS256",
    )
    resp = httpx.post(
        sa["token_uri"],
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": a},
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def call(sim: VendorSimulator, vendor: str, token: str = "") -> httpx.Response:
    """One ordinary list request to ``vendor``."""
    creds = sim.credentials()
    if vendor == "okta":
        return httpx.get(
            f"{sim.url('okta')}/api/v1/logs",
            params={"limit": 5},
            headers={"Authorization": f"SSWS {creds['okta/api-token']}"},
        )
    if vendor == "slack":
        return httpx.get(
            f"{sim.url('slack')}/audit/v1/logs",
            params={"limit": 5},
            headers={"Authorization": f"Bearer {creds['slack/token']}"},
        )
    if vendor == "onepassword":
        return httpx.post(
            f"{sim.url('onepassword')}/api/v1/auditevents",
            json={"limit": 5},
            headers={"Authorization": f"Bearer {creds['onepassword/token']}"},
        )
    return httpx.get(
        f"{sim.url('google')}/admin/reports/v1/activity/users/all/applications/login",
        params={"maxResults": 5},
        headers={"Authorization": f"Bearer {token}"},
    )


def test_scripted_statuses_carry_each_vendors_headers(sim: VendorSimulator) -> None:
    gtoken = google_token(sim)
    sim.clear_request_log()

    sim.script("okta", [429, 200])
    r = call(sim, "okta")
    assert r.status_code == 429 and r.json()["errorCode"] == "E0000047"
    assert r.headers["X-Rate-Limit-Remaining"] == "0"
    assert 0 <= int(r.headers["X-Rate-Limit-Reset"]) - time.time() <= 2
    assert call(sim, "okta").status_code == 200

    sim.script("slack", [429])
    r = call(sim, "slack")
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert r.json() == {"ok": False, "error": "ratelimited"}
    assert "X-Rate-Limit-Remaining" not in r.headers

    sim.script("onepassword", [429])
    r = call(sim, "onepassword")
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert set(r.json()) == {"Error"} and r.json()["Error"]["Message"]

    sim.script("google", [429, 503])
    r = call(sim, "google_workspace", gtoken)
    assert r.status_code == 429 and r.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    r = call(sim, "google_workspace", gtoken)
    assert r.status_code == 503 and r.json()["error"]["code"] == 503

    for vendor in ("okta", "slack", "onepassword"):
        sim.script(vendor, [500, 502, 503])
        statuses = [call(sim, vendor).status_code for _ in range(4)]
        assert statuses == [500, 502, 503, 200], vendor

    log = sim.request_log
    assert log[0] == ("okta", "GET", "/okta/api/v1/logs", 429)
    assert (
        "google_workspace",
        "GET",
        "/google/admin/reports/v1/activity/users/all/applications/login",
        503,
    ) in log


def test_random_faults_are_seeded_and_vendor_shaped() -> None:
    def run() -> list[int]:
        faults = Faults(rate_429=0.3, rate_5xx=0.3, seed=42)
        with VendorSimulator(SimConfig(history_hours=0.1, live_rate_per_s=0, faults=faults)) as s:
            return [call(s, "slack").status_code for _ in range(30)]

    first, second = run(), run()
    assert first == second
    assert {429, 200} <= set(first) and set(first) <= {200, 429, 500, 502, 503}


def test_google_overload_is_503_and_faults_can_change_at_runtime(sim: VendorSimulator) -> None:
    gtoken = google_token(sim)
    sim.faults.rate_429 = 1.0
    sim.faults.vendors = ("google_workspace",)
    try:
        r = call(sim, "google_workspace", gtoken)
        assert r.status_code == 503 and r.json()["error"]["status"] == "UNAVAILABLE"
        assert call(sim, "slack").status_code == 200  # other vendors unaffected
    finally:
        sim.faults.rate_429 = 0.0
        sim.faults.vendors = ()
    assert call(sim, "google_workspace", gtoken).status_code == 200


def test_slow_responses(sim: VendorSimulator) -> None:
    sim.faults.slow_seconds = 0.4
    sim.script("slack", ["slow"])
    t0 = time.monotonic()
    assert call(sim, "slack").status_code == 200
    slow = time.monotonic() - t0
    assert slow >= 0.4
    t0 = time.monotonic()
    call(sim, "slack")
    assert time.monotonic() - t0 < slow  # the script held one answer back, not all


def test_live_events_appear_as_time_passes() -> None:
    with VendorSimulator(
        SimConfig(history_hours=0.05, events_per_hour=100, live_rate_per_s=40)
    ) as s:
        before = len(s.events("slack", "logs"))
        time.sleep(0.3)
        body = call(s, "slack").json()  # generation happens lazily, at request time
        after = s.events("slack", "logs")
        assert len(after) >= before + 8
        assert body["entries"][0]["date_create"] == max(e["date_create"] for e in after)
        assert len(s.events("okta", "logs")) == before  # other endpoints not yet asked


def test_a_retention_window_keeps_a_long_running_simulator_level() -> None:
    """The demo's simulator keeps two hours, as a vendor with a short retention
    would: five simulated hours at 5 events/s hold about one hour's events (plus the
    chunk it expires at once), their ids are forgotten with them, and a polling
    cursor from before the window resumes at the oldest event kept."""
    from lip_dagster.simulator.generators import NS
    from lip_dagster.simulator.store import SimState

    hour = 3600 * NS
    state = SimState(seed=3, live_rate_per_s=5, retention_hours=1)
    t0 = time.time_ns()
    state.add("okta", "logs", 600, t0 - 2 * hour, t0)
    state.start_clock(t0)
    stream = state.stream("okta", "logs")
    kept = []
    for h in range(1, 6):
        state.advance("okta", "logs", now=t0 + h * hour)
        kept.append(len(stream.blobs.items))
    assert len(stream) == 600 + 5 * 5 * 3600  # sequence numbers never move
    assert max(kept) <= 5 * 3600 * 1.1 + 1000 < len(stream) / 4
    assert len(state._ids["okta"]) == kept[-1]  # forgotten with their events
    assert min(stream.persist.items) >= t0 + 4 * hour - hour // 10
    seqs, pos = stream.page_persisted(0, 100, None)  # a cursor taken at the start
    assert seqs[0] == stream.first > 0 and pos == stream.first + 100
    assert [orjson.loads(b)["uuid"] for b in stream.blobs[stream.first : stream.first + 2]] == [
        stream.event(s)["uuid"] for s in seqs[:2]
    ]
    keys = stream.sorted_keys()
    assert keys and all(seq >= stream.first for _, seq in keys)


def test_event_ids_unique_across_the_run(sim: VendorSimulator) -> None:
    now = datetime.now(UTC)
    for vendor, endpoints in ENDPOINTS.items():
        for ep in endpoints:
            sim.add_events(vendor, ep, 50, now - timedelta(minutes=5), now)
    ids: list[str] = []
    for vendor, endpoints in ENDPOINTS.items():
        for ep in endpoints:
            for e in sim.events(vendor, ep):
                ident = {
                    "okta": lambda x: x["uuid"],
                    "slack": lambda x: x["id"],
                    "onepassword": lambda x: x["uuid"],
                    "google_workspace": lambda x: x["id"]["uniqueQualifier"],
                }[vendor](e)
                ids.append(f"{vendor}:{ident}")
    assert len(ids) == len(set(ids)) == 9 * (120 + 50)


def test_add_events_window_and_visibility(sim: VendorSimulator) -> None:
    start = datetime.now(UTC) - timedelta(days=2)
    end = start + timedelta(hours=1)
    added = sim.add_events("okta", "logs", 40, start, end)
    assert len(added) == 40
    for e in added:
        published = datetime.fromisoformat(e["published"].replace("Z", "+00:00"))
        assert start <= published < end
    assert sim.events("okta", "logs")[-40:] == added  # appended in persistence order
    resp = httpx.get(
        f"{sim.url('okta')}/api/v1/logs",
        params={
            "since": start.isoformat().replace("+00:00", "Z"),
            "until": end.isoformat().replace("+00:00", "Z"),
            "limit": 1000,
        },
        headers={"Authorization": f"SSWS {sim.credentials()['okta/api-token']}"},
    )
    assert {e["uuid"] for e in resp.json()} == {e["uuid"] for e in added}
    added[0]["uuid"] = "mutated"  # copies: the served data is unaffected
    assert sim.events("okta", "logs")[-40]["uuid"] != "mutated"
    with pytest.raises(ValueError, match="unknown"):
        sim.add_events("okta", "nope", 1, start, end)


def test_okta_generator_is_varied_and_deterministic() -> None:
    """Its speed is the benchmarks' business (they generate 200,000 events), not a
    timed test's."""
    end = datetime.now(UTC)
    start = end - timedelta(hours=6)
    events = okta_events(20_000, start, end, seed=5)
    sizes = [len(orjson.dumps(e)) for e in events[:2000]]
    assert 1200 <= sum(sizes) / len(sizes) <= 2300
    assert len({e["uuid"] for e in events}) == len(events)
    assert len({e["eventType"] for e in events}) >= 12
    assert {e["outcome"]["result"] for e in events} >= {"SUCCESS", "FAILURE"}
    assert len({e["client"]["geographicalContext"]["country"] for e in events}) >= 8
    published = [datetime.fromisoformat(e["published"].replace("Z", "+00:00")) for e in events]
    assert all(start <= p < end for p in published)
    assert okta_events(50, start, end, seed=5) == okta_events(50, start, end, seed=5)
    assert okta_events(50, start, end, seed=5) != okta_events(50, start, end, seed=6)
    for gen in (slack_events, onepassword_events, google_events):
        assert len(gen(10, start, end)) == 10


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize(
    ("fixture", "vendor", "endpoint"),
    [
        ("okta/system_log_event.json", "okta", "logs"),
        ("slack/audit_entry.json", "slack", "logs"),
        ("onepassword/audit_event.json", "onepassword", "auditevents"),
        ("onepassword/item_usage.json", "onepassword", "itemusages"),
        ("onepassword/signin_attempt.json", "onepassword", "signinattempts"),
        ("google_workspace/activity.json", "google_workspace", "admin"),
    ],
)
def test_generated_events_have_the_documented_sample_shape(
    sim: VendorSimulator, fixture: str, vendor: str, endpoint: str
) -> None:
    """Every field of the vendor's own sample exists, with the same JSON type, in the
    simulated events (which may carry more, as real events do)."""
    sample = json.loads((FIXTURES / fixture).read_text())
    events = sim.events(vendor, endpoint)

    def check(want: dict, got: dict, where: str) -> None:
        for key, value in want.items():
            assert key in got, f"{where}.{key} missing"
            if value is None or got[key] is None:
                continue  # nullable in the vendor's data
            assert type(got[key]) is type(value) or (
                isinstance(value, (int, float)) and isinstance(got[key], (int, float))
            ), f"{where}.{key}: {type(got[key]).__name__} vs {type(value).__name__}"
            if isinstance(value, dict):
                check(value, got[key], f"{where}.{key}")

    def like_sample(e: dict) -> bool:
        # the samples show a user actor (Google) and a user entity (Slack); other
        # actor/entity kinds legitimately carry other keys
        if vendor == "slack":
            return bool(e["entity"]["type"] == sample["entity"]["type"])
        return bool(e.get("actor", {}).get("callerType", "USER") == "USER")

    typical = [e for e in events if like_sample(e)]
    assert len(typical) >= 20
    for event in typical[:50]:
        check(sample, event, fixture)


def test_lifecycle_start_answers_and_stop_frees_the_port() -> None:
    s = VendorSimulator(SimConfig()).start()
    port = int(s.base_url.rsplit(":", 1)[1])
    assert s.base_url.startswith("http://127.0.0.1:")
    assert set(s.credentials()) == {
        "okta/api-token",
        "okta/client-id",
        "okta/private-key",
        "onepassword/token",
        "slack/token",
        "google/service-account",
        "google/admin-email",
    }
    assert s.credentials()["slack/token"].startswith("xoxp-")
    assert s.credentials()["onepassword/token"].count(".") == 2
    assert len(s.events("okta", "logs")) == 600  # 3 h x 200/h by default
    s.stop()
    s.stop()
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/okta/api/v1/logs", timeout=1)


def test_module_entry_point_writes_private_credentials(tmp_path: Path) -> None:
    out = tmp_path / "creds" / "sim.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lip_dagster.simulator",
            "--port",
            "0",
            "--credentials-out",
            str(out),
            "--history-hours",
            "0.1",
            "--live-rate",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
        creds = json.loads(out.read_text())
        r = httpx.get(
            f"{base_url}/slack/audit/v1/logs",
            headers={"Authorization": f"Bearer {creds['slack/token']}"},
        )
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
