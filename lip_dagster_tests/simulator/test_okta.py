"""Okta System Log contract of the simulator, exercised over real HTTP.

Adapters are written against the simulator and then run against Okta, so these tests pin
the documented behaviour (VENDORS.md §1) the adapters will meet in production: endless
``next`` links when polling, finite bounded queries, Okta's error shapes, rate-limit
headers and the private_key_jwt token endpoint.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lip_dagster.simulator import SimConfig, VendorSimulator

OKTA_ERROR_KEYS = {"errorCode", "errorSummary", "errorLink", "errorId", "errorCauses"}


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ms_to_dt(published: str) -> datetime:
    return datetime.fromisoformat(published.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def sim() -> Iterator[VendorSimulator]:
    with VendorSimulator(
        SimConfig(seed=7, history_hours=2, events_per_hour=300, live_rate_per_s=0)
    ) as s:
        yield s


@pytest.fixture(scope="module")
def client(sim: VendorSimulator) -> Iterator[httpx.Client]:
    token = sim.credentials()["okta/api-token"]
    with httpx.Client(base_url=sim.url("okta"), headers={"Authorization": f"SSWS {token}"}) as c:
        yield c


def follow(
    client: httpx.Client, params: dict[str, str | int], stop_on_empty: bool, max_pages: int = 100
) -> tuple[list[dict], list[httpx.Response]]:
    events: list[dict] = []
    responses: list[httpx.Response] = []
    resp = client.get("/api/v1/logs", params=params)
    for _ in range(max_pages):
        assert resp.status_code == 200, resp.text
        responses.append(resp)
        page = resp.json()
        events.extend(page)
        if stop_on_empty and not page:
            break
        if "next" not in resp.links:
            break
        resp = client.get(resp.links["next"]["url"])
    return events, responses


def test_polling_pages_never_end_and_follow_persistence_order(
    sim: VendorSimulator, client: httpx.Client
) -> None:
    since = rfc3339(datetime.now(UTC) - timedelta(hours=3))
    events, responses = follow(client, {"since": since, "limit": 200}, stop_on_empty=True)
    truth = sim.events("okta", "logs")
    assert [e["uuid"] for e in events] == [e["uuid"] for e in truth]
    last = responses[-1]
    assert last.json() == []
    assert "self" in last.links and "next" in last.links  # next even on an empty page
    again = client.get(last.links["next"]["url"])
    assert again.status_code == 200 and again.json() == []
    assert "next" in again.links
    assert "since=" not in last.links["next"]["url"]  # after and since never together


def test_polling_published_is_out_of_order_somewhere(sim: VendorSimulator) -> None:
    published = [e["published"] for e in sim.events("okta", "logs")]
    assert any(b < a for a, b in itertools.pairwise(published))
    assert all(len(p) == 24 and p.endswith("Z") for p in published)  # ISO, ms, Z


def test_bounded_request_is_ordered_by_published_and_ends(
    sim: VendorSimulator, client: httpx.Client
) -> None:
    truth = sim.events("okta", "logs")
    lo = ms_to_dt(truth[100]["published"])
    hi = ms_to_dt(truth[450]["published"])
    events, responses = follow(
        client, {"since": rfc3339(lo), "until": rfc3339(hi), "limit": 60}, stop_on_empty=False
    )
    assert len(responses) > 1
    assert "next" not in responses[-1].links
    assert all("next" in r.links for r in responses[:-1])
    published = [e["published"] for e in events]
    assert published == sorted(published)
    expected = {e["uuid"] for e in truth if lo <= ms_to_dt(e["published"]) < hi}
    assert {e["uuid"] for e in events} == expected
    assert len(events) == len(expected)


def test_descending_is_a_bounded_query(sim: VendorSimulator, client: httpx.Client) -> None:
    events, responses = follow(
        client, {"sortOrder": "DESCENDING", "limit": 250}, stop_on_empty=False
    )
    assert "next" not in responses[-1].links
    published = [e["published"] for e in events]
    assert published == sorted(published, reverse=True)
    assert len(events) == len(sim.events("okta", "logs"))


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": 1001}, "E0000001"),
        ({"limit": "abc"}, "E0000001"),
        ({"since": "2024-01-01T00:00:00Z", "after": "x"}, "E0000001"),
        ({"since": "yesterday"}, "E0000001"),
        ({"since": "2024-01-01T00:00:00"}, "E0000001"),  # no offset: not RFC 3339
        ({"after": "forged-cursor"}, "E0000001"),
        ({"filter": 'eventType eqq "x"'}, "E0000053"),
        ({"q": "x" * 41}, "E0000001"),
    ],
)
def test_invalid_requests_get_okta_400(
    client: httpx.Client, params: dict[str, str | int], code: str
) -> None:
    resp = client.get("/api/v1/logs", params=params)
    assert resp.status_code == 400
    body = resp.json()
    assert set(body) == OKTA_ERROR_KEYS and body["errorCode"] == code


def test_since_older_than_180_days_is_e0000053(client: httpx.Client) -> None:
    since = rfc3339(datetime.now(UTC) - timedelta(days=181))
    resp = client.get("/api/v1/logs", params={"since": since})
    assert resp.status_code == 400
    assert resp.json()["errorCode"] == "E0000053"
    ok = client.get(
        "/api/v1/logs", params={"since": rfc3339(datetime.now(UTC) - timedelta(days=170))}
    )
    assert ok.status_code == 200  # accepted, older than 90 days just has no data


def test_filter_and_keyword_search(client: httpx.Client) -> None:
    resp = client.get(
        "/api/v1/logs",
        params={
            "filter": 'eventType eq "user.session.start" and outcome.result eq "FAILURE"',
            "sortOrder": "DESCENDING",
            "limit": 1000,
        },
    )
    events = resp.json()
    assert events and all(
        e["eventType"] == "user.session.start" and e["outcome"]["result"] == "FAILURE"
        for e in events
    )
    resp = client.get(
        "/api/v1/logs", params={"q": "bengaluru", "sortOrder": "DESCENDING", "limit": 1000}
    )
    found = resp.json()
    assert found and all("Bengaluru" in str(e) for e in found)  # case-insensitive match


def test_bad_token_is_e0000011_with_rate_headers(sim: VendorSimulator) -> None:
    for header in ("SSWS wrong", "Bearer nope", "Basic abc", None):
        headers = {"Authorization": header} if header else {}
        resp = httpx.get(f"{sim.url('okta')}/api/v1/logs", headers=headers)
        assert resp.status_code == 401
        body = resp.json()
        assert set(body) == OKTA_ERROR_KEYS
        assert body["errorCode"] == "E0000011"
        assert body["errorSummary"] == "Invalid token provided"
        assert body["errorLink"] == "E0000011" and body["errorCauses"] == []
        for h in ("X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset"):
            assert h in resp.headers


def test_rate_limit_headers_on_success(client: httpx.Client) -> None:
    resp = client.get("/api/v1/logs", params={"limit": 1})
    assert resp.headers["X-Rate-Limit-Limit"] == "600"
    assert 0 <= int(resp.headers["X-Rate-Limit-Remaining"]) < 600
    assert int(resp.headers["X-Rate-Limit-Reset"]) > time.time()


def test_bucket_exhaustion_answers_429_e0000047() -> None:
    with VendorSimulator(
        SimConfig(history_hours=0.1, okta_rate_limit_per_min=3, live_rate_per_s=0)
    ) as small:
        headers = {"Authorization": f"SSWS {small.credentials()['okta/api-token']}"}
        url = f"{small.url('okta')}/api/v1/logs"
        remaining = [
            httpx.get(url, headers=headers).headers["X-Rate-Limit-Remaining"] for _ in range(3)
        ]
        assert remaining == ["2", "1", "0"]
        resp = httpx.get(url, headers=headers)
        assert resp.status_code == 429
        assert resp.json()["errorCode"] == "E0000047"
        assert resp.json()["errorSummary"] == (
            "API call exceeded rate limit due to too many requests."
        )
        assert resp.headers["X-Rate-Limit-Remaining"] == "0"
        assert int(resp.headers["X-Rate-Limit-Reset"]) >= int(time.time())


# ---------------------------------------------------------------------- OAuth


def assertion(
    sim: VendorSimulator,
    *,
    key: str | None = None,
    aud: str | None = None,
    exp_in: int = 300,
    iss: str | None = None,
    sub: str | None = None,
    jti: str | None = None,
    alg: str = "RS256",
) -> str:
    creds = sim.credentials()
    client_id = creds["okta/client-id"]
    now = int(time.time())
    claims = {
        "iss": iss or client_id,
        "sub": sub or client_id,
        "aud": aud or f"{sim.url('okta')}/oauth2/v1/token",
        "iat": now,
        "exp": now + exp_in,
        "jti": jti or uuid.uuid4().hex,
    }
    return jwt.encode(claims, key or creds["okta/private-key"], algorithm=alg)


def token_form(
    sim: VendorSimulator, client_assertion: str, scope: str = "okta.logs.read"
) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": client_assertion,
    }


def other_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_oauth_token_then_bearer_works_until_expired(sim: VendorSimulator) -> None:
    url = f"{sim.url('okta')}/oauth2/v1/token"
    resp = httpx.post(url, data=token_form(sim, assertion(sim)))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"token_type", "expires_in", "access_token", "scope"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == "okta.logs.read"
    logs = f"{sim.url('okta')}/api/v1/logs"
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert httpx.get(logs, headers=bearer, params={"limit": 1}).status_code == 200
    sim.expire_tokens()
    expired = httpx.get(logs, headers=bearer)
    assert expired.status_code == 401 and expired.json()["errorCode"] == "E0000011"


def test_oauth_rejections(sim: VendorSimulator) -> None:
    url = f"{sim.url('okta')}/oauth2/v1/token"
    cases = {
        "wrong key": token_form(sim, assertion(sim, key=other_key())),
        "wrong aud": token_form(
            sim, assertion(sim, aud="https://example.okta.com/oauth2/v1/token")
        ),
        "expired": token_form(sim, assertion(sim, exp_in=-10)),
        "exp over 1h": token_form(sim, assertion(sim, exp_in=2 * 3600)),
        "iss != sub": token_form(sim, assertion(sim, sub="someone-else")),
        "HS256": token_form(sim, assertion(sim, key="s" * 32, alg="HS256")),
    }
    for name, form in cases.items():
        resp = httpx.post(url, data=form)
        assert resp.status_code == 401, name
        body = resp.json()
        assert set(body) == {"error", "error_description"}, name
        assert body["error"] == "invalid_client", name

    reused = assertion(sim, jti="fixed-jti")
    assert httpx.post(url, data=token_form(sim, reused)).status_code == 200
    replay = httpx.post(url, data=token_form(sim, reused))
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"

    no_scope = httpx.post(url, data=token_form(sim, assertion(sim), scope=""))
    assert no_scope.status_code == 400 and no_scope.json()["error"] == "invalid_scope"
    form = token_form(sim, assertion(sim))
    form["grant_type"] = "password"
    bad_grant = httpx.post(url, data=form)
    assert bad_grant.status_code == 400
    assert bad_grant.json()["error"] == "unsupported_grant_type"
    as_json = httpx.post(url, json=token_form(sim, assertion(sim)))
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"


def test_an_app_with_an_ec_key_takes_es256_assertions_only() -> None:
    """VENDORS.md §1: RS256/384/512 or ES256/384/512, by the key registered for the
    app; an RSA-signed assertion cannot match an EC key."""
    with VendorSimulator(SimConfig(live_rate_per_s=0, okta_key_type="ec")) as ec_sim:
        url = f"{ec_sim.url('okta')}/oauth2/v1/token"
        ok = httpx.post(url, data=token_form(ec_sim, assertion(ec_sim, alg="ES256")))
        assert ok.status_code == 200, ok.text
        rsa_signed = token_form(ec_sim, assertion(ec_sim, key=other_key()))
        refused = httpx.post(url, data=rsa_signed)
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"


def test_polling_loses_nothing_while_events_keep_arriving() -> None:
    """Following ``next`` links while live events arrive yields exactly the ground truth,
    although ``published`` runs backwards across pages."""
    with VendorSimulator(
        SimConfig(history_hours=0.2, events_per_hour=600, live_rate_per_s=200)
    ) as live:
        headers = {"Authorization": f"SSWS {live.credentials()['okta/api-token']}"}
        since = rfc3339(datetime.now(UTC) - timedelta(hours=1))
        resp = httpx.get(
            f"{live.url('okta')}/api/v1/logs", headers=headers, params={"since": since, "limit": 37}
        )
        seen: list[dict] = []
        deadline = time.monotonic() + 1.0
        while True:
            assert resp.status_code == 200
            page = resp.json()
            seen.extend(page)
            if time.monotonic() > deadline:
                live.live_rate_per_s = 0  # stop arrivals, then drain
                if not page:
                    break
            resp = httpx.get(resp.links["next"]["url"], headers=headers)
        truth = live.events("okta", "logs")
        assert len(truth) > 120 + 150  # history plus live arrivals
        assert [e["uuid"] for e in seen] == [e["uuid"] for e in truth]
        published = [e["published"] for e in seen]
        assert published != sorted(published)
