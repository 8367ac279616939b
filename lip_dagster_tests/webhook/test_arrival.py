"""When a drain is requested: size, age (measured, or from the cursor on SQS),
heartbeat, never twice at once, and failing open when the buffer cannot be read."""

from __future__ import annotations

from lip_dagster.state.base import BufferDepth
from lip_dagster.webhook.arrival import ArrivalState, Thresholds, decide

T = Thresholds(flush_messages=500, flush_age_seconds=60, heartbeat_seconds=1800)
NOW = 1_780_000_000.0
RECENT = ArrivalState(None, NOW - 10)  # a drain was requested 10 s ago


def depth(messages: int, age: float | None, in_flight: int = 0) -> BufferDepth:
    return BufferDepth(
        messages=messages, oldest_age_seconds=age, dead_letters=0, in_flight=in_flight
    )


def test_size_threshold_requests_a_drain_at_once() -> None:
    reason, state = decide(depth(500, 1.0), RECENT, NOW, T, drain_active=False)
    assert reason == "size" and state.last_request == NOW


def test_age_threshold_on_a_buffer_that_reports_age() -> None:
    assert decide(depth(3, 59.0), RECENT, NOW, T, drain_active=False)[0] is None
    assert decide(depth(3, 60.0), RECENT, NOW, T, drain_active=False)[0] == "age"


def test_age_on_sqs_comes_from_when_the_sensor_first_saw_messages() -> None:
    reason, state = decide(depth(3, None), RECENT, NOW, T, drain_active=False)
    assert reason is None and state.nonempty_since == NOW
    reason, state = decide(depth(3, None), state, NOW + 30, T, drain_active=False)
    assert reason is None and state.nonempty_since == NOW  # the clock keeps running
    reason, state = decide(depth(4, None), state, NOW + 61, T, drain_active=False)
    assert reason == "age"
    # after a request the clock restarts: what is left is younger than the request
    assert state.nonempty_since == NOW + 61
    assert decide(depth(1, None), state, NOW + 90, T, drain_active=False)[0] is None
    # an empty buffer resets it
    _, state = decide(depth(0, None), state, NOW + 100, T, drain_active=False)
    assert state.nonempty_since is None


def test_no_request_while_a_drain_is_queued_or_running() -> None:
    reason, state = decide(depth(10_000, 3600.0), RECENT, NOW, T, drain_active=True)
    assert reason is None and state.last_request == RECENT.last_request
    assert decide(depth(10_000, 3600.0), state, NOW + 30, T, drain_active=False)[0] == "size"


def test_heartbeat_drains_a_quiet_source_so_a_broken_drain_goes_stale() -> None:
    quiet = ArrivalState(None, NOW - 1799)
    assert decide(depth(0, None), quiet, NOW, T, drain_active=False)[0] is None
    reason, state = decide(depth(0, None), quiet, NOW + 1, T, drain_active=False)
    assert reason == "heartbeat" and state.last_request == NOW + 1
    assert decide(depth(0, None), ArrivalState(), NOW, T, drain_active=False)[0] == "heartbeat"


def test_an_unmeasurable_buffer_fails_open_at_most_once_per_flush_age() -> None:
    reason, state = decide(None, ArrivalState(None, NOW - 120), NOW, T, drain_active=False)
    assert reason == "unmeasured"
    assert decide(None, state, NOW + 30, T, drain_active=False)[0] is None
    assert decide(None, state, NOW + 60, T, drain_active=False)[0] == "unmeasured"


def test_cursor_round_trips_and_garbage_starts_fresh() -> None:
    s = ArrivalState(NOW - 5, NOW - 1)
    assert ArrivalState.from_cursor(s.to_cursor()) == s
    for junk in (None, "", "{", "[]", '{"nonempty_since": "yesterday"}'):
        assert ArrivalState.from_cursor(junk).last_request is None


def test_a_failed_drains_hidden_batch_requests_nothing_until_it_is_visible_again() -> None:
    """A drain requested while the batch is hidden would receive nothing and succeed,
    and the source's run alert would resolve in the middle of the outage."""
    failed = ArrivalState(NOW - 400, NOW - 45)
    hidden = depth(800, 400.0, in_flight=800)
    assert decide(hidden, failed, NOW, T, drain_active=False)[0] is None
    # not even the heartbeat, long after the last request
    long_ago = ArrivalState(NOW - 4000, NOW - 3600)
    assert decide(hidden, long_ago, NOW, T, drain_active=False)[0] is None
    # part of it visible again: that part is drained, by size only if it is enough
    assert decide(depth(800, 700.0, in_flight=400), failed, NOW, T, drain_active=False)[0] == "age"
    reason = decide(depth(800, 10.0, in_flight=400), RECENT, NOW, T, drain_active=False)[0]
    assert reason is None  # 400 ready, below the 500 size threshold, and young
    assert decide(depth(800, 400.0), failed, NOW, T, drain_active=False)[0] == "size"
