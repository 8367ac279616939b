"""The S3 lake against a local AWS-compatible server: every put is SSE-KMS with the
source's own key, and the writer's exactly-once path works there too."""

from __future__ import annotations

import gzip
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from lip_dagster.errors import LakeReadError
from lip_dagster.lake.backends import LocalLake
from lip_dagster.lake.layout import object_key
from lip_dagster.lake.writer import LakeWriter

from .conftest import OKTA


def test_every_put_carries_the_sources_kms_key(aws_backend, make_events) -> None:
    b, run, keys = aws_backend
    w = b.writer()
    w.write("okta", make_events(300, step=timedelta(seconds=30)), OKTA, "polling")
    slack_event: dict[str, Any] = orjson.loads(
        (Path(__file__).parent.parent / "fixtures" / "slack" / "audit_entry.json").read_bytes()
    )
    from lip_dagster.lake.envelope import EventIdentity

    w.write("slack", [slack_event], EventIdentity(("id",), "date_create"), "polling")
    w.close()
    s3 = b.client("s3")
    for source in ("okta", "slack"):
        listed = s3.list_objects_v2(Bucket=f"lake-{run}-{source}")["Contents"]
        assert listed and all(o["Key"].startswith(f"lake/source={source}/") for o in listed)
        for o in listed:
            head = s3.head_object(Bucket=f"lake-{run}-{source}", Key=o["Key"])
            assert head["ServerSideEncryption"] == "aws:kms"
            # real S3 answers the key ARN, a local server may echo the alias: resolve
            resolved = b.client("kms").describe_key(KeyId=head["SSEKMSKeyId"])
            assert resolved["KeyMetadata"]["KeyId"] == keys[source]
            body = s3.get_object(Bucket=f"lake-{run}-{source}", Key=o["Key"])["Body"].read()
            assert all(
                orjson.loads(x)["_lip"]["source"] == source
                for x in gzip.decompress(body).splitlines()
            )


def test_an_object_fetched_over_http_is_the_gzip_file_its_key_names(
    aws_backend, make_events
) -> None:
    """A reader that fetches an object over plain HTTP (a presigned URL, a browser,
    an SDK that honours Content-Encoding) gets the gzip bytes the ``.gz`` key
    promises, not bytes its HTTP client already decompressed: a SAM that gunzips by
    the suffix must not fail with "not in gzip format"."""
    import httpx

    b, run, _ = aws_backend
    w = b.writer()
    w.write("okta", make_events(5), OKTA, "polling")
    w.close()
    s3 = b.client("s3")
    bucket = f"lake-{run}-okta"
    (obj,) = s3.list_objects_v2(Bucket=bucket)["Contents"]
    head = s3.head_object(Bucket=bucket, Key=obj["Key"])
    assert "ContentEncoding" not in head and head["ContentType"] == "application/gzip"
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": obj["Key"]}, ExpiresIn=60
    )
    got = httpx.get(url, timeout=10.0)
    assert got.status_code == 200 and got.content[:2] == b"\x1f\x8b"
    assert len(gzip.decompress(got.content).splitlines()) == 5


def test_retry_on_s3_and_dynamodb_lands_each_event_once(aws_backend, make_events) -> None:
    b, _, _ = aws_backend
    events = make_events(500, step=timedelta(seconds=10))
    w = LakeWriter(b.lake, b.dedupe, max_object_events=200)
    first = w.write("okta", events, OKTA, "polling")
    again = w.write("okta", events[100:] + make_events(50, seed=9), OKTA, "polling")
    w.close()
    assert first.events == 500 and again.events == 50 and again.duplicates == 400
    ids: list[str] = []
    for key in b.lake.list_keys("okta"):
        ids += [
            orjson.loads(x)["_lip"]["id"] for x in gzip.decompress(b.lake.get(key)).splitlines()
        ]
    assert len(ids) == len(set(ids)) == 550
    assert b.lake.object_kms_key(next(iter(b.lake.list_keys("okta"))))


