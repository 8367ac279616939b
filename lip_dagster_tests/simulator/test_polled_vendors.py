"""Slack Audit Logs, 1Password Events API and Google Workspace Reports contracts of the
simulator, over real HTTP (VENDORS.md §2-§4): pagination to the end, ordering, time
filters, each vendor's auth rejection shape, and the quirks adapters must survive."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lip_dagster.simulator import SimConfig, VendorSimulator

GOOGLE_SCOPE = "https://www.googleapis.com/auth/admin.reports.audit.readonly"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_ts(text: str) -> datetime:
    """RFC 3339 with up to nanoseconds (Python parses at most microseconds)."""
    m = re.match(r"^(.*?T\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", text)
    assert m, text
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{m.group(1)}.{frac}+00:00")


@pytest.fixture(scope="module")
def sim() -> Iterator[VendorSimulator]:
    with VendorSimulator(
        SimConfig(seed=11, history_hours=2, events_per_hour=300, live_rate_per_s=0)
    ) as s:
        yield s


# ---------------------------------------------------------------------- Slack


def slack_get(
    sim: VendorSimulator, token: str | None = None, **params: str | int
) -> httpx.Response:
    tok = token if token is not None else sim.credentials()["slack/token"]
    return httpx.get(
        f"{sim.url('slack')}/audit/v1/logs",
        params=params,
        headers={"Authorization": f"Bearer {tok}"},
    )


def test_slack_pages_newest_first_to_an_empty_cursor(sim: VendorSimulator) -> None:
    entries: list[dict] = []
    cursor = ""
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 150}
        if cursor:
            params["cursor"] = cursor
        body = slack_get(sim, **params).json()
        pages += 1
        entries.extend(body["entries"])
        cursor = body["response_metadata"]["next_cursor"]
        if cursor == "":
            break
    truth = sim.events("slack", "logs")
    assert pages == 4 and len(entries) == len(truth) == 600
    assert {e["id"] for e in entries} == {e["id"] for e in truth}
    dates = [e["date_create"] for e in entries]
    assert dates == sorted(dates, reverse=True)
    assert all(isinstance(d, int) for d in dates)


def test_slack_oldest_and_latest_are_inclusive(sim: VendorSimulator) -> None:
    truth = sim.events("slack", "logs")
    lo, hi = truth[200]["date_create"], truth[260]["date_create"]
    got = slack_get(sim, oldest=lo, latest=hi, limit=9999).json()
    expected = {e["id"] for e in truth if lo <= e["date_create"] <= hi}
    assert {e["id"] for e in got["entries"]} == expected
    assert got["response_metadata"]["next_cursor"] == ""
    assert min(e["date_create"] for e in got["entries"]) == lo
    assert max(e["date_create"] for e in got["entries"]) == hi


def test_slack_auth_errors(sim: VendorSimulator) -> None:
    bad = slack_get(sim, token="xoxp-1-2-3-bad")
    assert bad.status_code == 401 and bad.json() == {"ok": False, "error": "invalid_auth"}
    missing = httpx.get(f"{sim.url('slack')}/audit/v1/logs")
    assert missing.status_code == 401 and missing.json()["ok"] is False
    cursor = slack_get(sim, cursor="not-a-cursor")
    assert cursor.status_code == 400 and cursor.json()["error"] == "invalid_cursor"
    too_many = slack_get(sim, limit=10_000)
    assert too_many.status_code == 400 and too_many.json()["ok"] is False


# ---------------------------------------------------------------------- 1Password


def op_post(
    sim: VendorSimulator, endpoint: str, body: dict, token: str | None = None
) -> httpx.Response:
    tok = token if token is not None else sim.credentials()["onepassword/token"]
    return httpx.post(
        f"{sim.url('onepassword')}/api/v1/{endpoint}",
        json=body,
        headers={"Authorization": f"Bearer {tok}"},
    )


@pytest.mark.parametrize("endpoint", ["auditevents", "itemusages", "signinattempts"])
def test_onepassword_has_more_then_empty_page_and_persistent_cursor(
    sim: VendorSimulator, endpoint: str
) -> None:
    start = rfc3339(datetime.now(UTC) - timedelta(hours=3))
    resp = op_post(sim, endpoint, {"limit": 100, "start_time": start})
    items: list[dict] = []
    pages = []
    while True:
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert set(body) == {"cursor", "has_more", "items"}
        pages.append(body)
        items.extend(body["items"])
        if not body["has_more"]:
            break
        resp = op_post(sim, endpoint, {"cursor": body["cursor"]})
    # 600 events / 100 per page: the 6th page is full and says has_more, the 7th is empty
    assert [len(p["items"]) for p in pages] == [100] * 6 + [0]
    assert pages[5]["has_more"] is True and pages[6]["has_more"] is False
    truth = sim.events("onepassword", endpoint)
    assert [i["uuid"] for i in items] == [e["uuid"] for e in truth]
    assert all(re.fullmatch(r"[A-Z2-7]{26}", i["uuid"]) for i in items)

    # the cursor is a checkpoint: new data shows up when polling it later
    now = datetime.now(UTC)
    added = sim.add_events("onepassword", endpoint, 5, now - timedelta(seconds=30), now)
    later = op_post(sim, endpoint, {"cursor": pages[-1]["cursor"]}).json()
    assert [i["uuid"] for i in later["items"]] == [e["uuid"] for e in added]
    assert later["has_more"] is False


def test_onepassword_shapes_and_time_window(sim: VendorSimulator) -> None:
    truth = sim.events("onepassword", "auditevents")
    assert any(re.search(r"\.\d{9}Z$", e["timestamp"]) for e in truth)  # nanoseconds
    lo, hi = parse_ts(truth[100]["timestamp"]), parse_ts(truth[300]["timestamp"])
    body = op_post(
        sim, "auditevents", {"limit": 1000, "start_time": rfc3339(lo), "end_time": rfc3339(hi)}
    ).json()
    got = body["items"]
    assert got and all(lo <= parse_ts(i["timestamp"]) < hi for i in got)
    expected = [e["uuid"] for e in truth if lo <= parse_ts(e["timestamp"]) < hi]
    assert [i["uuid"] for i in got] == expected
    signin = sim.events("onepassword", "signinattempts")[0]
    assert {
        "uuid",
        "session_uuid",
        "timestamp",
        "country",
        "category",
        "type",
        "details",
        "target_user",
        "client",
    } <= set(signin)
    usage = sim.events("onepassword", "itemusages")[0]
    assert {
        "uuid",
        "timestamp",
        "used_version",
        "vault_uuid",
        "item_uuid",
        "user",
        "client",
        "action",
    } <= set(usage)


def test_onepassword_errors(sim: VendorSimulator) -> None:
    bad = op_post(sim, "auditevents", {"limit": 10}, token="eyJhbGciOi.bad.token")
    assert bad.status_code == 401 and bad.json() == {"Error": {"Message": "Unauthorized"}}
    for body in ({"limit": 0}, {"limit": 1001}, {"cursor": "forged"}, {"start_time": "2024-01-01"}):
        resp = op_post(sim, "auditevents", body)
        assert resp.status_code == 400
        assert set(resp.json()) == {"Error"} and "Message" in resp.json()["Error"]
    cursor = op_post(sim, "itemusages", {"limit": 1}).json()["cursor"]
    assert op_post(sim, "auditevents", {"cursor": cursor}).status_code == 400
    introspect = httpx.get(
        f"{sim.url('onepassword')}/api/v2/auth/introspect",
        headers={"Authorization": f"Bearer {sim.credentials()['onepassword/token']}"},
    )
    assert set(introspect.json()["features"]) == {"auditevents", "itemusages", "signinattempts"}


# ---------------------------------------------------------------------- Google


def google_assertion(
    sim: VendorSimulator,
    *,
    key: str | None = None,
    aud: str | None = None,
    lifetime: int = 3600,
    iat_offset: int = 0,
    scope: str = GOOGLE_SCOPE,
    sub: str | None = None,
) -> str:
    sa = orjson.loads(sim.credentials()["google/service-account"])
    now = int(time.time()) + iat_offset
    claims = {
        "iss": sa["client_email"],
        "scope": scope,
        "aud": aud or sa["token_uri"],
        "sub": sub or sim.credentials()["google/admin-email"],
        "iat": now,
        "exp": now + lifetime,
    }
    return jwt.encode(
        claims, key or sa["private_key"], algorithm="RS256", headers={"kid": sa["private_key_id"]}
    )


def google_token(sim: VendorSimulator, a: str) -> httpx.Response:
    sa = orjson.loads(sim.credentials()["google/service-account"])
    return httpx.post(sa["token_uri"], data={"grant_type": JWT_GRANT, "assertion": a})


@pytest.fixture(scope="module")
def google_client(sim: VendorSimulator) -> Iterator[httpx.Client]:
    resp = google_token(sim, google_assertion(sim))
    assert resp.status_code == 200, resp.text
    token = resp.json()["access_token"]
    with httpx.Client(
        base_url=f"{sim.url('google')}/admin/reports/v1/activity/users/all/applications",
        headers={"Authorization": f"Bearer {token}"},
    ) as c:
        yield c


def test_google_service_account_file_and_token(sim: VendorSimulator) -> None:
    sa = orjson.loads(sim.credentials()["google/service-account"])
    assert sa["type"] == "service_account"
    assert sa["token_uri"] == f"{sim.base_url}/google/token"
    assert sa["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    body = google_token(sim, google_assertion(sim)).json()
    assert set(body) == {"access_token", "expires_in", "token_type"}
    assert body["expires_in"] == 3599 and body["token_type"] == "Bearer"


@pytest.mark.parametrize("app", ["admin", "login", "drive", "token"])
def test_google_pages_newest_first_without_final_token(
    sim: VendorSimulator, google_client: httpx.Client, app: str
) -> None:
    items: list[dict] = []
    params: dict[str, str | int] = {"maxResults": 250}
    pages = []
    while True:
        resp = google_client.get(f"/{app}", params=params)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["kind"] == "admin#reports#activities" and "etag" in body
        pages.append(body)
        items.extend(body.get("items", []))
        if "nextPageToken" not in body:
            break
        params = {"maxResults": 250, "pageToken": body["nextPageToken"]}
    assert len(pages) == 3
    times = [i["id"]["time"] for i in items]
    assert times == sorted(times, reverse=True)
    truth = sim.events("google_workspace", app)
    assert {i["id"]["uniqueQualifier"] for i in items} == {
        e["id"]["uniqueQualifier"] for e in truth
    }
    quals = [i["id"]["uniqueQualifier"] for i in items]
    assert all(isinstance(q, str) and -(2**63) <= int(q) < 2**63 for q in quals)
    assert any(q.startswith("-") for q in quals)
    assert all(i["id"]["applicationName"] == app for i in items)


def test_google_time_window_and_empty_response(
    sim: VendorSimulator, google_client: httpx.Client
) -> None:
    truth = sim.events("google_workspace", "login")
    lo, hi = parse_ts(truth[50]["id"]["time"]), parse_ts(truth[120]["id"]["time"])
    body = google_client.get(
        "/login", params={"startTime": rfc3339(lo), "endTime": rfc3339(hi)}
    ).json()
    got = {i["id"]["uniqueQualifier"] for i in body["items"]}
    assert got == {
        e["id"]["uniqueQualifier"] for e in truth if lo <= parse_ts(e["id"]["time"]) < hi
    }
    assert "nextPageToken" not in body
    future = datetime.now(UTC) + timedelta(days=1)
    empty = google_client.get(
        "/login", params={"startTime": rfc3339(future), "endTime": rfc3339(future)}
    ).json()
    assert "items" not in empty and "nextPageToken" not in empty
    bad = google_client.get("/login", params={"maxResults": 1001})
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_google_rejects_bad_bearer(sim: VendorSimulator) -> None:
    resp = httpx.get(
        f"{sim.url('google')}/admin/reports/v1/activity/users/all/applications/login",
        headers={"Authorization": "Bearer ya29.not-issued"},
    )
    assert resp.status_code == 401
    err = resp.json()["error"]
    assert err["code"] == 401 and err["status"] == "UNAUTHENTICATED" and err["message"]


def test_google_assertion_rejections(sim: VendorSimulator) -> None:
    other = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    cases = {
        "wrong key": google_assertion(sim, key=other),
        "wrong aud": google_assertion(sim, aud="https://oauth2.googleapis.com/token"),
        "expired": google_assertion(sim, iat_offset=-7200),
        "over an hour": google_assertion(sim, lifetime=3601),
        "no reports scope": google_assertion(
            sim, scope="https://www.googleapis.com/auth/admin.directory.user"
        ),
        "unknown user": google_assertion(sim, sub="someone@elsewhere.test"),
    }
    for name, a in cases.items():
        resp = google_token(sim, a)
        assert resp.status_code == 400, name
        body = resp.json()
        assert body["error"] == "invalid_grant" and body["error_description"], name
