"""One HTTP client for every vendor call.

- **Every request is bounded.** Connect, read and write each have a timeout, so a
  stalled server is given up on after one read timeout. The whole exchange (headers
  and body) also has ``total_timeout`` (per source, generous: 300 s by default), so a
  server or proxy that trickles a byte just inside the read timeout cannot hold a
  request, and with it the source's one run, open for ever; it is generous so a large
  page that is slow but steadily arriving is not cut on every attempt, which would
  leave the source stuck on that page. Each attempt's limits are also cut to the time
  left before the run's deadline.
- **Bounded retries** (``RetryPolicy.max_attempts``) for 5xx, timeouts, connection
  errors and bodies that cannot be read (a corrupt gzip, too many redirects), with
  exponential backoff and full jitter, capped at ``max_delay``.
- **The vendor's wait is honoured in full.** A throttled answer (429, or a vendor's
  documented rate-limit answer such as Google's 503) waits as long as ``Retry-After``
  (seconds or an HTTP date) or the rate-limit reset header says, never less: coming
  back early only earns another throttle, and Slack counts its limit org-wide. A
  malformed ``Retry-After`` falls back to our own backoff. When the vendor says few
  calls are left, the next call waits its share of the time to the reset.

When the run's deadline comes first:

- a throttle or slow-down whose wait would cross it ends the poll cleanly at once
  (``BudgetExhausted``, reason ``rate_limited``): what landed is committed and the next
  scheduled run carries on;
- a throttle on every one of the bounded attempts (short waits that never cross it)
  is the same clean stop: the vendor is answering, just slowly;
- the time running out before a request could finish, with nothing failing, is a
  clean stop too (reason ``budget``), but only once the endpoint has had an answer in
  this run (``answered``): a request whose timeout was shortened to the time left is
  no evidence against a vendor that answers, yet a vendor that has not answered once
  is indistinguishable from a hung one, and an endpoint's share of a short or reduced
  budget is often below the read timeout, so calling that clean would turn a hung
  vendor into a green run;
- a vendor failing (timeouts, connection errors, other 5xx) whose next retry would
  cross it raises ``VendorError`` naming the failure: the run fails and alerts. An
  outage must never look like throttling, or a dead vendor shows as a green run.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Literal

import httpx

from lip_dagster.errors import ConfigError, LipError, VendorAuthError, VendorError
from lip_dagster.secrets import redact_url

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# the answers that mean "slow down" unless a vendor documents another (Google: 503)
THROTTLE_STATUSES = frozenset({429})
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# the whole request, headers and body. A stall is caught by the read timeout; this
# only bounds a body that keeps arriving, so it is generous: a 1,000-event page of a
# few MB over a slow link must still get through (per source:
# ``request_total_timeout_seconds``)
DEFAULT_TOTAL_TIMEOUT = 300.0

StopReason = Literal["rate_limited", "budget"]


class BudgetExhausted(LipError):
    """The run's deadline comes before this request could be answered, and the vendor
    is not failing: it asked for a wait past the deadline (``reason`` ``rate_limited``)
    or the time simply ran out (``budget``). A live poll stops cleanly on it."""

    def __init__(self, message: str, reason: StopReason = "rate_limited") -> None:
        super().__init__(message)
        self.reason: StopReason = reason


class WholeRequestTimeout(httpx.ReadTimeout):
    """The request as a whole (not one read) outlasted its limit. ``status`` is the
    answer's status when its headers had arrived and the body was still coming."""

    def __init__(self, message: str, *, request: httpx.Request, status: int | None = None) -> None:
        super().__init__(message, request=request)
        self.status = status


def _stop_unless_retryable(
    source: str, endpoint: str, status: int, detail: str, throttle_statuses: frozenset[int]
) -> None:
    """Raise for an answer no retry can change: 401/403 (unless this vendor throttles
    with them) as ``VendorAuthError``, other statuses outside ``RETRY_STATUSES`` as
    ``VendorError``."""
    if status in (401, 403) and status not in throttle_statuses:
        raise VendorAuthError(source, endpoint, status, detail)
    if status not in RETRY_STATUSES and status not in throttle_statuses:
        raise VendorError(source, endpoint, status, detail)


