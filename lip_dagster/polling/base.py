"""``BasePoller``: the one polling loop. Adapters implement three hooks.

    get_auth_token()                      -> a bearer/SSWS credential (cache it)
    call_api(token, endpoint, cursor, start_time, end_time) -> PollResult
    get_cursor_key(endpoint)              -> where the endpoint's cursor is stored

Everything else lives here, once: secrets through the cached store; first run starts
``initial_lookback`` back; cursor read and compare-and-set commit only after the page
is landed; time-budgeted paging; backpressure; bounded retries (``HttpClient``).
A backfill (``window`` given) asks the vendor for exactly that window and commits no
cursor; it fails loudly if it cannot finish, so an incomplete hour never looks done.

Pages are pipelined: page N+1 is fetched while page N lands (``LakeWriter.submit``),
and page N's cursor is committed once page N has landed, pages in order, so at most
two pages are in flight and the cursor never passes a page that has not landed. A
page that fails to land fails the run; the pages after it may still land (harmless:
the next run's dedupe drops them), but no cursor moves past the failed one.

With the cursor goes a high-water mark: the time up to which the vendor has given us
everything, which coverage turns into "hour complete". It never runs ahead of what
was fetched: for oldest-first vendors it is the newest event landed, or the time of
the request once caught up; newest-first vendors (``newest_first``) say it themselves
(``PollResult.high_water``), only when a window has been paged to its end.

A vendor failing on one endpoint does not keep the others from being collected: each
endpoint is polled, then the run fails naming every endpoint that failed.

A run that fails after landing pages has still moved cursors past them, so the next
run will not fetch them again: the exception carries the run's partial ``PollReport``
(``failed_report(exc)``) for the asset to record those hours as materialized before
the run goes red. Otherwise they would hold data no materialization speaks for.
"""

from __future__ import annotations

import gc
import logging
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, ClassVar

import httpx
import orjson

from lip_dagster import jsontext
from lip_dagster.errors import (
    ConfigError,
    LipError,
    VendorAuthError,
    VendorError,
    attach_report,
    attached_report,
)
from lip_dagster.lake.envelope import EventIdentity
from lip_dagster.lake.writer import LakeWriter, PendingWrite, WriteResult
from lip_dagster.polling.http import THROTTLE_STATUSES, BudgetExhausted, HttpClient
from lip_dagster.secrets import Secret
from lip_dagster.state.base import CursorStore, SecretStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollResult:
    """One page: the events, the cursor to resume after them, and whether to keep
    paging now (False: caught up, or the bounded window is exhausted).

    ``high_water`` is for adapters whose pages do not come oldest first: the time up
    to which the vendor has now given everything (a window's end, once the window is
    paged to its end). The base commits it with the cursor; it never derives a mark
    from the events of a newest-first page."""

    events: list[dict[str, Any]]
    cursor: str | None
    has_more: bool
    high_water: datetime | None = None


class Backpressure(Enum):
    NORMAL = "normal"
    REDUCED = "reduced"  # 25% of the time budget
    SKIP = "skip"


@dataclass(frozen=True)
class BackpressurePolicy:
    """Thresholds on the source's backlog (queued runs, buffer depth)."""

    reduce_at: int = 2
    skip_at: int = 5
    reduced_share: float = 0.25

    def decide(self, probe: Callable[[], int] | None) -> Backpressure:
        """Fail open: a probe that raises means NORMAL (monitoring never stops
        collection)."""
        if probe is None:
            return Backpressure.NORMAL
        try:
            depth = int(probe())
        except Exception as exc:  # noqa: BLE001 - fail open on monitoring, by design
            log.warning("backpressure probe failed (%s); polling normally", type(exc).__name__)
            return Backpressure.NORMAL
        if depth >= self.skip_at:
            return Backpressure.SKIP
        if depth >= self.reduce_at:
            return Backpressure.REDUCED
        return Backpressure.NORMAL


@dataclass(frozen=True)
class PollerConfig:
    """One source's polling settings, from its YAML block."""

    source: str
    base_url: str
    endpoints: tuple[str, ...]
    page_size: int = 1000
    time_budget_seconds: float = 240.0
    safety_margin_seconds: float = 15.0
    initial_lookback_hours: float = 24.0
    options: Mapping[str, str] = field(default_factory=dict)

    def option(self, name: str, default: str | None = None) -> str:
        value = self.options.get(name, default)
        if value is None or value == "":
            raise ConfigError(f"source {self.source!r}: option {name!r} is required")
        return value


