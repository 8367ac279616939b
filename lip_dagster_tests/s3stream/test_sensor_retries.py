"""The arrival sensor through outages and rewrites, on the AWS path (moto over HTTP,
real Dagster runs in an ephemeral instance): a key the vendor writes again while its
run goes on is read again; a lake outage sends nothing to quarantine and everything
lands once the lake is back; the same bad object is one quarantine item however
often it is retried; a queue that refuses deletes fails the sensor, naming the
permission, instead of growing its cursor."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from botocore.exceptions import ReadTimeoutError

from lip_dagster.errors import StateError
from lip_dagster.s3stream import objects as objmod
from lip_dagster.s3stream import transcode as tcmod

from .conftest import cloudtrail_records, trail_file
from .test_acknowledge_after_landing import LakeDown, deny_reads, keys_of, quarantined
from .test_arrivals_aws import NOW, TRAIL, World


def key(name: str) -> str:
    return f"{TRAIL}111122223333_CloudTrail_us-east-2_20260301T1005Z_{name}.json.gz"


def event_ids(w: World) -> list[str]:
    return sorted(r["eventID"] for r in w.lake_lines())


def test_a_key_written_again_while_its_run_goes_on_is_read_again(
    aws_env: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = World(aws_env, tmp_path, monkeypatch, queue=True)
    k = key("REWR")
    v1 = cloudtrail_records(2, seed=50)
    v2 = v1 + cloudtrail_records(3, seed=51)  # the vendor rewrites it with 3 more
    w.put(k, trail_file(v1))
    first = w.tick(None)
    (req,) = first.run_requests
    during: dict[str, Any] = {}
    real = tcmod.Transcoder.transcode

    def transcode(self: tcmod.Transcoder, key: str, result: Any = None) -> Any:
        out = real(self, key, result)
        if key == k and not during:  # the run has read v1 and goes on
            w.put(k, trail_file(v2))
            during["tick"] = w.tick(first.cursor)
        return out

    monkeypatch.setattr(tcmod.Transcoder, "transcode", transcode)
    assert w.execute(req).success
    monkeypatch.setattr(tcmod.Transcoder, "transcode", real)
    assert keys_of(during["tick"]) == [k]  # the new version gets a run of its own
    after = w.tick(during["tick"].cursor)  # the first batch landed: v2's run still waits
    assert w.queued() >= 1  # its notification is kept until a later run landed it
    for r in during["tick"].run_requests:
        assert w.execute(r).success
    last = w.tick(after.cursor)
    assert last.run_requests == [] and w.queued() == 0
    assert event_ids(w) == sorted(r["eventID"] for r in v2)  # every event, once


def test_a_lake_outage_quarantines_nothing_and_everything_lands_after_it(
    aws_env: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = World(aws_env, tmp_path, monkeypatch, queue=True)  # max_batch_runs 3
    keys = [key(f"OUT{i}") for i in range(6)]
    for i, k in enumerate(keys):
        w.put(k, trail_file(cloudtrail_records(2, seed=70 + i)))
    now = NOW
    tick = w.tick(None, now)
    runs = 0
    with LakeDown(w):  # ~20 minutes of ticks, every run fails without naming a key
        for _ in range(20):
            for req in tick.run_requests:
                assert not w.execute(req).success
                runs += 1
            now += timedelta(minutes=1)
            tick = w.tick(tick.cursor, now)
    assert quarantined(w) == []
    assert w.queued() == 6  # nothing acknowledged, nothing lost
    assert 3 * 3 < runs < 3 * 10  # retried more than max_batch_runs, but backing off
    # the lake is back: within the longest backoff, every object lands
    landed_at = None
    for minute in range(1, 32):
        tick = w.tick(tick.cursor, now + timedelta(minutes=minute))
        for req in tick.run_requests:
            assert w.execute(req).success
        if len(w.lake_lines()) == 12:
            landed_at = minute
            break
    assert landed_at is not None and landed_at <= 31
    tick = w.tick(tick.cursor, now + timedelta(minutes=40))
    assert tick.run_requests == [] and w.queued() == 0 and quarantined(w) == []


def quarantined_naming(w: World, name: str) -> int:
    """Quarantine items whose reason names ``name`` (a vendor key)."""
    return len([r for r, _ in quarantined(w) if name in r["reason"]])


def one_object(
    aws_env: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, name: str, n: int, seed: int
) -> tuple[World, str]:
    """A source given up on after one failed run, holding one trail file of ``n``
    records; returns it and the file's key."""
    w = World(aws_env, tmp_path, monkeypatch, queue=True, max_batch_runs=1)
    k = key(name)
    w.put(k, trail_file(cloudtrail_records(n, seed=seed)))
    return w, k


