"""The arrival sensor's cursor: read back with the source's own settle window, and
the decisions it takes from how runs ended (wait, acknowledge, retry, give up)."""

from __future__ import annotations

from lip_dagster.s3stream.arrivals import ListingState, key_digest
from lip_dagster.s3stream.objects import ObjectInfo
from lip_dagster.s3stream.pending import Batch, RunOutcome, SensorState, batch_id

T = 1_772_359_200.0  # 2026-03-01T10:00:00Z


def decide(state: SensorState, outcomes: dict[str, RunOutcome], now: float = T + 60):
    return state.settle(
        outcomes,
        now,
        max_attempts=3,
        absent_after=600,
        describe=lambda k: f"s3://vendor/{k}",
        how_to_rerun="launch the job x_transcode with keys",
    )


def test_a_long_settle_window_survives_the_cursor_round_trip() -> None:
    # handled 40 minutes before the newest: inside a 3600 s window, outside 900 s
    listing = ListingState(settle_seconds=3600).advance(
        [ObjectInfo("old", last_modified=None), ObjectInfo("new", last_modified=None)],
        listed_at=T,
    )
    listing = listing.advance_keys([("old", T), ("new", T + 2400)])
    state = SensorState(listing=listing)
    back = SensorState.loads(state.dumps(), settle_seconds=3600)
    assert back.listing == listing
    assert key_digest("old") in dict(back.listing.handled)  # not listed again


def test_a_failed_batch_is_retried_under_a_new_id_then_given_up() -> None:
    first = Batch(batch_id("ct", {"a": "m1", "b": "m2"}), ["a", "b"], requested_at=T)
    state = SensorState(batches=[first])
    # the run read "a" but not "b" (access denied)
    out = decide(state, {first.id: RunOutcome("failed", ("r1",), {key_digest("b"): "403"})})
    (retry,) = out.retry
    assert retry.keys == ["b"] and retry.attempt == 2 and retry.id != first.id
    assert retry.id.startswith(first.id) and state.batches == [retry]
    out = decide(state, {retry.id: RunOutcome("failed", ("r2",), {key_digest("b"): "403"})})
    (third,) = out.retry
    out = decide(state, {third.id: RunOutcome("failed", ("r3",), {key_digest("b"): "403"})})
    assert out.retry == [] and state.batches == []
    (gave_up,) = out.given_up
    assert gave_up.key == "b" and gave_up.runs == ["r1", "r2", "r3"]
    assert "s3://vendor/b" in gave_up.reason and "x_transcode" in gave_up.reason


def test_running_and_recent_batches_are_waited_for_landed_ones_dropped() -> None:
    running = Batch("ct:1", ["a"], requested_at=T)
    landed = Batch("ct:2", ["b"], requested_at=T)
    unseen = Batch("ct:3", ["c"], requested_at=T)
    state = SensorState(batches=[running, landed, unseen])
    out = decide(state, {"ct:1": RunOutcome("running"), "ct:2": RunOutcome("landed")})
    assert [b.id for b in out.landed] == ["ct:2"] and out.waiting == 2
    assert state.pending_keys() == {"a", "c"}
    # a run that never shows up is not waited for forever
    out = decide(state, {"ct:1": RunOutcome("running")}, now=T + 3600)
    assert [b.keys for b in out.retry] == [["c"]]


def test_a_run_that_read_everything_then_failed_landed_its_objects() -> None:
    """e.g. a blocking SAM check failed after the objects landed: not read again."""
    batch = Batch("ct:1", ["a"], requested_at=T)
    state = SensorState(batches=[batch])
    out = decide(state, {"ct:1": RunOutcome("failed", ("r1",), {})})
    assert out.landed == [batch] and out.retry == [] and state.batches == []


def test_an_older_cursor_is_read_without_deleting_its_notifications() -> None:
    old = '{"listing": null, "receipts": ["r1", "r2"]}'
    state = SensorState.loads(old, 900)
    assert state.messages == {} and state.batches == []
    assert SensorState.loads("not json", 900) == SensorState()


def test_runs_that_die_without_naming_a_key_back_off_and_never_give_up() -> None:
    """An outage of the lake: every run fails before it can say which key it could
    not read. No key is charged an attempt, nothing goes to quarantine, and the runs
    come further apart, never more than 30 minutes."""
    batch = Batch(batch_id("ct", {"a": "m1"}), ["a"], requested_at=T)
    state = SensorState(batches=[batch])
    now, gaps, ids = T, [], {batch.id}
    for _ in range(40):  # far more than max_attempts
        (current,) = state.batches
        failed_at = now
        out = decide(state, {current.id: RunOutcome("failed", ("r",), None)}, now=now)
        assert out.given_up == [] and [b.keys for b in state.batches] == [["a"]]
        while not out.retry:  # wait out the backoff, a tick a minute
            now += 60
            out = decide(state, {}, now=now)
            assert out.given_up == []
        (retry,) = out.retry
        assert retry.id not in ids  # a run key Dagster has not seen
        ids.add(retry.id)
        gaps.append(now - failed_at)  # from the failed run to the next one
        now += 60
    assert gaps[0] == 0 and gaps[-1] == 1800 and max(gaps) == 1800
    assert gaps == sorted(gaps)
    (current,) = state.batches
    assert current.attempt == 1 and len(current.runs) <= 10  # bounded cursor
    # then an object of it is named: that is what uses attempts
    for _ in range(3):
        (current,) = state.batches
        out = decide(state, {current.id: RunOutcome("failed", ("r",), {key_digest("a"): "403"})})
    (gave_up,) = out.given_up
    assert gave_up.key == "a" and "access denied" in gave_up.reason


def test_a_batch_backing_off_survives_the_cursor_round_trip() -> None:
    batch = Batch(batch_id("ct", {"a": "m1"}), ["a"], requested_at=T)
    state = SensorState(batches=[batch])
    for n in range(2):
        (current,) = state.batches
        decide(state, {current.id: RunOutcome("failed", (f"r{n}",), None)}, now=T + n)
    back = SensorState.loads(state.dumps(), 900)
    assert back.batches == state.batches and back.batches[0].due is not None
    old = Batch.from_dict({"id": "ct:abc:2", "keys": ["a"], "attempt": 2, "at": T})
    assert old.base == "ct:abc" and old.run_no == 2  # a cursor from before
