"""Okta System Log adapter against the simulator (VENDORS.md §1)."""

from __future__ import annotations

import gzip
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from lip_dagster.components.coverage import hour_coverage, polling_head
from lip_dagster.config import Settings
from lip_dagster.demo import write_secrets
from lip_dagster.errors import ConfigError, VendorAuthError, VendorError
from lip_dagster.lake.layout import hour_of
from lip_dagster.polling.auth import same_origin
from lip_dagster.resources import EmbeddedBackend
from lip_dagster.simulator import SimConfig, VendorSimulator
from lip_dagster.sources.okta import OktaPoller

from .conftest import Harness


def okta_ids(h: Harness) -> set[str]:
    return {e["uuid"] for e in h.sim.events("okta", "logs")}


def test_pages_to_the_end_and_lands_every_event_once(harness: Harness) -> None:
    p = harness.poller("okta", initial_lookback_hours=4)
    report = p.run()
    assert report.endpoints["logs"].stopped == "caught_up"
    assert report.pages >= 9  # 900 events in pages of 100, then the empty page
    ids = harness.lake_ids("okta")
    assert set(ids) == okta_ids(harness) and max(ids.values()) == 1


def test_endless_next_link_empty_page_means_caught_up(harness: Harness) -> None:
    p = harness.poller("okta", initial_lookback_hours=4)
    p.run()
    cursor = p.cursors.get("okta", "logs")
    assert cursor is not None and "after=" in cursor.value  # the next link, verbatim
    # nothing new: one request, an empty page, and the cursor still a next link
    again = p.run()
    assert again.pages == 1 and again.result.events == 0
    assert p.cursors.get("okta", "logs").value.startswith(harness.sim.base_url)


def test_resumes_from_the_stored_cursor(harness: Harness) -> None:
    p = harness.poller("okta", initial_lookback_hours=4)
    p.run()
    now = datetime.now(UTC)
    harness.sim.add_events("okta", "logs", 50, start=now - timedelta(seconds=30), end=now)
    report = harness.poller("okta").run()
    assert report.result.events == 50 and report.result.duplicates == 0
    assert set(harness.lake_ids("okta")) == okta_ids(harness)


def test_429_then_success(harness: Harness) -> None:
    harness.sim.script("okta", [429, 429])
    report = harness.poller("okta", initial_lookback_hours=4).run()
    assert report.throttled >= 2
    assert set(harness.lake_ids("okta")) == okta_ids(harness)
    assert harness.slept and all(s >= 0 for s in harness.slept)


def test_5xx_beyond_the_retry_bound_fails_loudly_and_keeps_the_cursor(harness: Harness) -> None:
    p = harness.poller("okta", initial_lookback_hours=4)
    p.run()
    before = p.cursors.get("okta", "logs")
    harness.sim.script("okta", [500, 502, 503])
    with pytest.raises(VendorError) as ei:
        harness.poller("okta", max_attempts=3).run()
    msg = str(ei.value)
    assert "'okta'" in msg and "'logs'" in msg and "HTTP 503" in msg
    assert p.cursors.get("okta", "logs") == before


