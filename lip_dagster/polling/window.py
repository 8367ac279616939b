"""Paging a newest-first API (Slack, Google Reports) without losing events.

Such APIs return the newest page first, so nothing about a window is safe to commit
as progress until the whole window has been paged. ``WindowPass`` is the cursor: the
fixed window ``[oldest, latest]`` being paged, the vendor's page token, and the newest
event time seen. A crash mid-window resumes the same window from the same page token;
a finished window starts the next one at the newest event seen (minus an overlap for
vendors that publish late), and dedupe drops the re-read events.

Coverage follows the same rule: while a page token is pending, the older part of the
window is still unfetched, so no newer mark is given; a finished window covers up to
its own fixed end (``latest``), not to the time its last page was asked for, since
anything newer than ``latest`` waits for the next window.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import orjson


class WindowStep(NamedTuple):
    """Where a window stands after one page."""

    cursor: str  # the WindowPass to store
    has_more: bool  # a page token is pending
    high_water: datetime | None  # ``latest`` once the window is paged to its end, else None


@dataclass(frozen=True)
class WindowPass:
    oldest: float
    latest: float
    page: str | None = None
    hw: float | None = None

    def dumps(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def loads(cls, raw: str) -> WindowPass:
        d = orjson.loads(raw)
        return cls(float(d["oldest"]), float(d["latest"]), d.get("page"), d.get("hw"))

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
                return st  # mid-window: keep paging the same fixed window
            start = (st.hw - overlap_seconds) if st.hw is not None else st.oldest
            return cls(min(start, latest), latest, None, st.hw)
        if start_time is None:
            raise ValueError("a first request needs a start time")
        return cls(start_time.timestamp(), latest, None, None)

    def advance(self, next_page: str | None, newest: float | None) -> WindowStep:
        """The cursor to store, whether pages remain, and the coverage mark after a
        page (``PollResult.high_water``)."""
        hw = self.hw
        if newest is not None and (hw is None or newest > hw):
            hw = newest
        if next_page:
            return WindowStep(
                WindowPass(self.oldest, self.latest, next_page, hw).dumps(), True, None
            )
        done_hw = hw if hw is not None else self.latest
        return WindowStep(
            WindowPass(self.oldest, self.latest, None, done_hw).dumps(),
            False,
            datetime.fromtimestamp(self.latest, UTC),
        )