class _UnreadableBody(Exception):
    """The answer arrived but its body could not be read (a corrupt gzip, say)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 0.5
    # caps our own backoff only; a wait the vendor asks for is never shortened
    max_delay: float = 60.0
    # below this share of the rate-limit window left, spread the remaining calls
    slow_down_below: float = 0.1

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(
                f"RetryPolicy.max_attempts must be at least 1, not {self.max_attempts}"
            )

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, base * 2^attempt], capped."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * (2**attempt)))


def _header_float(headers: httpx.Headers, *names: str) -> float | None:
    for name in names:
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            continue
        if math.isfinite(value):
            return value
    return None


def _parse_retry_after(raw: str, now: float) -> float | None:
    """Seconds from ``Retry-After``: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
    None when it is neither (or not a finite number)."""
    try:
        seconds = float(raw)
    except ValueError:
        when = _http_date(raw)
        if when is None:
            return None
        seconds = when - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _http_date(raw: str) -> float | None:
    """An HTTP date (RFC 9110 §5.6.7) as epoch seconds; None if it is not one."""
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": the date is UTC by definition
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def vendor_time(resp: httpx.Response) -> float | None:
    """The vendor's clock when it answered: its ``Date`` header (every origin server
    with a clock sends one, RFC 9110 §6.6.1), whole seconds, rounded down. None
    without a usable one."""
    raw = resp.headers.get("date")
    return _http_date(raw) if raw else None


def retry_after_seconds(resp: httpx.Response, now: float, use_reset: bool = True) -> float | None:
    """Seconds the vendor asked us to wait: ``Retry-After`` (seconds or HTTP date), or
    (``use_reset``: only when the answer is about the rate limit) the reset epoch of
    Okta's ``X-Rate-Limit-Reset`` / GitHub's ``x-ratelimit-reset``. Okta sends the reset
    header on every answer, a 500 included; there it says nothing about when to retry.
    A malformed ``Retry-After`` counts as absent, so the caller backs off on its own."""
    raw = resp.headers.get("retry-after")
    if raw and raw.strip():
        asked = _parse_retry_after(raw.strip(), now)
        if asked is not None:
            return asked
        log.warning("ignoring a malformed Retry-After header %r", raw[:40])
    reset = _header_float(resp.headers, "x-rate-limit-reset", "x-ratelimit-reset")
    if use_reset and reset is not None:
        return max(0.0, reset - now)
    return None


@dataclass(frozen=True)
class _Failure:
    """Why the last attempt did not succeed."""

    status: int | None
    detail: str
    throttled: bool

    def summary(self) -> str:
        """For the retry log line: the status alone when it says it all (a 429, a 502),
        with the detail when the status was fine but the body was not (a 200 cut off)."""
        if self.status is None:
            return self.detail
        return str(self.status) if self.status >= 400 else f"{self.status}, {self.detail}"


@dataclass(frozen=True)
class _Attempt:
    """One attempt's limits: the per-operation timeouts, the instant the whole request
    must be done by, and the time left before the run's deadline (None: no deadline)."""

    timeout: httpx.Timeout
    stop_at: float
    total: float
    deadline_left: float | None

    def cut_by_deadline(self, exc: httpx.TimeoutException) -> bool:
        """Whether the limit that fired was shortened by the run's deadline; then the
        vendor was not given its full time and the timeout is no evidence against it."""
        if self.deadline_left is None:
            return False
        limit: float | None
        if isinstance(exc, WholeRequestTimeout):
            limit = self.total
        elif isinstance(exc, httpx.ConnectTimeout):
            limit = self.timeout.connect
        elif isinstance(exc, httpx.WriteTimeout):
            limit = self.timeout.write
        elif isinstance(exc, httpx.PoolTimeout):
            limit = self.timeout.pool
        else:
            limit = self.timeout.read
        return limit is not None and limit >= self.deadline_left


class _StopAt(httpx.SyncByteStream):
    """A response body that stops being read once the request's time is up. Each
    chunk is checked as it arrives; the clamped read timeout bounds the wait for one."""

    def __init__(
        self,
        inner: httpx.SyncByteStream,
        stop_at: float,
        clock: Callable[[], float],
        request: httpx.Request,
        status: int,
        started: float,
    ) -> None:
        self._inner, self._stop_at, self._clock = inner, stop_at, clock
        self._request, self._status, self._started = request, status, started

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            if self._clock() > self._stop_at:
                raise WholeRequestTimeout(
                    "the response body was still arriving after "
                    f"{self._clock() - self._started:.0f} s",
                    request=self._request,
                    status=self._status,
                )
            yield chunk

    def close(self) -> None:
        self._inner.close()