@dataclass
class EndpointReport:
    cursor_before: str | None = None
    cursor_after: str | None = None
    pages: int = 0
    events: int = 0
    stopped: str = ""


@dataclass
class PollReport:
    """What one run did; the asset turns it into materializations and metadata."""

    source: str
    backpressure: str
    result: WriteResult = field(default_factory=WriteResult)
    endpoints: dict[str, EndpointReport] = field(default_factory=dict)
    retries: int = 0
    throttled: int = 0
    seconds: float = 0.0

    @property
    def pages(self) -> int:
        return sum(e.pages for e in self.endpoints.values())


class _InOrder:
    """Pages landing in the background. Each page's follow-up (stats, the cursor
    commit) runs only once that page has landed, and pages are followed up in the
    order they were fetched."""

    def __init__(self) -> None:
        self._pages: deque[tuple[PendingWrite | None, Callable[[WriteResult], None]]] = deque()

    def add(self, handle: PendingWrite | None, then: Callable[[WriteResult], None]) -> None:
        self._pages.append((handle, then))

    def settle(self, keep: int = 0) -> None:
        """Follow up the oldest pages until ``keep`` are left in flight. If a page
        failed (or its follow-up did), the pages after it are waited for but not
        followed up, and the error is raised."""
        while len(self._pages) > keep:
            handle, then = self._pages.popleft()
            try:
                then(handle.result() if handle is not None else WriteResult())
            except BaseException:
                self._abandon()
                raise

    def _abandon(self) -> None:
        while self._pages:
            handle, _ = self._pages.popleft()
            if handle is None:
                continue
            try:
                handle.result()
            except Exception as exc:  # noqa: BLE001 - the run fails with the first error
                log.warning("a later page also failed to land: %s", exc)


