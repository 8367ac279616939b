"""AWS stores on the local moto server: per-source resources, idempotent ``ensure``
that creates what is missing and never replaces, clear errors when something is
missing or unreachable."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import pytest

from lip_dagster.errors import ConfigError, InvalidSourceName, StateError
from lip_dagster.resources import AwsBackend
from lip_dagster.state.aws import (
    DynamoCursorStore,
    DynamoDedupeStore,
    SqsBuffer,
)
from lip_dagster.state.base import DedupeKey
from lip_dagster_tests.conftest import aws_settings


def new_source() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def test_dedupe_ensure_creates_an_on_demand_table_with_ttl_once(
    boto_session: boto3.session.Session, moto_endpoint: str
) -> None:
    source = new_source()
    store = DynamoDedupeStore(session=boto_session, endpoint_url=moto_endpoint)
    assert store.ensure(source) == []
    store.mark_landed(source, [DedupeKey("2024-05-01-10:00", "e1")], "k1")
    assert store.ensure(source) == []  # again: nothing replaced, data still there
    assert store.get(source, [DedupeKey("2024-05-01-10:00", "e1")]) != {}

    ddb = boto_session.client("dynamodb", endpoint_url=moto_endpoint)
    table = ddb.describe_table(TableName=f"lip-{source}-dedupe")["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    ttl = ddb.describe_time_to_live(TableName=f"lip-{source}-dedupe")["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] in ("ENABLED", "ENABLING")
    assert ttl["AttributeName"] == "expires_at"
    item = ddb.get_item(TableName=f"lip-{source}-dedupe", Key={"id": {"S": "2024-05-01-10:00#e1"}})
    assert int(item["Item"]["expires_at"]["N"]) > 0


def test_ensure_refuses_to_replace_a_table_with_another_key(
    boto_session: boto3.session.Session, moto_endpoint: str
) -> None:
    source = new_source()
    ddb = boto_session.client("dynamodb", endpoint_url=moto_endpoint)
    ddb.create_table(
        TableName=f"lip-{source}-cursor",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    store = DynamoCursorStore(session=boto_session, endpoint_url=moto_endpoint)
    with pytest.raises(StateError, match="will not replace"):
        store.ensure(source)
    assert ddb.describe_table(TableName=f"lip-{source}-cursor")["Table"]["TableStatus"]


def test_a_missing_table_is_a_clear_state_error(
    boto_session: boto3.session.Session, moto_endpoint: str
) -> None:
    store = DynamoCursorStore(session=boto_session, endpoint_url=moto_endpoint)
    source = new_source()
    with pytest.raises(StateError) as caught:
        store.get(source, "logs")
    assert source in str(caught.value) and "ensure(source)" in str(caught.value)


def test_the_prefix_names_every_resource(
    boto_session: boto3.session.Session, moto_endpoint: str
) -> None:
    source = new_source()
    buffer = SqsBuffer(
        session=boto_session, endpoint_url=moto_endpoint, prefix="acme-", dlq_wait_seconds=0
    )
    cursors = DynamoCursorStore(session=boto_session, endpoint_url=moto_endpoint, prefix="acme-")
    buffer.ensure(source)
    cursors.ensure(source)
    sqs = boto_session.client("sqs", endpoint_url=moto_endpoint)
    names = {
        u.rsplit("/", 1)[1] for u in sqs.list_queues(QueueNamePrefix=f"acme-{source}")["QueueUrls"]
    }
    assert names == {f"acme-{source}-buffer", f"acme-{source}-dlq"}
    ddb = boto_session.client("dynamodb", endpoint_url=moto_endpoint)
    assert ddb.describe_table(TableName=f"acme-{source}-cursor")["Table"]["TableStatus"]
    with pytest.raises(ConfigError):
        SqsBuffer(session=boto_session, endpoint_url=moto_endpoint, prefix="bad prefix!")


def test_buffer_ensure_sets_the_redrive_policy_and_reports_drift(
    boto_session: boto3.session.Session, moto_endpoint: str
) -> None:
    source = new_source()
    buffer = SqsBuffer(
        session=boto_session, endpoint_url=moto_endpoint, max_receives=3, dlq_wait_seconds=0
    )
    assert buffer.ensure(source) == []
    assert buffer.ensure(source) == []
    sqs = boto_session.client("sqs", endpoint_url=moto_endpoint)
    main = sqs.get_queue_url(QueueName=f"lip-{source}-buffer")["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName=f"lip-{source}-dlq")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=main, AttributeNames=["All"])["Attributes"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.loads(attrs["RedrivePolicy"])
    assert policy["deadLetterTargetArn"] == dlq_arn
    assert int(policy["maxReceiveCount"]) == 3
    assert attrs["MessageRetentionPeriod"] == "1209600"

    stricter = SqsBuffer(
        session=boto_session, endpoint_url=moto_endpoint, max_receives=9, dlq_wait_seconds=0
    )
    drift = stricter.ensure(source)
    assert len(drift) == 1 and "left unchanged" in drift[0]
    attrs = sqs.get_queue_attributes(QueueUrl=main, AttributeNames=["RedrivePolicy"])
    assert int(json.loads(attrs["Attributes"]["RedrivePolicy"])["maxReceiveCount"]) == 3


def test_a_buffer_that_dead_letters_elsewhere_keeps_deliveries_but_is_not_drained(
    boto_session: boto3.session.Session, moto_endpoint: str
) -> None:
    """A buffer queue that existed before LIP, dead-lettering to a team's own queue:
    ensure leaves it alone (and says so), but draining it would send failing messages
    where no check and no replay looks, so the drain side refuses, naming the fix.
    Deliveries are still buffered, and drained once the policy points at LIP's DLQ."""
    source = new_source()
    sqs = boto_session.client("sqs", endpoint_url=moto_endpoint)
    shared = sqs.create_queue(QueueName=f"team-shared-dlq-{source}")["QueueUrl"]
    shared_arn = sqs.get_queue_attributes(QueueUrl=shared, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    main = sqs.create_queue(
        QueueName=f"lip-{source}-buffer",
        Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": shared_arn, "maxReceiveCount": 1})
        },
    )["QueueUrl"]
    buffer = SqsBuffer(session=boto_session, endpoint_url=moto_endpoint, dlq_wait_seconds=0)
    drift = buffer.ensure(source)
    assert len(drift) == 1 and "team-shared-dlq" in drift[0]

    buffer.send(source, [b"delivery-1"])
    for call in (
        lambda: buffer.receive(source, 10, 30),
        lambda: buffer.depth(source),
        lambda: buffer.dead_letters(source),
        lambda: buffer.redrive(source),
    ):
        with pytest.raises(StateError, match=f"not to 'lip-{source}-dlq'.*redrive policy"):
            call()

    dlq_arn = sqs.get_queue_attributes(
        QueueUrl=sqs.get_queue_url(QueueName=f"lip-{source}-dlq")["QueueUrl"],
        AttributeNames=["QueueArn"],
    )["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(
        QueueUrl=main,
        Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5})
        },
    )
    fixed = SqsBuffer(session=boto_session, endpoint_url=moto_endpoint, dlq_wait_seconds=0)
    assert [m.body for m in fixed.receive(source, 10, 30)] == [b"delivery-1"]


