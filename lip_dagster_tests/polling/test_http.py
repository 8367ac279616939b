"""Every vendor call: a timeout, bounded retries, the vendor's wait honoured."""

from __future__ import annotations

import email.utils
import socket
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from lip_dagster.errors import VendorAuthError, VendorError
from lip_dagster.polling.http import BudgetExhausted, HttpClient, RetryPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def client(responses: list[httpx.Response | Exception], clock: Clock, **kw: object) -> HttpClient:
    seq = iter(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        r = next(seq)
        if isinstance(r, Exception):
            raise r
        return r

    return HttpClient(
        transport=httpx.MockTransport(handler), sleep=clock.sleep, clock=clock.time, seed=1, **kw
    )


def test_429_waits_as_long_as_retry_after_says() -> None:
    clock = Clock()
    c = client([httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200)], clock)
    assert c.request("slack", "logs", "GET", "https://x/a").status_code == 200
    assert 7.0 <= clock.slept[0] <= 7.25
    assert c.throttled == 1


def test_429_honours_okta_reset_header() -> None:
    clock = Clock()
    reset = str(int(clock.now + 12))
    c = client(
        [httpx.Response(429, headers={"X-Rate-Limit-Reset": reset}), httpx.Response(200)], clock
    )
    c.request("okta", "logs", "GET", "https://x/a")
    assert 12.0 <= clock.slept[0] <= 12.25


def test_5xx_and_timeouts_back_off_then_give_up_loudly() -> None:
    clock = Clock()
    c = client(
        [httpx.ReadTimeout("slow"), httpx.Response(502), httpx.Response(500), httpx.Response(503)],
        clock,
        retry=RetryPolicy(max_attempts=4),
    )
    with pytest.raises(VendorError) as ei:
        c.request("okta", "logs", "GET", "https://x/a")
    assert ei.value.status == 503
    assert "'okta'" in str(ei.value) and "'logs'" in str(ei.value) and "HTTP 503" in str(ei.value)
    assert "gave up after 4 attempts" in str(ei.value)
    assert len(clock.slept) == 3  # bounded: 4 attempts, 3 waits


def test_auth_failure_is_not_retried() -> None:
    clock = Clock()
    c = client([httpx.Response(401, json={"errorCode": "E0000011"})], clock)
    with pytest.raises(VendorAuthError, match="HTTP 401"):
        c.request("okta", "logs", "GET", "https://x/a")
    assert clock.slept == []


def test_a_wait_past_the_deadline_stops_instead_of_sleeping() -> None:
    clock = Clock()
    c = client([httpx.Response(429, headers={"Retry-After": "50"})], clock)
    with pytest.raises(BudgetExhausted):
        c.request("slack", "logs", "GET", "https://x/a", deadline=clock.now + 10)
    assert clock.slept == []


def few_left(remaining: int, reset_at: float) -> dict[str, str]:
    """Okta's rate-limit headers: ``remaining`` of 100 calls left until ``reset_at``."""
    return {
        "X-Rate-Limit-Limit": "100",
        "X-Rate-Limit-Remaining": str(remaining),
        "X-Rate-Limit-Reset": str(int(reset_at)),
    }


def test_slows_down_when_few_calls_are_left() -> None:
    clock = Clock()
    headers = few_left(2, reset_at=clock.now + 30)
    c = client([httpx.Response(200, headers=headers), httpx.Response(200)], clock)
    c.request("okta", "logs", "GET", "https://x/a")
    assert clock.slept == []  # the page is handed back at once
    c.request("okta", "logs", "GET", "https://x/a")
    assert clock.slept == [15.0]  # 30 s to reset spread over the 2 calls left


def test_every_request_has_a_timeout() -> None:
    c = HttpClient()
    assert c.client.timeout.read is not None and c.client.timeout.connect is not None
    c.close()


