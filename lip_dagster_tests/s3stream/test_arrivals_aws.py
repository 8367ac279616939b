"""Arrival on the AWS path, against the local moto server over HTTP: S3 really
delivers ObjectCreated notifications to SQS, keys are decoded, test events ignored,
housekeeping skipped, runs batched, acknowledgement only once a run of the objects
succeeded (runs are real Dagster runs in an ephemeral instance), and the listing
fallback resuming from its cursor after a restart."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import orjson
import pytest

from lip_dagster.components.s3 import S3Source, batch_outcomes
from lip_dagster.config import Settings
from lip_dagster.errors import ConfigError
from lip_dagster.resources import AwsBackend
from lip_dagster.s3stream.objects import SqsArrivalQueue
from lip_dagster_tests.conftest import ShortPollSampling

from .conftest import cloudtrail_records, fixture, github_events, gz, ndjson, trail_file

NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
ASSET = dg.AssetKey("cloudtrail")
TRAIL = "AWSLogs/111122223333/CloudTrail/us-east-2/2026/03/01/"


class World:
    """A vendor bucket (with or without a notification queue) and a LIP deployment
    on AWS, both on the local server, isolated by a random run id."""

    def __init__(
        self,
        endpoint: str,
        home: Path,
        monkeypatch: pytest.MonkeyPatch,
        queue: bool,
        wait_seconds: int = 0,
        **component: Any,
    ):
        # moto answers a short poll from the whole queue, as SQS answers a long poll;
        # a long poll of an empty queue would only add a second to every tick here
        monkeypatch.setattr(SqsArrivalQueue, "wait_seconds", wait_seconds)
        run = uuid.uuid4().hex[:8]
        self.run = run
        self.vendor_bucket = f"vendor-{run}"
        env = {
            "LIP_HOME": str(home),
            "LIP_BACKEND": "aws",
            "LIP_AWS_REGION": "us-east-1",
            "LIP_AWS_ENDPOINT_URL": endpoint,
            "LIP_S3_BUCKET": f"lake-{run}-{{source}}",
            "LIP_KMS_KEY": f"alias/lip-{run}-{{source}}",
            "LIP_AWS_RESOURCE_PREFIX": f"lip-{run}-",
        }
        self.backend = AwsBackend(Settings.from_env(env))
        self.s3 = self.backend.client("s3")
        self.sqs = self.backend.client("sqs")
        kms = self.backend.client("kms")
        self.s3.create_bucket(Bucket=f"lake-{run}-cloudtrail")
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=f"alias/lip-{run}-cloudtrail", TargetKeyId=key_id)
        self.s3.create_bucket(Bucket=self.vendor_bucket)
        monkeypatch.setenv("T_BUCKET", self.vendor_bucket)
        self.queue_url = None
        if queue:
            self.queue_url = self.sqs.create_queue(QueueName=f"notify-{run}")["QueueUrl"]
            arn = self.sqs.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
            )["Attributes"]["QueueArn"]
            self.s3.put_bucket_notification_configuration(
                Bucket=self.vendor_bucket,
                NotificationConfiguration={
                    "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
                },
            )
            monkeypatch.setenv("T_QUEUE", self.queue_url)
        else:
            monkeypatch.delenv("T_QUEUE", raising=False)
        self.component = S3Source(
            name="cloudtrail",
            format="cloudtrail",
            bucket_env="T_BUCKET",
            queue_env="T_QUEUE",
            **{"keys_per_run": 2, "step_retries": 0, **component},
        )
        self.instance = dg.DagsterInstance.ephemeral()

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.vendor_bucket, Key=key, Body=body)

    def tick(self, cursor: str | None, now: datetime = NOW) -> dg.SensorResult:
        return self.component.evaluate_tick(
            self.backend, cursor, ASSET, now, lambda ids: batch_outcomes(self.instance, ids)
        )

    def execute(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        """What the daemon does with a run request: the source's asset, with the
        request's config, partition and tags, recorded in the instance. The SAM
        resource checks are left out: this bucket has no SAM grants to pass them
        (they have their own tests)."""
        built = self.component.build_defs(dg.ComponentTree.for_test().load_context)
        job = dg.define_asset_job(
            "cloudtrail_transcode_only",
            selection=dg.AssetSelection.assets(ASSET).without_checks(),
        )
        defs = dg.Definitions.merge(
            built, dg.Definitions(jobs=[job], resources={"lip": self.backend})
        )
        return defs.resolve_job_def("cloudtrail_transcode_only").execute_in_process(
            run_config=request.run_config,
            partition_key=request.partition_key,
            tags=request.tags,
            instance=self.instance,
            raise_on_error=False,
        )

    def queued(self) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )

    def lake_lines(self) -> list[dict[str, Any]]:
        bucket = f"lake-{self.run}-cloudtrail"
        out = []
        for obj in self.s3.list_objects_v2(Bucket=bucket, Prefix="lake/").get("Contents", []):
            body = self.s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            out.extend(orjson.loads(x) for x in gzip.decompress(body).splitlines())
        return out


@pytest.fixture
def notified(aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    yield World(aws_env, tmp_path, monkeypatch, queue=True)


@pytest.fixture
def listed(aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    yield World(aws_env, tmp_path, monkeypatch, queue=False)


def run_keys(result: dg.SensorResult) -> list[list[str]]:
    return [r.run_config["ops"]["cloudtrail"]["config"]["keys"] for r in result.run_requests]


def test_notifications_are_delivered_decoded_and_acknowledged(notified: World) -> None:
    w = notified
    keys = [
        f"{TRAIL}111122223333_CloudTrail_us-east-2_20260301T1005Z_space in name.json.gz",
        f"{TRAIL}111122223333_CloudTrail_us-east-2_20260301T1010Z_a=b+c.json.gz",
        f"{TRAIL}111122223333_CloudTrail_us-east-2_20260301T1015Z_100%+sure.json.gz",
    ]
    for i, k in enumerate(keys):
        w.put(k, trail_file(cloudtrail_records(5, seed=i)))
    digest = fixture("cloudtrail/digest.json")
    w.put(digest["digestS3Object"], gz(orjson.dumps(digest)))
    assert w.queued() == 5  # the test event S3 sent on configuration, and four objects

    first = w.tick(None)
    requested = sorted(k for batch in run_keys(first) for k in batch)
    assert requested == sorted(keys)  # decoded: spaces, '=' and '+' as written
    assert [len(b) for b in run_keys(first)] == [2, 1]
    assert all(r.tags["lip/source"] == "cloudtrail" for r in first.run_requests)
    assert all(r.partition_key == "2026-03-01-12:00" for r in first.run_requests)
    assert len(orjson.loads(first.cursor)["messages"]) == 5  # test event and digest too
    assert w.queued() == 5  # nothing is deleted before Dagster stored the tick

    for req in first.run_requests:
        assert w.execute(req).success
    assert len(w.lake_lines()) == 15
    assert sorted({r["_lip"]["origin"] for r in w.lake_lines()}) == sorted(keys)

    second = w.tick(first.cursor)
    assert not second.run_requests and w.queued() == 0
    assert orjson.loads(second.cursor)["messages"] == {}


def test_a_re_tick_requests_the_same_runs(notified: World) -> None:
    w = notified
    w.put(f"{TRAIL}x_20260301T1005Z_A.json.gz", trail_file(cloudtrail_records(3)))
    first = w.tick(None)
    # the daemon died before storing the tick: the messages come back, the run key
    # is the same, so Dagster does not start a second run
    w.sqs.change_message_visibility_batch(
        QueueUrl=w.queue_url,
        Entries=[
            {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": 0}
            for i, r in enumerate(m["r"] for m in orjson.loads(first.cursor)["messages"].values())
        ],
    )
    again = w.tick(None)
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in first.run_requests]


def test_reprocessing_a_notified_key_lands_nothing_twice(notified: World) -> None:
    w = notified
    key = f"{TRAIL}x_20260301T1005Z_B.json.gz"
    w.put(key, trail_file(cloudtrail_records(8)))
    w.component.land(w.backend, [key])
    report, _ = w.component.land(w.backend, [key])
    assert report.result.events == 0 and report.result.duplicates == 8
    assert len(w.lake_lines()) == 8


def test_notifications_for_another_bucket_are_not_read(notified: World) -> None:
    w = notified
    note = fixture("cloudtrail/s3_notification.json")  # bucket acme-cloudtrail
    w.sqs.send_message(QueueUrl=w.queue_url, MessageBody=orjson.dumps(note).decode())
    test_event = fixture("cloudtrail/s3_test_event.json")
    w.sqs.send_message(QueueUrl=w.queue_url, MessageBody=orjson.dumps(test_event).decode())
    result = w.tick(None)
    assert not result.run_requests
    assert w.backend.quarantine.count("cloudtrail") == 1  # the stray notification, noted


def test_listing_resumes_from_its_cursor_after_a_restart(listed: World) -> None:
    w = listed
    keys = [f"{TRAIL}k{i}_20260301T10{i:02d}Z_C.json.gz" for i in range(4)]
    for k in keys:
        w.put(k, trail_file(cloudtrail_records(2, seed=len(k))))
    first = w.tick(None)
    assert sorted(k for b in run_keys(first) for k in b) == keys
    for req in first.run_requests:
        assert w.execute(req).success
    # the next tick sees the runs succeeded, commits what they landed, and finds
    # nothing new
    second = w.tick(first.cursor)
    assert not second.run_requests
    stored = w.backend.cursors.get("cloudtrail", "s3-listing")
    assert stored is not None and len(orjson.loads(stored.value)["handled"]) == 4

    # restart: a new process (new backend object), and the sensor's own cursor lost
    w.backend = AwsBackend(w.backend.settings)
    later = f"{TRAIL}k9_20260301T1100Z_C.json.gz"
    w.put(later, trail_file(cloudtrail_records(2, seed=9)))
    # a key that sorts among the handled ones, written late (GitHub/Logpush do this)
    late = f"{TRAIL}k3_20260301T1003Z_A.json.gz"
    w.put(late, trail_file(cloudtrail_records(2, seed=10)))
    # an organization trail writes one folder per region: a new object of a region
    # that sorts first comes after everything handled in the others
    other_region = TRAIL.replace("us-east-2", "ap-south-1") + "k0_20260301T1101Z_E.json.gz"
    w.put(other_region, trail_file(cloudtrail_records(2, seed=11)))
    third = w.tick(None)
    assert sorted(k for b in run_keys(third) for k in b) == sorted([late, later, other_region])


def test_a_sweep_lands_then_commits_the_listing_cursor(listed: World) -> None:
    w = listed
    keys = [f"{TRAIL}s{i}_20260301T10{i:02d}Z_D.json.gz" for i in range(3)]
    for i, k in enumerate(keys):
        w.put(k, trail_file(cloudtrail_records(4, seed=20 + i)))
    report, meta = w.component.land(w.backend, [])
    assert report.result.events == 12 and meta["listed_through"] != "none"
    report, _ = w.component.land(w.backend, [])
    assert report.objects == []  # nothing new
    before = {o["Key"]: o["ETag"] for o in w.s3.list_objects_v2(Bucket=w.vendor_bucket)["Contents"]}
    assert set(before) == set(keys)  # the vendor's objects are all still there


def test_a_run_without_keys_lands_what_the_queue_holds_though_short_polls_find_none(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQS may answer a short poll empty while a few notifications wait: `lip run`
    then landed nothing and succeeded, as if nothing new had arrived."""
    w = World(aws_env, tmp_path, monkeypatch, queue=True, wait_seconds=1)
    keys = [f"{TRAIL}p{i}_20260301T10{i:02d}Z_G.json.gz" for i in range(2)]
    for i, k in enumerate(keys):
        w.put(k, trail_file(cloudtrail_records(3, seed=40 + i)))
    client = w.backend.client
    monkeypatch.setattr(
        w.backend,
        "client",
        lambda service: ShortPollSampling(client(service)) if service == "sqs" else client(service),
    )
    report, _ = w.component.land(w.backend, [])
    assert report.result.events == 6
    assert sorted({r["_lip"]["origin"] for r in w.lake_lines()}) == keys
    assert w.queued() == 0  # the notifications (and S3's test event) acknowledged