class CaptivePortal(httpx.HTTPTransport):
    """A proxy in the way: every answer is 200 with an HTML login page."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"Content-Type": "text/html"}, content=b"<html>sign in to the proxy</html>"
        )


def test_a_page_that_is_not_json_fails_the_run_and_keeps_the_cursor(harness: Harness) -> None:
    p = harness.poller("okta", initial_lookback_hours=4)
    p.run()
    before = p.cursors.get("okta", "logs")
    landed = harness.lake_ids("okta")
    with pytest.raises(VendorError) as ei:
        harness.poller("okta", transport=CaptivePortal()).run()
    msg = str(ei.value)
    assert "'okta'" in msg and "'logs'" in msg and "HTTP 200: response is not JSON" in msg
    assert "sign in" not in msg  # the body is not echoed into logs
    assert p.cursors.get("okta", "logs") == before and harness.lake_ids("okta") == landed


class CutEmoji(httpx.HTTPTransport):
    """Okta as it answers when a user's string was cut in the middle of an emoji: the
    first page of the System Log holds ``\\ud83d`` with no low half after it (valid
    JSON; orjson refuses it)."""

    def __init__(self) -> None:
        super().__init__()
        self.uuid: str | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        resp = super().handle_request(request)
        if self.uuid is not None or not request.url.path.endswith("/logs"):
            return resp
        body = resp.read()
        page = orjson.loads(body)
        self.uuid = page[0]["uuid"]
        at = body.index(b'"displayMessage":') + len(b'"displayMessage":')
        at = body.index(b'"', at) + 1
        cut = body[:at] + b"party \\ud83d" + body[at:]
        headers = [
            (k, v)
            for k, v in resp.headers.items()
            if k not in ("content-length", "content-encoding")
        ]
        return httpx.Response(resp.status_code, headers=headers, content=cut)


def test_a_lone_surrogate_lands_as_the_replacement_character_and_the_cursor_moves_on(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    transport = CutEmoji()
    report = harness.poller("okta", initial_lookback_hours=4, transport=transport).run()
    assert report.endpoints["logs"].stopped == "caught_up"
    ids = harness.lake_ids("okta")
    assert set(ids) == okta_ids(harness) and max(ids.values()) == 1
    cursor = harness.backend.cursors.get("okta", "logs")
    assert cursor is not None and "after=" in cursor.value
    (cut,) = [e for e in lake_events(harness) if e["uuid"] == transport.uuid]
    original = next(e for e in harness.sim.events("okta", "logs") if e["uuid"] == transport.uuid)
    assert cut["displayMessage"] == "party \ufffd" + original["displayMessage"]
    (warning,) = [r for r in caplog.records if "surrogate" in r.getMessage()]
    assert "okta" in warning.getMessage() and "'logs'" in warning.getMessage()
    assert "party" not in warning.getMessage()  # the content is not echoed into logs


def lake_events(h: Harness) -> list[dict]:
    root = h.backend.settings.lake_dir / "source=okta"
    return [
        orjson.loads(line)
        for p in root.rglob("*.ndjson.gz")
        for line in gzip.decompress(p.read_bytes()).splitlines()
    ]


def test_bad_api_token_is_a_clear_auth_error(harness: Harness, monkeypatch) -> None:
    monkeypatch.setenv("LIP_SECRET_OKTA_API_TOKEN", "not-the-token")
    with pytest.raises(VendorAuthError, match="HTTP 401") as ei:
        harness.poller("okta").run()
    assert "not-the-token" not in str(ei.value) and "E0000011" in str(ei.value)


def test_oauth_private_key_jwt_and_token_cached(harness: Harness) -> None:
    p = harness.poller("okta", initial_lookback_hours=4, options={"auth": "oauth"})
    assert isinstance(p, OktaPoller)
    p.run()
    assert set(harness.lake_ids("okta")) == okta_ids(harness)
    assert harness.sim.tokens_issued.get("okta") == 1  # many pages, one token


def test_an_access_token_revoked_mid_run_is_replaced_once_and_the_run_collects(
    harness: Harness,
) -> None:
    """Okta revokes the app's tokens between two pages (a key rotation): the page
    refused with 401 is asked again with a new token, and nothing is lost."""
    p = harness.poller("okta", initial_lookback_hours=4, options={"auth": "oauth"})
    call_api = p.call_api
    calls = []

    def revoked_after_the_first_page(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            harness.sim.expire_tokens()
        return call_api(*args, **kwargs)

    p.call_api = revoked_after_the_first_page  # type: ignore[method-assign]
    p.run()
    assert set(harness.lake_ids("okta")) == okta_ids(harness)
    assert harness.sim.tokens_issued.get("okta") == 2


def test_a_token_refused_again_after_a_refresh_fails_the_run(harness: Harness) -> None:
    """One new token per refused page, not a loop: a second 401 is a refused
    credential, and the run fails saying so."""
    p = harness.poller("okta", initial_lookback_hours=4, options={"auth": "oauth"})
    call_api = p.call_api

    def always_revoked(*args, **kwargs):  # type: ignore[no-untyped-def]
        harness.sim.expire_tokens()
        return call_api(*args, **kwargs)

    p.call_api = always_revoked  # type: ignore[method-assign]
    with pytest.raises(VendorAuthError, match="HTTP 401"):
        p.run()
    assert harness.sim.tokens_issued.get("okta") == 2


def test_oauth_with_the_wrong_key_is_refused(harness: Harness, monkeypatch) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    monkeypatch.setenv("LIP_SECRET_OKTA_PRIVATE_KEY", other.decode())
    with pytest.raises(VendorAuthError, match="oauth2/v1/token"):
        harness.poller("okta", options={"auth": "oauth"}).run()


def test_oauth_with_an_ec_key_signs_es256(tmp_path: Path) -> None:
    """Okta takes ES256/384/512 client assertions from a service app whose registered
    key is EC (VENDORS.md §1): the key's own type picks the algorithm."""
    config = SimConfig(live_rate_per_s=0, history_hours=1, events_per_hour=150, okta_key_type="ec")
    with VendorSimulator(config) as sim:
        settings = Settings.from_env({"LIP_HOME": str(tmp_path / "home")})
        write_secrets(settings.secrets_file, sim.credentials())
        h = Harness(sim, EmbeddedBackend(settings))
        try:
            h.poller("okta", initial_lookback_hours=2, options={"auth": "oauth"}).run()
            assert set(h.lake_ids("okta")) == okta_ids(h)
            assert sim.tokens_issued.get("okta") == 1
        finally:
            h.close()