class HttpClient:
    """Shared by every poller of a run; one connection pool."""

    def __init__(
        self,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        total_timeout: float = DEFAULT_TOTAL_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        self.timeout = timeout
        self.total_timeout = total_timeout
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
        # origin -> earliest time for its next call, when the vendor said few are left
        self._not_before: dict[str, float] = {}

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
        throttle_statuses: frozenset[int] = THROTTLE_STATUSES,
        answered: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with bounded retries. Returns a response whose status is in
        ``ok_statuses``. Raises ``VendorAuthError`` on 401/403, ``VendorError`` when
        retries are exhausted, the status is not retryable, or the vendor is still
        failing when ``deadline`` comes; ``BudgetExhausted`` when the vendor throttles
        past ``deadline`` or on every attempt, or the time runs out with nothing failing.
        ``throttle_statuses`` are the answers that mean "slow down" for this vendor.
        ``answered``: this endpoint already answered in this run, so a timeout cut short
        by the deadline is a clean stop; without it, that timeout is an outage."""
        failure: _Failure | None = None
        attempts = 0
        for attempt in range(self.retry.max_attempts):
            self._keep_pace(source, endpoint, url, deadline)
            limits = self._limits(deadline)
            if limits is None:
                raise self._out_of_time(source, endpoint, failure, attempts)
            attempts += 1
            try:
                resp = self._send(method, url, limits, **kwargs)
            except httpx.TimeoutException as exc:
                detail = _timeout_detail(exc)
                status = exc.status if isinstance(exc, WholeRequestTimeout) else None
                if limits.cut_by_deadline(exc):
                    if answered or failure is not None:
                        raise self._out_of_time(source, endpoint, failure, attempts) from None
                    # nothing has come back from this endpoint in this run: a vendor
                    # that hangs looks exactly like this, so it must not end green
                    raise VendorError(
                        source,
                        endpoint,
                        status,
                        f"{detail}: the request did not finish within the "
                        f"{limits.deadline_left:.0f} s left of this run's time budget, and "
                        "none from this endpoint has yet in this run",
                    ) from None
                failure = _Failure(status, detail, throttled=False)
                wait = self.retry.backoff(attempt, self.rng)
            except httpx.TransportError as exc:
                failure = _Failure(None, f"connection failed ({type(exc).__name__})", False)
                wait = self.retry.backoff(attempt, self.rng)
            except _UnreadableBody as exc:
                # what the status says counts, read or not: a 401 is a refusal even
                # when its error page arrives garbled, and a 404 is never worth a retry
                if exc.status not in ok_statuses:
                    _stop_unless_retryable(
                        source, endpoint, exc.status, exc.detail, throttle_statuses
                    )
                failure = _Failure(exc.status, exc.detail, exc.status in throttle_statuses)
                wait = self.retry.backoff(attempt, self.rng)
            except httpx.RequestError as exc:
                # the rest of httpx's request errors (too many redirects, say; a body
                # that cannot be decoded is _UnreadableBody, from ``_send``): a failed
                # attempt like any other, so it is retried and ends as a VendorError
                failure = _Failure(None, f"request failed ({type(exc).__name__})", False)
                wait = self.retry.backoff(attempt, self.rng)
            else:
                status = resp.status_code
                if status in ok_statuses:
                    self._note_pace(resp, url)
                    return resp
                detail = _error_summary(resp)
                _stop_unless_retryable(source, endpoint, status, detail, throttle_statuses)
                throttled = status in throttle_statuses
                if throttled:
                    self.throttled += 1
                failure = _Failure(status, detail, throttled)
                asked = retry_after_seconds(resp, self.clock(), use_reset=throttled)
                wait = (
                    asked + self.rng.uniform(0, 0.25)
                    if asked is not None
                    else self.retry.backoff(attempt, self.rng)
                )
            if attempt == self.retry.max_attempts - 1:
                break
            if deadline is not None and self.clock() + wait > deadline:
                raise self._out_of_time(source, endpoint, failure, attempts, wait)
            self.retries += 1
            log.warning(
                "%s/%s: %s %s -> %s; retry %d/%d in %.1fs",
                source,
                endpoint,
                method,
                redact_url(url),
                failure.summary(),
                attempt + 1,
                self.retry.max_attempts - 1,
                wait,
            )
            self.sleep(wait)
        # the loop ends here only after max_attempts (>= 1) failed attempts
        if failure is not None and failure.throttled:
            # throttled is not down: the vendor answers and asks us to slow down, so
            # the poll stops cleanly and the next scheduled run carries on
            raise BudgetExhausted(
                f"source {source!r} endpoint {endpoint!r}: still throttled (HTTP "
                f"{failure.status}) after {attempts} attempts",
                reason="rate_limited",
            )
        raise VendorError(
            source,
            endpoint,
            failure.status if failure else None,
            f"{failure.detail if failure else 'no attempt made'} "
            f"(gave up after {attempts} attempts)",
        )

    # ------------------------------------------------------------ one attempt
    def _limits(self, deadline: float | None) -> _Attempt | None:
        """This attempt's limits, each cut to the time left before the run's deadline;
        None when no time is left."""
        now = self.clock()
        stop_at = now + self.total_timeout
        left: float | None = None
        if deadline is not None:
            left = deadline - now
            if left <= 0:
                return None
            stop_at = min(stop_at, deadline)
        room = stop_at - now
        t = self.timeout

        def cut(limit: float | None) -> float:
            return room if limit is None else min(limit, room)

        timeout = httpx.Timeout(
            connect=cut(t.connect), read=cut(t.read), write=cut(t.write), pool=cut(t.pool)
        )
        return _Attempt(timeout, stop_at, self.total_timeout, left)

    def _send(self, method: str, url: str, limits: _Attempt, **kwargs: Any) -> httpx.Response:
        """One exchange, read to the end or cut off at ``limits.stop_at``."""
        send_options = {k: kwargs.pop(k) for k in ("auth", "follow_redirects") if k in kwargs}
        request = self.client.build_request(method, url, timeout=limits.timeout, **kwargs)
        started = self.clock()
        resp = self.client.send(request, stream=True, **send_options)
        try:
            if self.clock() > limits.stop_at:
                raise WholeRequestTimeout(
                    f"the answer's headers took {self.clock() - started:.0f} s",
                    request=request,
                    status=resp.status_code,
                )
            if isinstance(resp.stream, httpx.SyncByteStream):
                resp.stream = _StopAt(
                    resp.stream, limits.stop_at, self.clock, request, resp.status_code, started
                )
            try:
                resp.read()
            except httpx.DecodingError as exc:
                # a corrupt gzip or charset: the vendor answered, the body is unusable
                raise _UnreadableBody(
                    resp.status_code, f"the response body could not be decoded ({exc})"
                ) from exc
        finally:
            resp.close()
        return resp

    def _out_of_time(
        self,
        source: str,
        endpoint: str,
        failure: _Failure | None,
        attempts: int,
        wait: float | None = None,
    ) -> LipError:
        """What the deadline means, given how the last attempt went: a throttle or
        nothing at all is a clean stop; a failing vendor is an outage."""
        where = f"source {source!r} endpoint {endpoint!r}"
        if failure is None:
            return BudgetExhausted(
                f"{where}: the run's time budget ran out before the request finished",
                reason="budget",
            )
        if failure.throttled:
            asked = f"asked to wait {wait:.0f} s" if wait is not None else "still throttling"
            return BudgetExhausted(
                f"{where}: throttled (HTTP {failure.status}) and {asked}, past the end of "
                "this run's time budget",
                reason="rate_limited",
            )
        return VendorError(
            source,
            endpoint,
            failure.status,
            f"{failure.detail}; still failing after {attempts} attempt(s) when the run's "
            "time budget ran out",
        )

    # ------------------------------------------------------------ pacing
    def _note_pace(self, resp: httpx.Response, url: str) -> None:
        """Okta-style headers: when little of the window is left, the next call to this
        vendor waits its share of the time to the reset instead of running into a
        429. The wait is taken before that call, so this page is kept either way."""
        limit = _header_float(resp.headers, "x-rate-limit-limit", "x-ratelimit-limit")
        remaining = _header_float(resp.headers, "x-rate-limit-remaining", "x-ratelimit-remaining")
        if not limit or remaining is None or remaining > limit * self.retry.slow_down_below:
            return
        until_reset = retry_after_seconds(resp, self.clock())
        if until_reset is None:
            return
        pause = until_reset / max(remaining, 1.0)
        if pause > 0:
            self._not_before[_origin(url)] = self.clock() + pause

    def _keep_pace(self, source: str, endpoint: str, url: str, deadline: float | None) -> None:
        """Wait out a slow-down the vendor's headers asked for; if it lasts past the
        deadline, stop now rather than call early into the limit."""
        origin = _origin(url)
        at = self._not_before.get(origin)
        if at is None:
            return
        pause = at - self.clock()
        if pause <= 0:
            del self._not_before[origin]
            return
        if deadline is not None and at > deadline:
            raise BudgetExhausted(
                f"source {source!r} endpoint {endpoint!r}: the vendor's rate limit is nearly "
                f"used up and resets in {pause:.0f} s, past the end of this run's time "
                "budget",
                reason="rate_limited",
            )
        del self._not_before[origin]
        self.throttled += 1
        self.sleep(pause)


def _origin(url: str) -> str:
    u = httpx.URL(url)
    return f"{u.scheme}://{u.host}:{u.port or ''}"


def _timeout_detail(exc: httpx.TimeoutException) -> str:
    if isinstance(exc, WholeRequestTimeout):
        return f"timed out ({exc})"
    return f"timed out ({type(exc).__name__})"


def _error_summary(resp: httpx.Response) -> str:
    """A short, secret-free description of a vendor error body."""
    text = resp.text[:300] if resp.content else ""
    return f"{resp.reason_phrase or 'error'}: {text}".strip().rstrip(":")
