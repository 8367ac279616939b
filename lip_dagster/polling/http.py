"""One HTTP client for every vendor call: a timeout on every request, bounded retries
with exponential backoff and full jitter, ``Retry-After`` and rate-limit reset headers
honoured, and a slow-down before the limit when the vendor says little is left.

Retries never outlast the run's deadline: a wait that would cross it ends the poll
cleanly (``BudgetExhausted``) so what was landed is committed and the next scheduled
run carries on.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from lip_dagster.errors import LipError, VendorAuthError, VendorError
from lip_dagster.secrets import redact_url

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class BudgetExhausted(LipError):
    """The run's time budget ends before the next attempt could start."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 60.0
    # below this share of the rate-limit window left, spread the remaining calls
    slow_down_below: float = 0.1

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, base * 2^attempt], capped."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * (2**attempt)))


def _header_float(headers: httpx.Headers, *names: str) -> float | None:
    for name in names:
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return float(raw)
        except ValueError:
            continue
    return None


def retry_after_seconds(resp: httpx.Response, now: float, use_reset: bool = True) -> float | None:
    """Seconds the vendor asked us to wait: ``Retry-After`` (seconds or HTTP date), or
    (``use_reset``: only when the answer is about the rate limit) the reset epoch of
    Okta's ``X-Rate-Limit-Reset`` / GitHub's ``x-ratelimit-reset``. Okta sends the reset
    header on every answer, a 500 included; there it says nothing about when to retry."""
    raw = resp.headers.get("retry-after")
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(raw) if raw else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - now)
    reset = _header_float(resp.headers, "x-rate-limit-reset", "x-ratelimit-reset")
    if use_reset and reset is not None:
        return max(0.0, reset - now)
    return None


class HttpClient:
    """Shared by every poller of a run; one connection pool."""

    def __init__(
        self,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        self.client = httpx.Client(
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": "lip/0.1 (+security log ingestion)"},
        )
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        self.rng = random.Random(seed)  # jitter, not crypto
        self.retries = 0
        self.throttled = 0

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        source: str,
        endpoint: str,
        method: str,
        url: str,
        *,
        deadline: float | None = None,
        ok_statuses: frozenset[int] = frozenset({200}),
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with bounded retries. Returns a response whose status is in
        ``ok_statuses``; raises ``VendorAuthError`` on 401/403, ``VendorError`` when
        retries are exhausted or the status is not retryable, ``BudgetExhausted``
        when waiting would cross ``deadline``."""
        last_status: int | None = None
        last_detail = ""
        for attempt in range(self.retry.max_attempts):
            try:
                resp = self.client.request(method, url, **kwargs)
            except httpx.TimeoutException as exc:
                last_status, last_detail = None, f"timed out ({type(exc).__name__})"
                wait = self.retry.backoff(attempt, self.rng)
            except httpx.TransportError as exc:
                last_status, last_detail = None, f"connection failed ({type(exc).__name__})"
                wait = self.retry.backoff(attempt, self.rng)
            else:
                if resp.status_code in ok_statuses:
                    self._maybe_slow_down(resp, deadline)
                    return resp
                last_status, last_detail = resp.status_code, _error_summary(resp)
                if resp.status_code in (401, 403) and resp.status_code not in RETRY_STATUSES:
                    raise VendorAuthError(source, endpoint, resp.status_code, last_detail)
                if resp.status_code not in RETRY_STATUSES:
                    raise VendorError(source, endpoint, resp.status_code, last_detail)
                if resp.status_code == 429:
                    self.throttled += 1
                asked = retry_after_seconds(resp, self.clock(), use_reset=resp.status_code == 429)
                wait = (
                    min(asked, self.retry.max_delay) + self.rng.uniform(0, 0.25)
                    if asked is not None
                    else self.retry.backoff(attempt, self.rng)
                )
            if attempt == self.retry.max_attempts - 1:
                break
            if deadline is not None and self.clock() + wait > deadline:
                raise BudgetExhausted(
                    f"source {source!r} endpoint {endpoint!r}: {last_detail or last_status}; "
                    "the run's time budget ends before the next retry"
                )
            self.retries += 1
            log.warning(
                "%s/%s: %s %s -> %s; retry %d/%d in %.1fs",
                source,
                endpoint,
                method,
                redact_url(url),
                last_status or last_detail,
                attempt + 1,
                self.retry.max_attempts - 1,
                wait,
            )
            self.sleep(wait)
        raise VendorError(
            source,
            endpoint,
            last_status,
            f"{last_detail} (gave up after {self.retry.max_attempts} attempts)",
        )

    def _maybe_slow_down(self, resp: httpx.Response, deadline: float | None) -> None:
        """Okta-style headers: when little of the window is left, spread the remaining
        calls until reset instead of running into a 429."""
        limit = _header_float(resp.headers, "x-rate-limit-limit", "x-ratelimit-limit")
        remaining = _header_float(resp.headers, "x-rate-limit-remaining", "x-ratelimit-remaining")
        if not limit or remaining is None or remaining > limit * self.retry.slow_down_below:
            return
        until_reset = retry_after_seconds(resp, self.clock())
        if until_reset is None:
            return
        pause = min(until_reset / max(remaining, 1.0), self.retry.max_delay)
        if deadline is not None:
            pause = min(pause, max(0.0, deadline - self.clock()))
        if pause > 0:
            self.throttled += 1
            self.sleep(pause)


def _error_summary(resp: httpx.Response) -> str:
    """A short, secret-free description of a vendor error body."""
    text = resp.text[:300] if resp.content else ""
    return f"{resp.reason_phrase or 'error'}: {text}".strip().rstrip(":")