def test_a_read_that_fails_is_a_lake_read_error_naming_the_object(aws_backend) -> None:
    """What the checks and the writer catch is LIP's own error, with the S3 location
    and the service's reason, never a bare botocore exception."""
    b, run, _ = aws_backend
    missing = object_key_for("okta")
    with pytest.raises(LakeReadError, match=rf"s3://lake-{run}-okta/lake/{missing}.*NoSuchKey"):
        b.lake.get(missing)
    with pytest.raises(LakeReadError, match=rf"encryption of s3://lake-{run}-okta/"):
        b.lake.object_kms_key(missing)
    b.client("s3").delete_bucket(Bucket=f"lake-{run}-slack")
    with pytest.raises(
        LakeReadError, match=rf"could not list s3://lake-{run}-slack/.*NoSuchBucket"
    ):
        list(b.lake.list_keys("slack"))


def test_a_missing_local_object_is_a_lake_read_error(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake", tmp_path / "tmp")
    missing = object_key_for("okta")
    with pytest.raises(LakeReadError, match=f"could not read lake object {missing}"):
        lake.get(missing)


def object_key_for(source: str) -> str:
    return object_key(
        source, "2026-03-01-10:00", datetime(2026, 3, 1, 10, tzinfo=UTC), str(uuid.uuid4())
    )


def test_a_retry_after_a_crash_before_the_mark_leaves_the_put_object_alone(
    aws_backend, make_events
) -> None:
    """Objects are immutable: the retry finds the object the dead run put and marks
    its events landed, with no second PUT of the key (which S3 would announce to the
    SAM as a new ObjectCreated) and the bytes as first put."""
    b, run, _ = aws_backend
    events = make_events(50, step=timedelta(seconds=10))

    class DiesBeforeMark:
        """The dedupe store of a run killed between the put and the mark."""

        def __init__(self, store: Any) -> None:
            self.store = store

        def __getattr__(self, name: str) -> Any:
            return getattr(self.store, name)

        def mark_landed(self, *args: Any) -> None:
            raise KeyboardInterrupt("killed after the put, before the mark")

    dying = LakeWriter(b.lake, DiesBeforeMark(b.dedupe))
    with pytest.raises(KeyboardInterrupt):
        dying.write("okta", events, OKTA, "polling")
    dying.close()
    (key,) = list(b.lake.list_keys("okta"))
    s3 = b.client("s3")
    bucket, s3key = f"lake-{run}-okta", "lake/" + key
    first = s3.head_object(Bucket=bucket, Key=s3key)["ETag"]
    w = LakeWriter(b.lake, b.dedupe)
    retry = w.write("okta", events, OKTA, "polling")
    w.close()
    assert retry.events == 50 and retry.hours[hour_of_first(events)].keys == [key]
    assert s3.head_object(Bucket=bucket, Key=s3key)["ETag"] == first
    assert list(b.lake.list_keys("okta")) == [key]
    again = LakeWriter(b.lake, b.dedupe)
    assert again.write("okta", events, OKTA, "polling").duplicates == 50  # now marked
    again.close()


def hour_of_first(events: list[dict[str, Any]]) -> str:
    from lip_dagster.lake.envelope import parse_timestamp
    from lip_dagster.lake.layout import hour_of

    return hour_of(parse_timestamp(events[0]["published"]))


def test_an_event_with_a_very_long_id_lands_once_on_dynamodb(aws_backend, make_events) -> None:
    """DynamoDB refuses keys over 2,048 bytes: such an id would stall the source on
    AWS while the embedded store took it. It is kept as its hash on every backend."""
    b, _, _ = aws_backend
    (event,) = make_events(1, step=timedelta(seconds=10))
    event["uuid"] = "u" * 3000
    w = LakeWriter(b.lake, b.dedupe)
    assert w.write("okta", [event], OKTA, "polling").events == 1
    assert w.write("okta", [event], OKTA, "polling").duplicates == 1
    w.close()
