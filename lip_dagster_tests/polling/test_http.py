"""Every vendor call: a timeout, bounded retries, the vendor's wait honoured."""

from __future__ import annotations

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


def test_slows_down_when_few_calls_are_left() -> None:
    clock = Clock()
    headers = {
        "X-Rate-Limit-Limit": "100",
        "X-Rate-Limit-Remaining": "2",
        "X-Rate-Limit-Reset": str(int(clock.now + 30)),
    }
    c = client([httpx.Response(200, headers=headers)], clock)
    c.request("okta", "logs", "GET", "https://x/a")
    assert clock.slept == [15.0]  # 30 s to reset spread over 2 calls


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