class BasePoller(ABC):
    """Subclass per vendor: set ``identity`` and ``default_endpoints``, implement the
    three hooks. ``self.request`` is the only way an adapter talks HTTP."""

    identity: ClassVar[EventIdentity]
    default_endpoints: ClassVar[tuple[str, ...]] = ()
    # pages arrive newest first: coverage moves only by the adapter's own
    # PollResult.high_water, since a page's newest event says nothing about the older
    # pages still to come
    newest_first: ClassVar[bool] = False
    # the answers that mean "slow down" for this vendor; a wait on them past the
    # budget ends a live poll cleanly, any other failure fails the run
    throttle_statuses: ClassVar[frozenset[int]] = THROTTLE_STATUSES
    # how far back the vendor still answers (VENDORS.md), None if it documents no
    # limit: a backfill of an hour older than that would get an empty window back and
    # turn green with 0 events, the look of a quiet hour, so it fails instead
    retention: ClassVar[timedelta | None] = None

    def __init__(
        self,
        config: PollerConfig,
        *,
        http: HttpClient,
        secrets: SecretStore,
        cursors: CursorStore,
        writer: LakeWriter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.source = config.source
        self.http = http
        self.secrets = secrets
        self.cursors = cursors
        self.writer = writer
        self.clock = clock
        self._deadline: float | None = None
        self._endpoint = ""
        # whether the current endpoint has returned a page in this run: until it has,
        # a request timing out at the deadline is no proof the vendor is alive
        self._answered = False

    # ------------------------------------------------------------ adapter hooks
    @abstractmethod
    def get_auth_token(self) -> Secret:
        """The credential for the next call; cache it (``TokenCache``)."""

    # the names of the ``options:`` this adapter reads, its secret names (``token_secret``)
    # included: any other name is refused when the definitions load
    known_options: ClassVar[tuple[str, ...]] = ()
    # the endpoints the vendor has, refused otherwise when the definitions load; None
    # where the vendor names them and refuses a wrong one itself (Google applications)
    known_endpoints: ClassVar[tuple[str, ...] | None] = None

    @classmethod
    def option_names(cls, endpoints: Sequence[str]) -> tuple[str, ...]:
        """Every option this adapter reads on a source polling ``endpoints``: its
        ``known_options``. Override when a name depends on the endpoint."""
        return cls.known_options

    @classmethod
    def validate_options(
        cls, source: str, options: Mapping[str, str], endpoints: Sequence[str]
    ) -> None:
        """Refuse, when the definitions load, an option this adapter does not read,
        then let the adapter check the values (``check_options``). An unknown name
        is a typo whose setting would be ignored for its default (``overlap: 30``
        kept Slack's 5-minute overlap), or a secret name never read, with the
        default secret read instead: neither may load. Done here once, for every
        adapter.

        Endpoints too: Okta and Slack have one log and ignore the endpoint's name, so
        ``endpoints: [logs, log]`` polled the same log twice under two cursors, and a
        misspelt 1Password endpoint failed every run instead of the load."""
        repeated = sorted({e for e in endpoints if list(endpoints).count(e) > 1})
        unknown_endpoints = [
            e for e in endpoints if cls.known_endpoints is not None and e not in cls.known_endpoints
        ]
        if repeated or unknown_endpoints:
            what = (
                f"endpoint {', '.join(map(repr, unknown_endpoints))} is not one its vendor has "
                f"({', '.join(cls.known_endpoints or ())})"
                if unknown_endpoints
                else f"endpoint {', '.join(map(repr, repeated))} is listed twice"
            )
            raise ConfigError(f"source {source!r}: {what}")
        known = cls.option_names(endpoints)
        unknown = sorted(set(options) - set(known))
        if unknown:
            reads = ", ".join(sorted(known)) or "no option"
            raise ConfigError(
                f"source {source!r}: option {', '.join(map(repr, unknown))} is not read by "
                f"its adapter ({cls.__name__}), which would ignore it and use its default; "
                f"it reads: {reads}"
            )
        cls.check_options(source, options)

    @classmethod
    def check_options(cls, source: str, options: Mapping[str, str]) -> None:
        """Refuse, when the definitions load, an option value this adapter would
        misread at run time (raise ``ConfigError`` naming it). A typo in a mode
        setting must not quietly select another mode. Options without a fixed set of
        values need nothing here; unknown names are refused before this is called
        (``validate_options``)."""
        return None

    def forget_auth_token(self) -> bool:
        """Drop a cached access token the vendor just refused (401), so the next
        ``get_auth_token`` fetches a new one; True if there was one to drop. A token
        can be revoked before it expires (an admin rotates the app's key, the vendor
        restarts its token service): one fresh token is worth a try before the run
        fails as a refused credential. Static credentials have nothing to refresh."""
        return False

    def _call(
        self,
        endpoint: str,
        cursor: str | None,
        start_time: datetime | None,
        end_time: datetime | None = None,
    ) -> PollResult:
        """``call_api`` with the current credential; on a 401, once more with a new
        access token if the adapter had one cached (bounded: one retry per page)."""
        try:
            return self.call_api(self.get_auth_token(), endpoint, cursor, start_time, end_time)
        except VendorAuthError as exc:
            if exc.status != 401 or not self.forget_auth_token():
                raise
            log.warning(
                "source %r endpoint %r: the access token was refused (HTTP 401); "
                "fetching a new one and trying the page once more",
                self.source,
                endpoint,
            )
        return self.call_api(self.get_auth_token(), endpoint, cursor, start_time, end_time)

    @abstractmethod
    def call_api(
        self,
        auth_token: Secret,
        endpoint: str,
        cursor: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
    ) -> PollResult:
        """Fetch one page. ``cursor`` is what this adapter returned before (opaque to
        the base); without one, start at ``start_time``. ``end_time`` is set only by
        backfills, which want a bounded window."""

    @abstractmethod
    def get_cursor_key(self, endpoint: str) -> str:
        """The cursor store key for an endpoint."""

    # ------------------------------------------------------------ for adapters
    def secret(self, option: str, default: str | None = None) -> Secret:
        """The secret named by the source option ``option`` (e.g. ``token_secret``)."""
        return self.secrets.get(self.config.option(option, default))

    def bearer(self, option: str, default: str) -> Secret:
        """``Bearer <token>`` from the secret named by ``option``."""
        return Secret("Bearer " + self.secret(option, default).reveal())

    def token_request(self, url: str, form: dict[str, str], what: str) -> tuple[str, float]:
        """POST an OAuth token request; a refusal (4xx) is a ``VendorAuthError`` naming
        ``what`` (the token endpoint), never the assertion or the secret. A token
        endpoint that is down (5xx, no answer) is a ``VendorError``: an outage, not a
        credential to go and check. Only 429 means "slow down" here: a status the
        vendor's data API throttles with (Google's 503) is the token endpoint failing,
        and taking it for a throttle would end the run green with nothing collected."""
        try:
            resp = self.request("POST", url, data=form, throttle_statuses=THROTTLE_STATUSES)
        except VendorError as exc:
            if exc.status is None or exc.status >= 500:
                raise VendorError(self.source, what, exc.status, exc.detail) from exc
            raise VendorAuthError(self.source, what, exc.status, exc.detail) from exc
        try:
            body = self.json_body(resp, dict)
        except VendorError as exc:
            raise VendorAuthError(self.source, what, exc.status, exc.detail) from exc
        if not isinstance(body.get("access_token"), str):
            raise VendorAuthError(
                self.source, what, resp.status_code, "the answer holds no access_token"
            )
        return body["access_token"], float(body.get("expires_in", 3600))

    def json_body(self, resp: httpx.Response, shape: type[list[Any]] | type[dict[str, Any]]) -> Any:
        """The response's JSON, which must be an array (``list``) or an object
        (``dict``). Parsed with orjson and the cyclic collector paused: a page of
        events holds no reference cycles, yet building one trips the collector many
        times over, and stdlib ``json`` (what ``resp.json()`` uses) takes several
        times as long (DESIGN §10). A page orjson refuses only for lone surrogate
        escapes (a vendor cutting a string mid-emoji) is read with each one as U+FFFD
        and a warning: refusing it would stop the cursor on that page for good.
        Anything else from the vendor is a ``VendorError`` naming source, endpoint and
        status."""
        paused = gc.isenabled()
        gc.disable()
        try:
            body, repaired = jsontext.loads(resp.content)
        except orjson.JSONDecodeError as exc:
            raise VendorError(
                self.source, self._endpoint, resp.status_code, f"response is not JSON: {exc.msg}"
            ) from None
        finally:
            if paused:
                gc.enable()
        if repaired:
            log.warning(
                "%s endpoint %r: replaced %d lone UTF-16 surrogate escape(s) in the page "
                "with U+FFFD",
                self.source,
                self._endpoint,
                repaired,
            )
        if not isinstance(body, shape):
            want = "array" if shape is list else "object"
            raise VendorError(
                self.source,
                self._endpoint,
                resp.status_code,
                f"expected a JSON {want}, got {type(body).__name__}",
            )
        return body

    def request(
        self,
        method: str,
        url: str,
        *,
        throttle_statuses: frozenset[int] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One call through the run's ``HttpClient``, bounded by the run's deadline.
        ``throttle_statuses`` overrides the adapter's own for a call to another
        service than the data API (a token endpoint)."""
        return self.http.request(
            self.source,
            self._endpoint,
            method,
            url,
            deadline=self._deadline,
            throttle_statuses=(
                self.throttle_statuses if throttle_statuses is None else throttle_statuses
            ),
            answered=self._answered,
            **kwargs,
        )

    # ------------------------------------------------------------ the loop
    def run(
        self,
        *,
        window: tuple[datetime, datetime] | None = None,
        depth_probe: Callable[[], int] | None = None,
        backpressure: BackpressurePolicy | None = None,
        endpoints: tuple[str, ...] | None = None,
    ) -> PollReport:
        """Poll every endpoint (live, or the bounded ``window`` of a backfill). On
        failure the raised exception carries what landed (``failed_report``)."""
        started = self.clock()
        decision = (
            Backpressure.NORMAL
            if window is not None
            else (backpressure or BackpressurePolicy()).decide(depth_probe)
        )
        report = PollReport(self.source, decision.value)
        if decision is Backpressure.SKIP:
            log.warning("%s: backlog too deep; skipping this poll", self.source)
            return report
        budget = self.config.time_budget_seconds
        if decision is Backpressure.REDUCED:
            budget *= (backpressure or BackpressurePolicy()).reduced_share
        margin = min(self.config.safety_margin_seconds, budget * 0.25)
        final_deadline = started + budget - margin
        retries0, throttled0 = self.http.retries, self.http.throttled

        def finish() -> None:
            report.retries = self.http.retries - retries0
            report.throttled = self.http.throttled - throttled0
            report.seconds = self.clock() - started

        todo = list(endpoints or self.config.endpoints)
        failures: dict[str, VendorError] = {}
        past_retention = self._past_retention(window, started)
        if past_retention is not None and window is not None and window[1] <= past_retention:
            # nothing of the window is left at the vendor: not one request
            finish()
            gone = self._beyond_retention(window, past_retention)
            attach_report(gone, report)
            raise gone
        try:
            for i, endpoint in enumerate(todo):
                # each endpoint gets a fair share of what is left, so one busy endpoint
                # cannot starve the others
                now = self.clock()
                share = (final_deadline - now) / (len(todo) - i)
                self._deadline = now + max(share, 0.0)
                self._endpoint = endpoint
                self._answered = False
                ep = report.endpoints.setdefault(endpoint, EndpointReport())
                try:
                    if window is None:
                        self._poll_live(endpoint, ep, report)
                    else:
                        self._poll_window(endpoint, window, ep, report)
                except VendorError as exc:
                    # one endpoint's outage must not cost the others their collection:
                    # what it landed is committed, the rest are polled, then the run fails
                    ep.stopped = "failed"
                    failures[endpoint] = exc
                    if i < len(todo) - 1:
                        log.error("%s; polling the remaining endpoints before failing", exc)
        except BaseException as exc:
            # a lake or cursor failure, a backfill out of time, or the run being
            # stopped (Dagster interrupts a terminated run with a BaseException):
            # pages before it may have landed (and, live, been committed past)
            finish()
            attach_report(exc, report)
            raise
        finish()
        if past_retention is not None and window is not None and not failures:
            # the vendor gave what it still keeps of the hour; the rest is gone
            partial = self._beyond_retention(window, past_retention)
            attach_report(partial, report)
            raise partial
        if not failures:
            return report
        error: VendorError
        if len(failures) == 1 and len(todo) == 1:
            error = next(iter(failures.values()))
        else:
            collected = [e for e in todo if e not in failures]
            refused = all(isinstance(e, VendorAuthError) for e in failures.values())
            error = (EndpointsRefused if refused else EndpointsFailed)(
                self.source, failures, collected
            )
        attach_report(error, report)
        raise error

    def _past_retention(
        self, window: tuple[datetime, datetime] | None, now: float
    ) -> datetime | None:
        """The vendor's retention cutoff if the backfill ``window`` starts before it
        (part or all of it can no longer be fetched), else None."""
        if window is None or self.retention is None:
            return None
        cutoff = datetime.fromtimestamp(now, UTC) - self.retention
        return cutoff if window[0] < cutoff else None

    def _beyond_retention(
        self, window: tuple[datetime, datetime], cutoff: datetime
    ) -> BackfillBeyondRetention:
        assert self.retention is not None
        start, end = window
        held = "nothing of it" if end <= cutoff else f"only what is newer than {_iso(cutoff)}"
        return BackfillBeyondRetention(
            f"source {self.source!r}: the backfill of {_iso(start)}..{_iso(end)} reaches "
            f"past the {self.retention.days} days the vendor keeps, and the vendor still "
            f"holds {held}: the hour cannot be collected from it in full. What the lake "
            "already holds of that hour is all there will be; it is not marked as "
            "materialized by this run"
        )

    def _submit(
        self,
        res: PollResult,
        ep: EndpointReport,
        report: PollReport,
        pages: _InOrder,
        then: Callable[[WriteResult], None] | None = None,
    ) -> None:
        """Hand a fetched page to the writer; once it has landed, count it and run
        ``then`` (the cursor commit)."""
        ep.pages += 1
        handle = None
        if res.events:
            handle = self.writer.submit(self.source, res.events, self.identity, "polling")

        def landed(wr: WriteResult) -> None:
            ep.events += wr.events
            report.result.merge(wr)
            if then is not None:
                then(wr)

        pages.add(handle, landed)

    def _poll_live(self, endpoint: str, ep: EndpointReport, report: PollReport) -> None:
        key = self.get_cursor_key(endpoint)
        rec = self.cursors.get(self.source, key)
        cursor = rec.value if rec else None  # where the next page is fetched from
        committed, version = cursor, (rec.version if rec else None)
        start_time = None
        if rec is None:
            start_time = datetime.fromtimestamp(self.clock(), UTC) - timedelta(
                hours=self.config.initial_lookback_hours
            )
        ep.cursor_before = cursor
        assert self._deadline is not None
        pages = _InOrder()

        def commit(res: PollResult, asked_at: datetime, wr: WriteResult) -> None:
            nonlocal committed, version
            if res.cursor is not None and (res.cursor != committed or not res.has_more):
                mark = self._high_water(res, asked_at, wr)
                hw = mark.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if mark else None
                rec = self.cursors.commit(self.source, key, res.cursor, version, high_water=hw)
                version, committed = rec.version, res.cursor

        try:
            while True:
                if self.clock() >= self._deadline:
                    ep.stopped = "budget"
                    break
                asked_at = datetime.fromtimestamp(self.clock(), UTC)
                try:
                    res = self._call(endpoint, cursor, start_time)
                except BudgetExhausted as exc:
                    log.warning("%s; stopping, the next run continues from here", exc)
                    ep.stopped = exc.reason
                    break
                self._answered = True
                self._submit(res, ep, report, pages, lambda wr, r=res, a=asked_at: commit(r, a, wr))
                if res.cursor is not None:
                    cursor, start_time = res.cursor, None
                pages.settle(keep=1)  # the page before lands while this one is fetched
                if not res.has_more:
                    ep.stopped = "caught_up"
                    break
        except BaseException:
            pages.settle()  # commit what landed before the failure, then fail
            ep.cursor_after = committed
            raise
        pages.settle()
        ep.cursor_after = committed

    def _high_water(self, res: PollResult, asked_at: datetime, wr: WriteResult) -> datetime | None:
        """The mark to commit with this page's cursor (None: no newer mark). Never
        later than the request: an event stamped in the future must not call hours
        complete that have not happened (the mark never moves back)."""
        if res.high_water is not None or self.newest_first:
            mark = res.high_water
        elif not res.has_more:
            # caught up: the vendor had nothing newer when asked, so coverage can
            # advance to the time of the request, not just to the newest event
            mark = asked_at
        else:
            mark = wr.newest_event
        return min(mark, asked_at) if mark is not None else None

    def _poll_window(
        self,
        endpoint: str,
        window: tuple[datetime, datetime],
        ep: EndpointReport,
        report: PollReport,
    ) -> None:
        start, end = window
        cursor: str | None = None
        assert self._deadline is not None
        pages = _InOrder()
        try:
            while True:
                if self.clock() >= self._deadline:
                    raise BackfillIncomplete(
                        f"source {self.source!r} endpoint {endpoint!r}: backfill of "
                        f"{start.isoformat()}..{end.isoformat()} ran out of its time budget "
                        f"after {ep.pages} pages; re-run it (events already landed are kept)"
                    )
                try:
                    res = self._call(endpoint, cursor, start, end)
                except BudgetExhausted as exc:
                    raise BackfillIncomplete(
                        f"{exc}; the backfill of {start.isoformat()}..{end.isoformat()} "
                        "is incomplete: re-run it (events already landed are kept)"
                    ) from exc
                self._answered = True
                self._submit(res, ep, report, pages)
                cursor = res.cursor
                pages.settle(keep=1)
                if not res.has_more:
                    ep.stopped = "window_done"
                    break
        except BaseException:
            pages.settle()  # what was fetched still lands (and is reported), then fail
            raise
        pages.settle()


def failed_report(exc: BaseException) -> PollReport | None:
    """What a failed ``BasePoller.run`` did before it failed (the pages it landed, and
    for a live poll committed past), or None if the error did not come from a run."""
    return attached_report(exc, PollReport)


class BackfillIncomplete(LipError):
    """A bounded window could not be fetched to its end within the budget."""


class BackfillBeyondRetention(BackfillIncomplete):
    """A backfill window starts before the oldest time the vendor still returns
    (``BasePoller.retention``): re-running it cannot complete the hour."""


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EndpointsFailed(VendorError):
    """Endpoints of one source failed in a run whose other endpoints were still
    collected. ``failures`` holds each endpoint's own error; the message names them
    all, one per line with its cause, so on-call sees every broken endpoint at once
    and which ones did land."""

    def __init__(
        self, source: str, failures: Mapping[str, VendorError], collected: Sequence[str]
    ) -> None:
        self.failures = dict(failures)
        self.collected = list(collected)
        self.source = source
        self.endpoint = ", ".join(self.failures)
        statuses = {e.status for e in self.failures.values()}
        self.status = statuses.pop() if len(statuses) == 1 else None
        self.detail = "\n".join(
            f"  - endpoint {ep!r}: {_cause(exc)}" for ep, exc in self.failures.items()
        )
        total = len(self.failures) + len(self.collected)
        landed = f"collected: {', '.join(self.collected)}" if self.collected else "none collected"
        LipError.__init__(
            self,
            f"source {source!r}: {len(self.failures)} of {total} endpoints failed "
            f"({landed}):\n{self.detail}",
        )


class EndpointsRefused(EndpointsFailed, VendorAuthError):
    """Every failed endpoint refused the credentials: retrying will not help."""


def _cause(exc: VendorError) -> str:
    status = f"HTTP {exc.status}" if exc.status is not None else "no HTTP response"
    return f"{status}: {exc.detail}"