def test_a_5xx_does_not_wait_for_the_rate_limit_window() -> None:
    """Okta sends X-Rate-Limit-Reset on every answer; on a 500 it is no wait order."""
    clock = Clock()
    reset = str(int(clock.now + 55))
    c = client(
        [httpx.Response(502, headers={"X-Rate-Limit-Reset": reset}), httpx.Response(200)], clock
    )
    c.request("okta", "logs", "GET", "https://x/a")
    assert clock.slept[0] < 1.0


# ---------------------------------------------------------------- the vendor's wait


def sent_at(clock: Clock, responses: list[httpx.Response | Exception]):
    """A client whose vendor answers ``responses`` in order; returns it and the list of
    times each request reached the vendor."""
    seq = iter(responses)
    times: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        times.append(clock.now)
        r = next(seq)
        if isinstance(r, Exception):
            raise r
        return r

    c = HttpClient(
        transport=httpx.MockTransport(handler), sleep=clock.sleep, clock=clock.time, seed=1
    )
    return c, times


def test_a_retry_after_longer_than_our_own_backoff_cap_is_waited_in_full() -> None:
    """Slack counts its limit org-wide: coming back early only earns another 429."""
    clock = Clock()
    t0 = clock.now
    c, times = sent_at(
        clock, [httpx.Response(429, headers={"Retry-After": "120"}), httpx.Response(200)]
    )
    resp = c.request("slack", "logs", "GET", "https://x/a", deadline=t0 + 225)
    assert resp.status_code == 200
    assert times[1] - t0 >= 120


def test_a_retry_after_past_the_deadline_ends_the_poll_at_once() -> None:
    clock = Clock()
    t0 = clock.now
    c, times = sent_at(clock, [httpx.Response(429, headers={"Retry-After": "120"})] * 6)
    with pytest.raises(BudgetExhausted) as ei:
        c.request("slack", "logs", "GET", "https://x/a", deadline=t0 + 100)
    assert ei.value.reason == "rate_limited"
    assert len(times) == 1 and clock.slept == []  # no early retry into the throttle


def test_the_slow_down_before_the_limit_is_not_cut_short() -> None:
    """Two calls left and 200 s to the reset: the next call goes 100 s later, not after
    our own 60 s backoff cap."""
    clock = Clock()
    t0 = clock.now
    low = few_left(2, reset_at=t0 + 200)
    c, times = sent_at(clock, [httpx.Response(200, headers=low), httpx.Response(200)])
    c.request("okta", "logs", "GET", "https://x/a", deadline=t0 + 225)
    c.request("okta", "logs", "GET", "https://x/a", deadline=t0 + 225)
    assert times[1] - times[0] >= 100


def test_a_slow_down_past_the_deadline_keeps_the_page_and_stops_before_the_next_call() -> None:
    clock = Clock()
    t0 = clock.now
    low = few_left(1, reset_at=t0 + 200)
    c, times = sent_at(clock, [httpx.Response(200, headers=low, json=[{"uuid": "a"}])])
    page = c.request("okta", "logs", "GET", "https://x/a", deadline=t0 + 100)
    assert page.json() == [{"uuid": "a"}]  # the page fetched is not thrown away
    with pytest.raises(BudgetExhausted) as ei:
        c.request("okta", "logs", "GET", "https://x/a", deadline=t0 + 100)
    assert ei.value.reason == "rate_limited"
    assert len(times) == 1 and clock.slept == []


@pytest.mark.parametrize("value", ["soon", "Mon, 99 Foo 2026 25:61:00 GMT", "nan", "inf", "-"])
def test_a_malformed_retry_after_falls_back_to_our_own_backoff(value: str) -> None:
    clock = Clock()
    c = client([httpx.Response(429, headers={"Retry-After": value}), httpx.Response(200)], clock)
    assert c.request("slack", "logs", "GET", "https://x/a").status_code == 200
    assert len(clock.slept) == 1 and 0 <= clock.slept[0] <= RetryPolicy().base_delay