def test_two_sources_on_one_queue_refuse_instead_of_deleting_each_others_notifications(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One bucket, two vendors under their own prefixes, one notification queue set
    for both: each sensor took the other's notifications, ignored their keys as
    outside its prefix and deleted them, so the other source never saw those
    objects. The shared queue is refused before anything is received."""
    w = World(aws_env, tmp_path, monkeypatch, queue=True, prefix_default="AWSLogs/")
    assert w.queue_url is not None
    monkeypatch.setenv("T_QUEUE_GITHUB", w.queue_url)
    github = S3Source(
        name="github_audit_stream",
        format="github_audit_stream",
        bucket_env="T_BUCKET",
        prefix_default="github/",
        queue_env="T_QUEUE_GITHUB",
    )
    for source in (w.component, github):
        source.build_defs(dg.ComponentTree.for_test().load_context)
    w.put("github/2026/03/10/05/a.json.gz", gz(ndjson(github_events(3))))
    w.put(f"{TRAIL}x_20260301T1005Z_F.json.gz", trail_file(cloudtrail_records(3)))
    waiting = w.queued()

    with pytest.raises(ConfigError, match="T_QUEUE_GITHUB"):
        w.tick(None)
    with pytest.raises(ConfigError, match="T_QUEUE"):
        github.land(w.backend, [])
    assert w.queued() == waiting  # nothing received, nothing deleted

    # each source with its own queue: the tick goes on
    monkeypatch.setenv("T_QUEUE_GITHUB", w.queue_url + "-github")
    assert w.tick(None).run_requests
