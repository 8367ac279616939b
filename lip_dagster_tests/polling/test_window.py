"""``WindowPass``: the cursor of newest-first APIs (Slack, Google Reports)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from lip_dagster.errors import ConfigError
from lip_dagster.polling.window import WindowPass, cursor_overlap, overlap_option

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()
HOUR = 3600.0
OVERLAP = 1800.0


def finished(oldest: float, latest: float, newest: float | None, overlap: float = OVERLAP) -> str:
    """The cursor a window leaves once paged to its end, its newest event at ``newest``."""
    st = WindowPass(oldest, latest, None, None, overlap)
    return st.advance(None, newest).cursor


def test_a_quiet_endpoint_starts_at_the_previous_end_minus_the_overlap() -> None:
    """The last event was days before the window: the next window re-reads only the
    overlap before the time we last asked, not everything since that old event, so
    the event is not re-read (nor landed again once its dedupe record expires)."""
    last_event = T0 - 40 * 24 * HOUR
    cursor = finished(T0 - HOUR, T0, None)
    st = WindowPass.loads(cursor)
    st = WindowPass(st.oldest, st.latest, None, last_event, OVERLAP)  # an old newest event
    nxt = WindowPass.begin(st.dumps(), None, None, now=T0 + 600, overlap_seconds=OVERLAP)
    assert nxt.oldest == T0 - OVERLAP and nxt.latest == T0 + 600
    assert nxt.hw == last_event  # the newest event seen is kept


def test_a_busy_endpoint_starts_at_the_previous_end_minus_the_overlap_too() -> None:
    cursor = finished(T0 - HOUR, T0, T0 - 5)
    nxt = WindowPass.begin(cursor, None, None, now=T0 + 600, overlap_seconds=OVERLAP)
    assert nxt.oldest == T0 - OVERLAP


def test_an_event_stamped_in_the_future_does_not_move_later_windows() -> None:
    """A vendor clock a year ahead (or a unit slip) in one event: the window still
    ends where it was asked, and the next one starts from there, so what is published
    meanwhile is read. A cursor that already holds such a time recovers as well."""
    year = 365 * 24 * HOUR
    cursor = finished(T0 - HOUR, T0, T0 + year)
    assert WindowPass.loads(cursor).hw == T0  # capped at the window's end
    nxt = WindowPass.begin(cursor, None, None, now=T0 + 600, overlap_seconds=OVERLAP)
    assert (nxt.oldest, nxt.latest) == (T0 - OVERLAP, T0 + 600)
    stored = WindowPass(T0 - HOUR, T0, None, T0 + year, OVERLAP).dumps()  # already stuck
    nxt = WindowPass.begin(stored, None, None, now=T0 + 600, overlap_seconds=OVERLAP)
    assert (nxt.oldest, nxt.latest) == (T0 - OVERLAP, T0 + 600)


def test_a_cursor_stored_before_the_overlap_was_kept_still_reads() -> None:
    old = orjson.dumps({"oldest": T0 - HOUR, "latest": T0, "page": None, "hw": T0 - 90 * 60})
    st = WindowPass.loads(old.decode())
    assert (st.oldest, st.latest, st.page, st.hw, st.overlap) == (T0 - HOUR, T0, None, T0 - 5400, 0)
    nxt = WindowPass.begin(old.decode(), None, None, now=T0 + 600, overlap_seconds=OVERLAP)
    assert nxt.oldest == T0 - OVERLAP and nxt.overlap == OVERLAP
    mid = orjson.dumps({"oldest": T0 - HOUR, "latest": T0, "page": "p2", "hw": None}).decode()
    resumed = WindowPass.begin(mid, None, None, now=T0 + 600, overlap_seconds=OVERLAP)
    assert (resumed.oldest, resumed.latest, resumed.page) == (T0 - HOUR, T0, "p2")
    assert resumed.overlap == OVERLAP  # its coverage mark waits for the overlap too


def test_a_finished_window_is_complete_only_up_to_its_end_minus_the_overlap() -> None:
    """Events up to the overlap old may still be published: the hours they belong to
    are not complete until a later window has re-read them."""
    st = WindowPass(T0 - 4 * HOUR, T0, None, None, OVERLAP)
    mid = st.advance("p2", T0 - 1)
    assert mid.has_more and mid.high_water is None
    done = WindowPass.loads(mid.cursor).advance(None, T0 - 3 * HOUR)
    assert not done.has_more
    assert done.high_water == datetime.fromtimestamp(T0 - OVERLAP, UTC)


def test_the_mark_is_never_below_the_windows_start() -> None:
    st = WindowPass(T0 - 600, T0, None, None, 2 * HOUR)  # shorter than its overlap
    assert st.advance(None, None).high_water == datetime.fromtimestamp(T0 - 600, UTC)


def test_without_an_overlap_a_window_is_complete_to_its_end() -> None:
    st = WindowPass(T0 - HOUR, T0)
    assert st.advance(None, None).high_water == datetime.fromtimestamp(T0, UTC)


def test_cursor_overlap_reads_only_window_cursors() -> None:
    assert cursor_overlap(finished(T0 - HOUR, T0, None, overlap=300)) == 300
    assert cursor_overlap(orjson.dumps({"oldest": 1, "latest": 2}).decode()) == 0
    for other in (None, "", "https://x.okta.com/api/v1/logs?after=1", "{not json", "[1, 2]"):
        assert cursor_overlap(other) == 0


def test_overlap_option_takes_the_first_set_name_else_the_default() -> None:
    opts = {"overlap_minutes": "10", "overlap_minutes_token": ""}
    names = ("overlap_minutes_token", "overlap_minutes")
    assert overlap_option("s", opts, names, 120) == 600
    assert overlap_option("s", {}, names, 120) == 7200
    assert overlap_option("s", {"overlap_minutes": "0"}, names, 120) == 0


@pytest.mark.parametrize("value", ["thirty", "-5", "nan", "inf", "20000"])
def test_overlap_option_names_the_bad_option(value: str) -> None:
    with pytest.raises(ConfigError, match=r"source 's'.*'overlap_minutes'.*between 0 and 10080"):
        overlap_option("s", {"overlap_minutes": value}, ("overlap_minutes",), 5)


def test_a_window_ends_at_the_vendors_clock_when_it_is_behind_ours() -> None:
    """The vendor's Date at the first page bounds what the window can hold; a later
    page's later Date does not move it, a Date ahead of ours changes nothing, and
    one more than a day behind is a broken header, not a clock."""
    st = WindowPass(oldest=1000.0, latest=5000.0, overlap=300.0)
    mid = WindowPass.loads(st.advance("p2", 4100.0, vendor_now=4200.0).cursor)
    step = mid.advance(None, None, vendor_now=4300.0)
    done = WindowPass.loads(step.cursor)
    assert done.latest == 4200.0 and done.hw == 4100.0
    assert step.high_water is not None and step.high_water.timestamp() == 3900.0
    assert (
        WindowPass.begin(step.cursor, None, None, now=5600.0, overlap_seconds=300.0).oldest
        == 3900.0
    )

    ahead = WindowPass.loads(st.advance(None, None, vendor_now=5001.0).cursor)
    assert ahead.latest == 5000.0
    broken = WindowPass.loads(st.advance(None, None, vendor_now=5000.0 - 2 * 86_400).cursor)
    assert broken.latest == 5000.0