def test_a_retry_after_as_an_http_date_is_honoured() -> None:
    clock = Clock()
    when = email.utils.formatdate(clock.now + 30, usegmt=True)
    c = client([httpx.Response(429, headers={"Retry-After": when}), httpx.Response(200)], clock)
    c.request("slack", "logs", "GET", "https://x/a")
    assert 29.0 <= clock.slept[0] <= 31.25


# ---------------------------------------------------------------- outage vs throttle


def slow_failures(clock: Clock, failure: Callable[[httpx.Request], httpx.Response]) -> HttpClient:
    """A vendor whose every answer is ``failure`` after 30 s (a read timeout's worth)."""

    def handler(request: httpx.Request) -> httpx.Response:
        clock.now += 30.0
        return failure(request)

    return HttpClient(
        transport=httpx.MockTransport(handler), sleep=clock.sleep, clock=clock.time, seed=1
    )


def _timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("no answer", request=request)


def _refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.mark.parametrize(
    ("failure", "cause"),
    [
        (_timeout, "timed out (ReadTimeout)"),
        (_refused, "connection failed (ConnectError)"),
        (lambda r: httpx.Response(502), "HTTP 502"),
        (lambda r: httpx.Response(500), "HTTP 500"),
        (lambda r: httpx.Response(503, headers={"Retry-After": "5"}), "HTTP 503"),
    ],
)
def test_an_outage_that_outlasts_the_budget_fails_naming_its_cause(failure, cause: str) -> None:
    """Only throttling may end a poll quietly; a vendor that is down must fail the run."""
    clock = Clock()
    c = slow_failures(clock, failure)
    with pytest.raises(VendorError) as ei:
        c.request("onepassword", "itemusages", "POST", "https://x/a", deadline=clock.now + 75)
    assert not isinstance(ei.value, BudgetExhausted)
    assert cause in str(ei.value) and "'itemusages'" in str(ei.value)


def test_a_vendor_that_documents_503_as_its_rate_limit_is_treated_as_throttling() -> None:
    clock = Clock()
    c = slow_failures(clock, lambda r: httpx.Response(503))
    with pytest.raises(BudgetExhausted) as ei:
        c.request(
            "google_workspace",
            "admin",
            "GET",
            "https://x/a",
            deadline=clock.now + 75,
            throttle_statuses=frozenset({429, 503}),
        )
    assert ei.value.reason == "rate_limited" and c.throttled >= 1


# ---------------------------------------------------------------- the whole request bounded


class Trickle(httpx.SyncByteStream):
    """A body sent one byte at a time, ``every`` seconds apart (a proxy or server that
    keeps each read just inside the read timeout)."""

    def __init__(self, clock: Clock, n: int, every: float) -> None:
        self.clock, self.n, self.every = clock, n, every
        self.sent = 0

    def __iter__(self):
        for _ in range(self.n):
            self.clock.now += self.every
            self.sent += 1
            yield b" "


def test_a_trickling_answer_is_cut_off_at_the_total_timeout() -> None:
    clock = Clock()
    t0 = clock.now
    body = Trickle(clock, n=1000, every=5.0)  # 5,000 s if nobody stops it
    c = HttpClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, stream=body)),
        retry=RetryPolicy(max_attempts=1),
        total_timeout=60.0,
        sleep=clock.sleep,
        clock=clock.time,
    )
    with pytest.raises(VendorError, match="timed out") as ei:
        c.request("okta", "logs", "GET", "https://x/a")
    assert clock.now - t0 <= 60.0 + 5.0
    # a 200 did arrive: the message says the body was still coming, not "no response"
    msg = str(ei.value)
    assert "the response body was still arriving after" in msg
    assert "no HTTP response" not in msg and "HTTP 200" in msg