@pytest.mark.parametrize(
    "value",
    [
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
        "0oa-not-a-key-at-all",
    ],
)
def test_a_private_key_that_is_not_one_is_a_config_error_naming_the_secret(
    harness: Harness, monkeypatch, value: str
) -> None:
    monkeypatch.setenv("LIP_SECRET_OKTA_PRIVATE_KEY", value)
    with pytest.raises(ConfigError, match="okta/private-key") as ei:
        harness.poller("okta", options={"auth": "oauth"}).run()
    assert value.strip() not in str(ei.value) and "MIIEvQ" not in str(ei.value)
    assert harness.backend.cursors.get("okta", "logs") is None


def test_backfill_asks_for_the_bounded_window(harness: Harness) -> None:
    events = harness.sim.events("okta", "logs")
    hour = datetime.fromisoformat(events[len(events) // 2]["published"]).replace(
        minute=0, second=0, microsecond=0
    )
    window = (hour, hour + timedelta(hours=1))
    report = harness.poller("okta").run(window=window)
    expected = {
        e["uuid"] for e in events if window[0] <= datetime.fromisoformat(e["published"]) < window[1]
    }
    assert set(harness.lake_ids("okta")) == expected
    assert report.endpoints["logs"].stopped == "window_done"
    assert harness.backend.cursors.get("okta", "logs") is None


def test_a_backfill_past_the_90_days_okta_keeps_fails_and_asks_nothing(harness: Harness) -> None:
    from lip_dagster.polling.base import BackfillBeyondRetention

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=100)
    with pytest.raises(BackfillBeyondRetention, match="90 days"):
        harness.poller("okta").run(window=(hour, hour + timedelta(hours=1)))
    assert not harness.lake_ids("okta")
    assert harness.backend.cursors.get("okta", "logs") is None


def test_a_next_link_to_another_host_is_not_followed(harness: Harness) -> None:
    """A page whose next link points at another host fails before the link is
    stored: following it would send our token there."""
    p = harness.poller("okta")
    request = p.request
    sent_to: list[str] = []

    def evil_link(method: str, url: str, **kw):  # type: ignore[no-untyped-def]
        sent_to.append(url)
        resp = request(method, url, **kw)
        resp.headers["link"] = '<https://attacker.example/api/v1/logs?after=x>; rel="next"'
        return resp

    p.request = evil_link  # type: ignore[method-assign]
    with pytest.raises(VendorError, match="off the Okta org"):
        p.run()
    assert sent_to and not any("attacker" in u for u in sent_to)
    assert harness.backend.cursors.get("okta", "logs") is None