def test_a_damaged_object_is_one_quarantine_item_across_step_retries(
    aws_env: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = World(
        aws_env, tmp_path, monkeypatch, queue=True, step_retries=2, step_retry_delay_seconds=0
    )
    bad, denied = key("BADG"), key("DENY")
    w.put(bad, b"this is not gzip at all")
    w.put(denied, trail_file(cloudtrail_records(3, seed=1)))
    deny_reads(w, denied)  # fails the run, so its step is retried
    (req,) = w.tick(None).run_requests
    assert not w.execute(req).success
    assert quarantined_naming(w, bad) == 1


def test_a_give_up_is_one_quarantine_item_when_the_tick_then_fails(
    aws_env: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    w, k = one_object(aws_env, tmp_path, monkeypatch, "TWICE", 3, seed=9)
    deny_reads(w, k)
    first = w.tick(None)
    assert not w.execute(first.run_requests[0]).success

    def throttled(*_a: Any, **_k: Any) -> None:
        raise StateError("could not receive from queue: ThrottlingException")

    with monkeypatch.context() as m:
        m.setattr(objmod.SqsArrivalQueue, "receive", throttled)
        with pytest.raises(StateError):
            w.tick(first.cursor)  # gives the key up, then fails: the cursor is not saved
    w.tick(first.cursor)  # evaluated again from the same cursor
    assert quarantined_naming(w, k) == 1


def test_a_key_given_up_after_network_errors_says_what_the_error_was(
    aws_env: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    w, k = one_object(aws_env, tmp_path, monkeypatch, "NETW", 2, seed=60)
    first = w.tick(None)
    real = objmod.S3ObjectSource._get

    def get(self: Any, key: str, *a: Any, **kw: Any) -> Any:
        if key == k:
            raise self._error(key, ReadTimeoutError(endpoint_url="https://s3.example/x"))
        return real(self, key, *a, **kw)

    monkeypatch.setattr(objmod.S3ObjectSource, "_get", get)
    assert not w.execute(first.run_requests[0]).success
    w.tick(first.cursor)
    ((reason, _),) = quarantined(w)
    assert "read error error" not in reason["reason"]
    assert "network/timeout" in reason["reason"]
    assert "Read timeout" in reason["reason"]  # what botocore said, kept


def test_a_queue_that_refuses_deletes_fails_the_sensor_naming_the_permission(
    aws_env: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lip_dagster.components import s3 as s3component

    monkeypatch.setattr(s3component, "MAX_UNDELETED_MESSAGES", 15)
    w = World(aws_env, tmp_path, monkeypatch, queue=True, keys_per_run=10)

    def denied(*_a: Any, **_k: Any) -> None:
        raise StateError("SQS queue: delete failed: AccessDenied")

    monkeypatch.setattr(objmod.SqsArrivalQueue, "delete", denied)
    cursor = None
    with pytest.raises(StateError, match="sqs:DeleteMessage") as failed:
        for rnd in range(5):
            for i in range(10):
                w.put(key(f"{rnd}_{i}"), trail_file(cloudtrail_records(1, seed=rnd * 100 + i)))
            res = w.tick(cursor)
            for r in res.run_requests:
                assert w.execute(r).success
            cursor = w.tick(res.cursor).cursor
            assert len(orjson.loads(cursor)["messages"]) <= 15
    assert "AccessDenied" in str(failed.value)
    assert len(event_ids(w)) == 20  # what landed stays; nothing lost, nothing doubled
