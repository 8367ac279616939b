"""Paging a newest-first API (Slack, Google Reports) without losing events.

Such APIs return the newest page first, so nothing about a window is safe to commit
as progress until the whole window has been paged. ``WindowPass`` is the cursor: the
fixed window ``[oldest, latest]`` being paged, the vendor's page token, the newest
event time seen, and the re-read overlap. A crash mid-window resumes the same window
from the same page token.

A finished window starts the next one at its own end (``latest``, the time we asked)
minus the overlap, and dedupe drops the re-read events. Lateness is measured from the
time we asked: an event stamped earlier than ``latest - overlap`` that the vendor
publishes after we asked is later than the overlap, which only a wider overlap (or a
backfill) reads. Starting from ``latest`` rather than from the newest event seen keeps
the window of a quiet endpoint (no new events for weeks) as short as that of a busy
one: it never re-reads the last event ever seen, so that event cannot land again once
its dedupe record has expired.

Coverage follows the same rule: while a page token is pending, the older part of the
window is still unfetched, so no newer mark is given; a finished window covers up to
its own end minus the overlap (events that old may still be published, and the next
window re-reads them), never below the window's start, and never to the time its last
page was asked for, since anything newer than ``latest`` waits for the next window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import NamedTuple

import orjson

from lip_dagster.errors import ConfigError

MAX_OVERLAP_MINUTES = 7 * 24 * 60
# A Date header has whole seconds and is sent after the request: clocks that agree
# read up to about two seconds apart, which the overlap covers many times over.
_MIN_SKEW_SECONDS = 2.0
_MAX_SKEW_SECONDS = 86_400.0


def overlap_option(
    source: str, options: Mapping[str, str], names: Sequence[str], default_minutes: float
) -> float:
    """A re-read overlap in seconds: the first of the options ``names`` that is set,
    else ``default_minutes``. A value that is not a number of minutes between 0 and
    7 days fails with a ``ConfigError`` naming the option."""
    for name in names:
        raw = options.get(name)
        if raw is None or raw == "":
            continue
        try:
            minutes = float(raw)
        except ValueError:
            minutes = -1.0
        if not 0 <= minutes <= MAX_OVERLAP_MINUTES:  # nan fails both comparisons
            raise ConfigError(
                f"source {source!r}: option {name!r} must be a number of minutes "
                f"between 0 and {MAX_OVERLAP_MINUTES}, not {raw!r}"
            )
        return minutes * 60
    return default_minutes * 60


class WindowStep(NamedTuple):
    """Where a window stands after one page."""

    cursor: str  # the WindowPass to store
    has_more: bool  # a page token is pending
    # once the window is paged to its end: ``latest - overlap`` (not below ``oldest``);
    # else None
    high_water: datetime | None


@dataclass(frozen=True)
class WindowPass:
    oldest: float
    latest: float
    page: str | None = None
    hw: float | None = None
    overlap: float = 0.0  # seconds re-read by the next window; not yet complete
    # the vendor's clock (its Date header) at the window's first answer, when behind
    # ``latest``: nothing the vendor stamps later can have been in the window
    vendor_now: float | None = None

    def dumps(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def loads(cls, raw: str) -> WindowPass:
        d = orjson.loads(raw)
        hw = d.get("hw")
        return cls(
            float(d["oldest"]),
            float(d["latest"]),
            d.get("page"),
            float(hw) if hw is not None else None,
            float(d.get("overlap") or 0.0),  # cursors stored before it was kept
            float(vn) if (vn := d.get("vendor_now")) is not None else None,
        )

    @classmethod
    def begin(
        cls,
        cursor: str | None,
        start_time: datetime | None,
        end_time: datetime | None,
        now: float,
        overlap_seconds: float = 0.0,
    ) -> WindowPass:
        """The window this request belongs to."""
        latest = end_time.timestamp() if end_time else now
        if cursor:
            st = cls.loads(cursor)
            if st.page:
                # mid-window: keep paging the same fixed window
                return replace(st, overlap=overlap_seconds)
            # the window's own end, never the newest event seen: an event stamped
            # in the future (a vendor's clock, a unit slip) would otherwise start
            # every later window at that future time and skip what is published now
            start = st.latest - overlap_seconds
            return cls(min(start, latest), latest, None, st.hw, overlap_seconds)
        if start_time is None:
            raise ValueError("a first request needs a start time")
        return cls(start_time.timestamp(), latest, None, None, overlap_seconds)

    def advance(
        self, next_page: str | None, newest: float | None, vendor_now: float | None = None
    ) -> WindowStep:
        """The cursor to store, whether pages remain, and the coverage mark after a
        page (``PollResult.high_water``).

        ``vendor_now``: the vendor's clock when it answered the page (``vendor_time``).
        A window asked up to our ``latest`` holds only what the vendor had stamped by
        its own clock; if that clock is behind ours, the window really ended there.
        The finished window then ends at the vendor's time, so the next window starts
        ``overlap`` before it: starting from our ``latest`` instead skipped every
        entry the vendor stamped in between once our clock ran ahead by more than the
        overlap. Clocks within two seconds count as agreeing (a Date has whole
        seconds). A Date more than a day behind is no clock skew but a broken header,
        and is ignored (it would re-read everything since)."""
        seen = self.vendor_now
        if (
            vendor_now is not None
            and _MIN_SKEW_SECONDS < self.latest - vendor_now <= _MAX_SKEW_SECONDS
        ):
            seen = vendor_now if seen is None else min(seen, vendor_now)
        hw = self.hw
        if newest is not None:
            # Never past the window asked for: an event stamped later (a vendor's
            # clock, milliseconds where seconds are documented) is no sign the window
            # reached that far, and the cursor keeps nothing later than its end
            newest = min(newest, self.latest)
            if hw is None or newest > hw:
                hw = newest
        if next_page:
            step = replace(self, page=next_page, hw=hw, vendor_now=seen)
            return WindowStep(step.dumps(), True, None)
        end = self.latest if seen is None else max(self.oldest, min(self.latest, seen))
        done_hw = min(hw, end) if hw is not None else end
        complete = max(self.oldest, end - self.overlap)
        return WindowStep(
            replace(self, latest=end, page=None, hw=done_hw, vendor_now=None).dumps(),
            False,
            datetime.fromtimestamp(complete, UTC),
        )


def cursor_overlap(raw: str | None) -> float:
    """The overlap (seconds) a stored cursor's coverage mark trails the time of its
    last request by design: a ``WindowPass``'s own overlap; 0 for any other cursor."""
    if not raw or not raw.startswith("{"):
        return 0.0
    try:
        overlap = WindowPass.loads(raw).overlap
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
        return 0.0  # another adapter's JSON cursor
    return overlap if 0 <= overlap <= MAX_OVERLAP_MINUTES * 60 else 0.0