@pytest.mark.parametrize("auth", ["ssws", "oauth"])
def test_a_base_url_spelled_with_capitals_or_its_default_port_follows_oktas_links(
    harness: Harness, auth: str
) -> None:
    """Host names are case-insensitive and ``:443`` is https's own port: Okta's next
    links name the org as Okta spells it, so LIP_OKTA_BASE_URL written
    ``https://Acme.okta.com`` (or with ``:443``) is the same org. Taken for another
    host, every poll failed at its first page and the source never collected; with
    OAuth, the token request's audience named the org as written, not as Okta
    spells its token endpoint, and the token was refused."""
    first = harness.poller("okta", initial_lookback_hours=4, options={"auth": auth})
    host = urlsplit(harness.sim.base_url).hostname
    assert host is not None
    shouted = harness.sim.base_url.replace(host, "LOCALHOST", 1) + "/okta"
    p = OktaPoller(
        replace(first.config, base_url=shouted),
        http=first.http,
        secrets=first.secrets,
        cursors=first.cursors,
        writer=first.writer,
    )
    report = p.run()
    assert report.endpoints["logs"].stopped == "caught_up"
    assert set(harness.lake_ids("okta")) == okta_ids(harness)
    assert same_origin("https://acme.okta.com/api/v1/logs?after=1", "https://Acme.okta.com:443")
    assert not same_origin("https://acme.okta.com.evil.example/x", "https://acme.okta.com")
    assert not same_origin("https://acme.okta.com@evil.example/x", "https://acme.okta.com")
    assert not same_origin("https://acme.okta.com:8443/x", "https://acme.okta.com")


def test_a_cursor_stored_under_an_earlier_base_url_continues_on_the_configured_one(
    harness: Harness,
) -> None:
    """The org moved to a custom domain and LIP_OKTA_BASE_URL followed: the stored
    next link names the old host. The next run asks the configured host for the same
    page instead of failing for good, and nothing lands twice."""
    harness.poller("okta", initial_lookback_hours=4).run()
    landed = harness.lake_ids("okta")
    rec = harness.backend.cursors.get("okta", "logs")
    assert rec is not None and rec.value.startswith(harness.sim.base_url)
    moved = rec.value.replace(harness.sim.base_url, "https://acme.okta.example", 1)
    harness.backend.cursors.commit("okta", "logs", moved, rec.version)
    p = harness.poller("okta", initial_lookback_hours=4)
    p.run()
    after = harness.backend.cursors.get("okta", "logs")
    assert after is not None and after.value.startswith(harness.sim.base_url)
    assert harness.lake_ids("okta") == landed and set(landed) == okta_ids(harness)


def test_coverage_follows_the_poll_not_an_event_stamped_in_the_future(harness: Harness) -> None:
    """Okta pages in persistence order, so caught up means covered up to the request.
    One event whose clock is hours ahead must not mark hours that have not even
    happened as complete (the mark never moves back, so they would stay complete)."""
    now = datetime.now(UTC)
    ahead = now + timedelta(hours=3)
    harness.sim.add_events("okta", "logs", 1, start=ahead, end=ahead + timedelta(seconds=1))
    report = harness.poller("okta", initial_lookback_hours=4, page_size=1000).run()
    assert report.endpoints["logs"].stopped == "caught_up"
    head = polling_head(harness.backend, "okta", ["logs"])
    assert head is not None and now - timedelta(minutes=1) <= head <= datetime.now(UTC)
    assert hour_coverage(hour_of(now - timedelta(hours=1)), head) == "complete"
    assert hour_coverage(hour_of(now + timedelta(hours=1)), head) == "open"


def test_a_token_endpoint_that_is_down_is_an_outage_not_a_bad_credential(
    harness: Harness,
) -> None:
    """A 5xx from the OAuth token endpoint says nothing about the key: the error must
    not send on-call to rotate credentials (and the run stays retryable)."""
    harness.sim.script("okta", [500, 500, 500])
    with pytest.raises(VendorError, match=r"'oauth2/v1/token': HTTP 500") as ei:
        harness.poller("okta", options={"auth": "oauth"}, max_attempts=3).run()
    assert not isinstance(ei.value, VendorAuthError)
