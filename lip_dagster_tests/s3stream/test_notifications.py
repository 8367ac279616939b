"""S3 event notification bodies: decoded keys, test events, SNS envelopes, and
malformed messages reported rather than dropped."""

from __future__ import annotations

import orjson

from lip_dagster.s3stream.notifications import parse_notification

from .conftest import fixture


def test_an_object_created_notification_yields_its_decoded_key() -> None:
    note = fixture("cloudtrail/s3_notification.json")
    note["Records"][0]["s3"]["object"]["key"] = "AWSLogs/a+b%2Bc%3Dd/x.json.gz"
    got = parse_notification(orjson.dumps(note))
    (a,) = got.arrivals
    assert a.bucket == "acme-cloudtrail" and a.key == "AWSLogs/a b+c=d/x.json.gz"
    assert a.size == 1024 and a.event_time is not None and got.problem is None


def test_the_test_event_carries_no_object() -> None:
    got = parse_notification(orjson.dumps(fixture("cloudtrail/s3_test_event.json")))
    assert got.test_event and not got.arrivals


def test_notifications_through_sns_are_unwrapped() -> None:
    inner = orjson.dumps(fixture("cloudtrail/s3_notification.json")).decode()
    envelope = {"Type": "Notification", "MessageId": "m-1", "Message": inner}
    (a,) = parse_notification(orjson.dumps(envelope)).arrivals
    assert a.key.endswith("Mu0KsOhtH1ar15ZZ.json.gz")


def test_deletions_need_no_action_and_garbage_is_reported() -> None:
    note = fixture("cloudtrail/s3_notification.json")
    note["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    got = parse_notification(orjson.dumps(note))
    assert not got.arrivals and got.other_events == 1 and got.problem is None
    assert parse_notification(b"not json").problem == "message body is not JSON"
    assert parse_notification(b'{"hello": 1}').problem