def test_buffer_adds_a_missing_redrive_policy(
    boto_session: boto3.session.Session, moto_endpoint: str
) -> None:
    source = new_source()
    sqs = boto_session.client("sqs", endpoint_url=moto_endpoint)
    main = sqs.create_queue(QueueName=f"lip-{source}-buffer")["QueueUrl"]
    sqs.send_message(QueueUrl=main, MessageBody="kept")
    buffer = SqsBuffer(session=boto_session, endpoint_url=moto_endpoint, dlq_wait_seconds=0)
    assert buffer.ensure(source) == []
    attrs = sqs.get_queue_attributes(QueueUrl=main, AttributeNames=["RedrivePolicy"])
    assert "RedrivePolicy" in attrs["Attributes"]
    # The existing message survived, and a body not written by LIP arrives as its text.
    assert [m.body for m in buffer.receive(source, 10, 30)] == [b"kept"]


def test_a_missing_queue_is_a_clear_state_error(
    boto_session: boto3.session.Session, moto_endpoint: str
) -> None:
    buffer = SqsBuffer(session=boto_session, endpoint_url=moto_endpoint)
    source = new_source()
    with pytest.raises(StateError, match=f"lip-{source}-buffer"):
        buffer.send(source, [b"x"])


def test_an_oversized_message_is_refused_before_anything_is_sent(
    boto_session: boto3.session.Session, moto_endpoint: str
) -> None:
    source = new_source()
    buffer = SqsBuffer(session=boto_session, endpoint_url=moto_endpoint, dlq_wait_seconds=0)
    buffer.ensure(source)
    with pytest.raises(StateError, match="exceeds the SQS limit"):
        buffer.send(source, [b"ok", b"x" * 200_000])
    assert buffer.depth(source).messages == 0
    # Large bodies that fit are split across batches by size.
    bodies = [bytes([i]) * 60_000 for i in range(6)]
    assert len(buffer.send(source, bodies)) == 6
    got = buffer.receive(source, 10, 30)
    assert sorted(m.body for m in got) == sorted(bodies)


