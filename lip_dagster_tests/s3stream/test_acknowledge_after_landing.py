"""The arrival sensor acknowledges objects only once a run of theirs landed them, on
the AWS path (moto over HTTP, real Dagster runs in an ephemeral instance): a run that
fails has its objects requested again, one unreadable object does not hold back its
batch, what no run can land goes to quarantine with its reason, and an unusable
notification keeps its body."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

import dagster as dg
import orjson
import pytest
from botocore.awsrequest import AWSResponse

from lip_dagster.errors import LakeWriteError

from .conftest import cloudtrail_records, trail_file
from .test_arrivals_aws import NOW, TRAIL, World, run_keys


def keys_of(result: dg.SensorResult) -> list[str]:
    return sorted(k for batch in run_keys(result) for k in batch)


def checks_of(result: dg.SensorResult) -> list[dg.AssetCheckEvaluation]:
    return [e for e in result.asset_events if isinstance(e, dg.AssetCheckEvaluation)]


class LakeDown:
    """The lake bucket refusing every put (S3 5xx or KMS throttling that outlasts
    botocore's retries), for as long as the context lasts."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.mp = pytest.MonkeyPatch()

    def __enter__(self) -> None:
        def refuse(*_a: Any, **_k: Any) -> None:
            raise LakeWriteError("lake bucket unavailable (simulated 503 SlowDown)")

        self.mp.setattr(self.w.backend.lake, "put", refuse)

    def __exit__(self, *exc: object) -> None:
        self.mp.undo()


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def deny_reads(w: World, key: str) -> None:
    """S3 answers GetObject/HeadObject of ``key`` with 403 AccessDenied (an object
    encrypted with a KMS key LIP's role may not use), as real XML over botocore."""
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
        b"<Message>Access Denied</Message></Error>"
    )

    def handler(request: Any, **_: Any) -> AWSResponse | None:
        if request.method in ("GET", "HEAD") and unquote(urlsplit(request.url).path).endswith(
            "/" + key
        ):
            return AWSResponse(request.url, 403, {"Content-Type": "application/xml"}, _Raw(body))
        return None

    w.backend.session.events.register("before-send.s3", handler)


def quarantined(w: World) -> list[tuple[dict[str, Any], bytes]]:
    """(reason, data) of every item in the source's quarantine."""
    bucket = f"lake-{w.run}-cloudtrail"
    listed = w.s3.list_objects_v2(Bucket=bucket, Prefix="quarantine/").get("Contents", [])
    out = []
    for obj in sorted(o["Key"] for o in listed):
        if obj.endswith(".data"):
            base = obj[: -len(".data")]
            reason = orjson.loads(
                w.s3.get_object(Bucket=bucket, Key=base + ".reason.json")["Body"].read()
            )
            out.append((reason, w.s3.get_object(Bucket=bucket, Key=obj)["Body"].read()))
    return out


@pytest.mark.parametrize("queue", [True, False], ids=["notifications", "listing"])
def test_a_failed_run_has_its_objects_requested_again_until_they_land(
    aws_env: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, queue: bool
) -> None:
    w = World(aws_env, tmp_path, monkeypatch, queue=queue)
    key = f"{TRAIL}111122223333_CloudTrail_us-east-2_20260301T1005Z_FAIL.json.gz"
    w.put(key, trail_file(cloudtrail_records(5, seed=77)))
    first = w.tick(None)
    assert keys_of(first) == [key]
    with LakeDown(w):
        assert not w.execute(first.run_requests[0]).success
    assert w.lake_lines() == []

    second = w.tick(first.cursor)
    assert keys_of(second) == [key]  # requested again ...
    (retry,) = second.run_requests
    assert retry.run_key != first.run_requests[0].run_key  # ... under a run key Dagster runs
    assert retry.tags["lip/attempt"] == "2"
    if queue:
        assert w.queued() == 1  # the notification is kept until the object landed
    else:
        assert w.backend.cursors.get("cloudtrail", "s3-listing") is None  # nothing committed
        report, _ = w.component.land(w.backend, [])  # so `lip run` still finds it
        assert [o.key for o in report.objects] == [key]

    assert w.execute(retry).success
    assert len(w.lake_lines()) == 5
    third = w.tick(second.cursor)
    assert third.run_requests == [] and orjson.loads(third.cursor)["batches"] == []
    if queue:
        assert w.queued() == 0
    else:
        assert w.backend.cursors.get("cloudtrail", "s3-listing") is not None
    assert w.tick(third.cursor).run_requests == []
    assert len(w.lake_lines()) == 5  # each event once