def test_a_trickling_answer_stops_at_the_run_deadline() -> None:
    clock = Clock()
    t0 = clock.now
    body = Trickle(clock, n=1000, every=1.0)
    c = HttpClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, stream=body)),
        sleep=clock.sleep,
        clock=clock.time,
    )
    with pytest.raises(BudgetExhausted) as ei:  # nothing failed: the budget simply ended
        c.request("okta", "logs", "GET", "https://x/a", deadline=t0 + 20, answered=True)
    assert ei.value.reason == "budget"
    assert clock.now - t0 <= 21.0


def test_each_attempt_waits_no_longer_than_the_time_left() -> None:
    clock = Clock()
    seen: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.extensions["timeout"]))
        return httpx.Response(200)

    c = HttpClient(transport=httpx.MockTransport(handler), sleep=clock.sleep, clock=clock.time)
    c.request("okta", "logs", "GET", "https://x/a", deadline=clock.now + 4.0)
    c.request("okta", "logs", "GET", "https://x/a")
    assert all(0 < v <= 4.0 for v in seen[0].values())
    assert seen[1]["read"] == 30.0 and seen[1]["connect"] == 10.0


def test_a_real_server_trickling_its_body_is_cut_off() -> None:
    """Over a real socket: one byte every 0.1 s keeps every read inside a 1 s read
    timeout, yet the request ends at its 1.5 s total."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    done = threading.Event()

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[")
            for _ in range(99):
                if done.wait(0.1):
                    return
                try:
                    conn.sendall(b" ")
                except OSError:
                    return

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    c = HttpClient(timeout=httpx.Timeout(1.0), total_timeout=1.5, retry=RetryPolicy(max_attempts=1))
    started = time.monotonic()
    try:
        with pytest.raises(VendorError, match="timed out"):
            c.request("okta", "logs", "GET", f"http://127.0.0.1:{srv.getsockname()[1]}/a")
        assert time.monotonic() - started < 3.0  # 10 s if only each read were bounded
    finally:
        done.set()
        c.close()
        t.join(timeout=5)
        srv.close()


# ---------------------------------------------------------------- a hung vendor is not green


def hung(clock: Clock) -> HttpClient:
    """A vendor that accepts the connection and never answers: each read waits its
    whole timeout, then times out."""

    def handler(request: httpx.Request) -> httpx.Response:
        clock.now += request.extensions["timeout"]["read"]
        raise httpx.ReadTimeout("no answer", request=request)

    return HttpClient(transport=httpx.MockTransport(handler), sleep=clock.sleep, clock=clock.time)


def test_a_vendor_that_never_answers_within_a_short_share_is_an_outage() -> None:
    """An endpoint's share of a reduced or short budget (15 s) is below the 30 s read
    timeout: the timeout is cut to the share. With no answer from the endpoint yet in
    this run, that is a hung vendor and the run must fail, not stop quietly."""
    clock = Clock()
    c = hung(clock)
    with pytest.raises(VendorError) as ei:
        c.request("onepassword", "auditevents", "POST", "https://x/a", deadline=clock.now + 15)
    assert not isinstance(ei.value, BudgetExhausted)
    msg = str(ei.value)
    assert "'auditevents'" in msg and "timed out (ReadTimeout)" in msg
    assert "none from this endpoint has yet in this run" in msg


def test_a_timeout_cut_by_the_deadline_after_pages_came_back_is_a_clean_stop() -> None:
    clock = Clock()
    c = hung(clock)
    with pytest.raises(BudgetExhausted) as ei:
        c.request(
            "onepassword",
            "auditevents",
            "POST",
            "https://x/a",
            deadline=clock.now + 15,
            answered=True,
        )
    assert ei.value.reason == "budget"


# ---------------------------------------------------------------- throttled is not down


def test_a_throttle_storm_with_short_waits_ends_the_poll_cleanly() -> None:
    """Six 429s asking for 1 s each never cross the deadline; the vendor is answering,
    so the poll stops as rate limited instead of failing the run as an outage."""
    clock = Clock()
    c = client([httpx.Response(429, headers={"Retry-After": "1"})] * 6, clock)
    with pytest.raises(BudgetExhausted) as ei:
        c.request("slack", "logs", "GET", "https://x/a", deadline=clock.now + 225)
    assert ei.value.reason == "rate_limited"
    assert "'slack'" in str(ei.value) and "HTTP 429" in str(ei.value)
    assert c.throttled == 6 and len(clock.slept) == 5


def test_an_outage_ending_the_attempts_still_fails_after_a_throttle() -> None:
    clock = Clock()
    c = client(
        [httpx.Response(429, headers={"Retry-After": "1"})] * 5 + [httpx.Response(502)], clock
    )
    with pytest.raises(VendorError) as ei:
        c.request("slack", "logs", "GET", "https://x/a", deadline=clock.now + 225)
    assert not isinstance(ei.value, BudgetExhausted) and ei.value.status == 502


# ---------------------------------------------------------------- a body that cannot be read


def corrupt(status: int = 200) -> httpx.Response:
    """An answer whose gzip body is damaged, decoded only as it is read (as off the
    wire)."""
    return httpx.Response(
        status,
        headers={"Content-Encoding": "gzip"},
        stream=httpx.ByteStream(b"\x1f\x8b\x08\x00garbage-not-gzip"),
    )


@pytest.mark.parametrize(
    ("status", "error"), [(401, VendorAuthError), (403, VendorAuthError), (404, VendorError)]
)
def test_a_refusal_with_a_garbled_body_is_not_retried(status: int, error: type) -> None:
    """The status decides, read or not: a revoked token whose error page arrives
    garbled fails at once as a refusal (the on-call fixes the credential), instead of
    being retried as if the vendor were down."""
    clock = Clock()
    c = client([corrupt(status)], clock, retry=RetryPolicy(max_attempts=4))
    with pytest.raises(error) as ei:
        c.request("okta", "logs", "GET", "https://x/a")
    assert type(ei.value) is error and ei.value.status == status
    assert "could not be decoded" in str(ei.value)
    assert clock.slept == []  # no retry


def test_a_corrupt_gzip_body_is_retried_then_fails_naming_source_and_endpoint() -> None:
    clock = Clock()
    c = client([corrupt() for _ in range(3)], clock, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(VendorError) as ei:
        c.request("onepassword", "auditevents", "POST", "https://x/a")
    msg = str(ei.value)
    assert "'onepassword'" in msg and "'auditevents'" in msg
    assert "could not be decoded" in msg and "gave up after 3 attempts" in msg
    assert len(clock.slept) == 2  # three attempts


def test_a_corrupt_body_that_heals_on_retry_is_read() -> None:
    clock = Clock()
    c = client(
        [
            corrupt(),
            httpx.Response(200, json={"ok": True}),
        ],
        clock,
    )
    assert c.request("okta", "logs", "GET", "https://x/a").json() == {"ok": True}


def test_endless_redirects_are_a_vendor_error() -> None:
    clock = Clock()
    c = HttpClient(
        transport=httpx.MockTransport(
            lambda r: httpx.Response(302, headers={"Location": "https://x/loop"})
        ),
        retry=RetryPolicy(max_attempts=2),
        sleep=clock.sleep,
        clock=clock.time,
    )
    with pytest.raises(VendorError, match="TooManyRedirects") as ei:
        c.request("okta", "logs", "GET", "https://x/a", follow_redirects=True)
    assert "'logs'" in str(ei.value)


# ---------------------------------------------------------------- slow but steady pages


def test_a_slow_but_steady_page_gets_through_with_the_default_limit() -> None:
    """A 2-minute page arriving a chunk a second never stalls; it must not be cut and
    re-fetched on every attempt (the source would stay stuck on it)."""
    clock = Clock()
    body = Trickle(clock, n=120, every=1.0)
    c = HttpClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, stream=body)),
        sleep=clock.sleep,
        clock=clock.time,
    )
    resp = c.request("okta", "logs", "GET", "https://x/a", deadline=clock.now + 225)
    assert len(resp.content) == 120 and c.retries == 0