def test_invalid_source_names_never_reach_aws(
    boto_session: boto3.session.Session, moto_endpoint: str
) -> None:
    buffer = SqsBuffer(session=boto_session, endpoint_url=moto_endpoint)
    with pytest.raises(InvalidSourceName):
        buffer.ensure("Okta/../../x")
    with pytest.raises(InvalidSourceName):
        DynamoDedupeStore(session=boto_session, endpoint_url=moto_endpoint).get(
            "UPPER", [DedupeKey("2024-05-01-10:00", "e")]
        )


def test_an_unreachable_endpoint_fails_fast_with_a_state_error(aws_env: str) -> None:
    store = DynamoCursorStore(
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        connect_timeout=0.5,
        read_timeout=0.5,
        max_attempts=2,
    )
    with pytest.raises(StateError, match="cursor of source 'okta'"):
        store.get("okta", "logs")


def test_no_region_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(ConfigError, match="region"):
        SqsBuffer(session=boto3.session.Session())


def test_a_run_ensures_its_tables_and_creates_no_queue_it_does_not_use(
    aws_env: str, tmp_path: Path
) -> None:
    """Every run and sensor ensures its source. Polling and S3 sources have no
    buffer: ensuring one must not create SQS queues, which the deployed run and code
    server roles may not do (every polling run and S3 sensor tick failed on
    AccessDenied), and which nothing would ever read."""
    run = uuid.uuid4().hex[:8]
    backend = AwsBackend(aws_settings(aws_env, tmp_path, run))
    assert backend.ensure_source("okta") == []
    sqs = backend.client("sqs")
    assert sqs.list_queues(QueueNamePrefix=f"lip-{run}-").get("QueueUrls", []) == []
    ddb = backend.client("dynamodb")
    for table in (f"lip-{run}-okta-cursor", f"lip-{run}-okta-dedupe"):
        assert ddb.describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE"


def test_a_webhook_source_used_before_provisioning_names_its_queue(
    aws_env: str, tmp_path: Path
) -> None:
    """Ensuring a source leaves the buffer to `lip provision`: a delivery buffered
    before it fails naming the queue and the command that makes it."""
    run = uuid.uuid4().hex[:8]
    backend = AwsBackend(aws_settings(aws_env, tmp_path, run))
    backend.ensure_source("github")
    with pytest.raises(StateError, match=f"lip-{run}-github-buffer.*lip provision"):
        backend.buffer.send("github", [b'{"a": 1}'])
    backend.buffer.ensure("github")  # what `lip provision` does for a webhook source
    backend.buffer.send("github", [b'{"a": 1}'])
    assert [m.body for m in backend.buffer.receive("github", 10, 30)] == [b'{"a": 1}']