def test_a_running_batch_is_waited_for_and_its_notification_kept_hidden(
    notified_world: World,
) -> None:
    w = notified_world
    key = f"{TRAIL}111122223333_CloudTrail_us-east-2_20260301T1005Z_WAIT.json.gz"
    w.put(key, trail_file(cloudtrail_records(2, seed=5)))
    first = w.tick(None)
    # no run yet (queued behind the source's other run): nothing is requested twice,
    # nothing acknowledged
    second = w.tick(first.cursor, now=NOW + timedelta(minutes=2))
    assert second.run_requests == [] and w.queued() == 1
    assert orjson.loads(second.cursor)["batches"] == orjson.loads(first.cursor)["batches"]
    # a run that never shows up (deleted) is requested again, not waited for forever
    later = w.tick(second.cursor, now=NOW + timedelta(hours=1))
    assert keys_of(later) == [key] and later.run_requests[0].tags["lip/attempt"] == "2"


def test_what_no_run_can_land_goes_to_quarantine_after_max_batch_runs(
    aws_env: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = World(aws_env, tmp_path, monkeypatch, queue=True, max_batch_runs=2)
    key = f"{TRAIL}111122223333_CloudTrail_us-east-2_20260301T1005Z_DOWN.json.gz"
    w.put(key, trail_file(cloudtrail_records(3, seed=8)))
    deny_reads(w, key)
    tick = w.tick(None)
    run_ids = []
    for _ in range(2):
        (req,) = tick.run_requests
        result = w.execute(req)
        assert not result.success
        run_ids.append(result.run_id)
        tick = w.tick(tick.cursor)

    assert tick.run_requests == []  # bounded: no third run
    ((reason, data),) = quarantined(w)
    assert key in reason["reason"] and all(r in reason["reason"] for r in run_ids)
    assert "access denied" in reason["reason"]
    assert "cloudtrail_transcode" in reason["reason"]  # how to land it once fixed
    assert orjson.loads(data)["origin"].endswith(key)
    (check,) = checks_of(tick)
    assert check.check_name == "quarantine_empty" and check.passed is False
    assert w.queued() == 0  # acknowledged only now that the key is kept in quarantine
    # the failed runs stay the source's latest: its `run` incident stays open
    last = w.instance.get_runs(dg.RunsFilter(tags={"lip/source": "cloudtrail"}), limit=1)
    assert last[0].status == dg.DagsterRunStatus.FAILURE


def test_one_unreadable_object_does_not_hold_back_its_batch(
    aws_env: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = World(aws_env, tmp_path, monkeypatch, queue=True, max_batch_runs=2)
    bad = f"{TRAIL}111122223333_CloudTrail_us-east-2_20260301T1005Z_AAAA.json.gz"
    good = f"{TRAIL}111122223333_CloudTrail_us-east-2_20260301T1010Z_BBBB.json.gz"
    w.put(bad, trail_file(cloudtrail_records(3, seed=1)))
    w.put(good, trail_file(cloudtrail_records(4, seed=2)))
    deny_reads(w, bad)
    first = w.tick(None)
    assert run_keys(first) == [[bad, good]]

    run = w.execute(first.run_requests[0])
    assert not run.success
    (failure,) = [e for e in run.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.error.cause.message  # what the on-call reads
    assert bad in message and good not in message and "access denied" in message
    assert {r["_lip"]["origin"] for r in w.lake_lines()} == {good}  # the rest of the batch
    assert len(w.lake_lines()) == 4
    landed = w.instance.fetch_materializations(dg.AssetKey("cloudtrail"), limit=10).records
    # and Dagster knows they landed (freshness is measured on these)
    assert sum(r.asset_materialization.metadata["events"].value for r in landed) == 4

    second = w.tick(first.cursor)
    assert run_keys(second) == [[bad]]  # only the key that failed
    assert w.queued() == 1  # the good object's notification is deleted, the bad one kept
    assert not w.execute(second.run_requests[0]).success

    third = w.tick(second.cursor)  # still 403 after max_batch_runs: a permanent refusal
    assert third.run_requests == []
    ((reason, _),) = quarantined(w)
    assert bad in reason["reason"] and "access denied" in reason["reason"]
    assert "kms:Decrypt" in reason["reason"]
    assert w.queued() == 0
    assert len(w.lake_lines()) == 4


def test_a_key_written_again_is_read_again(notified_world: World) -> None:
    w = notified_world
    key = f"{TRAIL}111122223333_CloudTrail_us-east-2_20260301T1005Z_AGIN.json.gz"
    w.put(key, trail_file(cloudtrail_records(2, seed=30)))
    first = w.tick(None)
    assert w.execute(first.run_requests[0]).success
    second = w.tick(first.cursor)
    assert second.run_requests == [] and w.queued() == 0
    # the vendor writes the key again with more records: a new notification
    w.put(key, trail_file(cloudtrail_records(3, seed=30) + cloudtrail_records(2, seed=31)))
    third = w.tick(second.cursor)
    assert keys_of(third) == [key]
    assert third.run_requests[0].run_key != first.run_requests[0].run_key
    assert w.execute(third.run_requests[0]).success
    assert len(w.lake_lines()) == 5  # the new records, none twice


def test_an_unusable_notification_keeps_its_body_in_quarantine(notified_world: World) -> None:
    w = notified_world
    w.sqs.purge_queue(QueueUrl=w.queue_url)
    key = TRAIL + "111122223333_CloudTrail_us-east-2_20260301T1005Z_EVBR.json.gz"
    # S3 -> EventBridge -> SQS delivers this shape, which is not an S3 notification
    body = {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "detail": {"bucket": {"name": w.vendor_bucket}, "object": {"key": key}},
    }
    raw = orjson.dumps(body)
    w.sqs.send_message(QueueUrl=w.queue_url, MessageBody=raw.decode())
    first = w.tick(None)
    ((reason, data),) = quarantined(w)
    assert data == raw  # the message itself, naming the object
    assert "no Records" in reason["reason"] and w.queue_url in reason["reason"]
    assert reason["name"].startswith("notification-")
    assert checks_of(first)[0].passed is False
    w.tick(first.cursor)
    assert w.queued() == 0


@pytest.fixture
def notified_world(aws_env: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> World:
    return World(aws_env, tmp_path, monkeypatch, queue=True)


def test_a_batch_whose_retried_run_succeeded_is_not_requested_again(
    notified_world: World,
) -> None:
    """Dagster's own run retries copy the run's tags, ``lip/batch`` included: a
    failed run followed by a successful retry lands the batch."""
    w = notified_world
    key = f"{TRAIL}111122223333_CloudTrail_us-east-2_20260301T1005Z_RTRY.json.gz"
    w.put(key, trail_file(cloudtrail_records(2, seed=40)))
    first = w.tick(None)
    with LakeDown(w):
        assert not w.execute(first.run_requests[0]).success
    assert w.execute(first.run_requests[0]).success  # the retry, same tags
    second = w.tick(first.cursor)
    assert second.run_requests == [] and w.queued() == 0
    assert len(w.lake_lines()) == 2
