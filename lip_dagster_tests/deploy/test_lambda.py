"""The webhook receiver as deployed on AWS Lambda behind API Gateway
(``lip_dagster.webhook.lambda_handler.handler``), with the AWS backend on the moto
server: SQS buffers, the DynamoDB commit log, Secrets Manager, and the S3 lake the
drain lands in. Events are shaped as API Gateway sends them: REST APIs (payload
1.0) and HTTP APIs (2.0), bodies plain and base64-encoded."""

from __future__ import annotations

import base64
import gzip
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

from lip_dagster.resources import Backend, backend_from_env
from lip_dagster.simulator.webhooks import Delivery, WebhookSimulator
from lip_dagster.webhook import lambda_handler
from lip_dagster.webhook.message import decode

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REGION = "us-east-1"
SOURCES = ("okta_hooks", "github", "jamf")


def fixture(name: str) -> dict[str, Any]:
    return orjson.loads((FIXTURES / name).read_bytes())


def rest_api_event(d: Delivery, *, base64_body: bool, stage: str = "prod") -> dict[str, Any]:
    """API Gateway REST API (payload 1.0) proxy event for one vendor request."""
    event = fixture("apigateway/rest_api_proxy_event.json")
    path = f"/webhooks/{d.source}"
    headers = {**event["headers"], **d.headers, "Content-Length": str(len(d.body))}
    event.update(
        path=path,
        httpMethod=d.method,
        pathParameters={"source": d.source},
        headers=headers,
        multiValueHeaders={k: [v] for k, v in headers.items()},
        body=base64.b64encode(d.body).decode() if base64_body else d.body.decode(),
        isBase64Encoded=base64_body,
    )
    event["requestContext"].update(path=f"/{stage}{path}", httpMethod=d.method, stage=stage)
    return event


def http_api_event(d: Delivery, *, stage: str = "$default") -> dict[str, Any]:
    """API Gateway HTTP API (payload 2.0) event; HTTP APIs base64-encode the body."""
    event = fixture("apigateway/http_api_proxy_event_v2.json")
    path = f"/webhooks/{d.source}" if stage == "$default" else f"/{stage}/webhooks/{d.source}"
    route = f"{d.method} /webhooks/{{source}}"
    headers = {**event["headers"], **{k.lower(): v for k, v in d.headers.items()}}
    headers["content-length"] = str(len(d.body))
    event.update(
        rawPath=path,
        routeKey=route,
        headers=headers,
        pathParameters={"source": d.source},
        body=base64.b64encode(d.body).decode(),
        isBase64Encoded=True,
    )
    event["requestContext"].update(routeKey=route, stage=stage)
    event["requestContext"]["http"].update(method=d.method, path=path)
    return event


@dataclass
class AwsWorld:
    sim: WebhookSimulator
    backend: Backend
    run: str
    endpoint: str

    def client(self, service: str) -> Any:
        return boto3.session.Session(region_name=REGION).client(service, endpoint_url=self.endpoint)

    def queue_url(self, source: str, kind: str = "buffer") -> str:
        return self.client("sqs").get_queue_url(QueueName=f"lip-{self.run}-{source}-{kind}")[
            "QueueUrl"
        ]

    def buffered(self, source: str) -> int:
        attrs = self.client("sqs").get_queue_attributes(
            QueueUrl=self.queue_url(source),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in attrs.values())


@pytest.fixture
def aws(aws_env: str, lip_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsWorld]:
    """What a deployment holds before the first request: the receiver's settings in
    the function's environment, its secrets in Secrets Manager, each source's queues
    and tables (``lip provision``), the lake bucket and key."""
    run = uuid.uuid4().hex[:8]
    for key, value in {
        "LIP_BACKEND": "aws",
        "LIP_AWS_REGION": REGION,
        "LIP_AWS_ENDPOINT_URL": aws_env,
        "LIP_S3_BUCKET": f"lip-{run}-{{source}}",
        "LIP_KMS_KEY": f"alias/lip-{run}-{{source}}",
        "LIP_AWS_RESOURCE_PREFIX": f"lip-{run}-",
        "LIP_SECRETS_PREFIX": f"lip-{run}/",
    }.items():
        monkeypatch.setenv(key, value)
    sim = WebhookSimulator(seed=23)
    session = boto3.session.Session(region_name=REGION)
    secrets = session.client("secretsmanager", endpoint_url=aws_env)
    for name, value in sim.credentials().items():
        secrets.create_secret(Name=f"lip-{run}/{name}", SecretString=value)
    backend = backend_from_env()
    s3 = session.client("s3", endpoint_url=aws_env)
    kms = session.client("kms", endpoint_url=aws_env)
    for source in SOURCES:
        s3.create_bucket(Bucket=backend.settings.aws.bucket(source))
        key = kms.create_key(Description=f"LIP {source}")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=f"alias/lip-{run}-{source}", TargetKeyId=key)
    for source in SOURCES:
        backend.ensure_source(source)
        backend.buffer.ensure(source)  # `lip provision` makes a webhook source's queues
    # a cold Lambda container: the handler builds its app on the first request
    monkeypatch.setattr(lambda_handler, "_app", None)
    monkeypatch.setattr(lambda_handler, "_loop", None)
    yield AwsWorld(sim, backend, run, aws_env)
    loop = lambda_handler._loop
    if loop is not None and not loop.is_closed():
        loop.close()


@pytest.mark.parametrize("base64_body", [False, True])
def test_a_rest_api_event_is_buffered_in_sqs_and_marked_in_dynamodb(
    aws: AwsWorld, base64_body: bool
) -> None:
    d = aws.sim.github_deliveries(1)[0]
    resp = lambda_handler.handler(rest_api_event(d, base64_body=base64_body), None)
    assert resp["statusCode"] == 204, resp
    assert resp["multiValueHeaders"]["x-lip-accepted"] == ["1"]
    sqs = aws.client("sqs")
    (msg,) = sqs.receive_message(QueueUrl=aws.queue_url("github"), MaxNumberOfMessages=10)[
        "Messages"
    ]
    buffered = decode(base64.b64decode(msg["Body"]), "github").events
    assert buffered[0]["request"]["payload"] == d.events[0]  # the bytes GitHub signed
    table = f"lip-{aws.run}-github-dedupe"
    items = aws.client("dynamodb").scan(TableName=table)["Items"]
    assert len(items) == 1 and items[0]["status"]["S"] == "accepted"


def test_http_api_events_with_base64_bodies_verify_buffer_and_refuse_forgeries(
    aws: AwsWorld, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # what the function logs in a deployment
    caplog.set_level(logging.DEBUG, logger="lip_dagster")
    verification = aws.sim.okta_verification()
    resp = lambda_handler.handler(http_api_event(verification), None)
    assert resp["statusCode"] == 200
    challenge = verification.headers["X-Okta-Verification-Challenge"]
    assert orjson.loads(resp["body"]) == {"verification": challenge}

    d = aws.sim.okta_deliveries(5, per_delivery=5)[0]
    resp = lambda_handler.handler(http_api_event(d, stage="live"), None)  # a named stage
    assert resp["statusCode"] == 204 and resp["headers"]["x-lip-accepted"] == "5"
    assert aws.buffered("okta_hooks") == 1

    forged = aws.sim.tampered(d)
    resp = lambda_handler.handler(http_api_event(forged), None)
    assert resp["statusCode"] == 401
    assert aws.buffered("okta_hooks") == 1  # nothing stored for a bad signature
    secret = aws.sim.credentials()["okta-hooks/shared-secret"]
    assert secret not in orjson.dumps(resp).decode() and secret not in caplog.text


def test_a_redelivery_is_acknowledged_and_the_drain_lands_each_event_once_in_s3(
    aws: AwsWorld,
) -> None:
    from lip_dagster.components.webhook import drain_source
    from lip_dagster.webhook.spec import load_specs

    deliveries = aws.sim.jamf_deliveries(3)
    for d in deliveries:
        resp = lambda_handler.handler(rest_api_event(d, base64_body=True), None)
        assert resp["statusCode"] == 204
    # Jamf retries a delivery it believes timed out: acknowledged, not buffered again
    again = lambda_handler.handler(http_api_event(deliveries[0]), None)
    assert again["statusCode"] in (200, 204) and again["headers"]["x-lip-duplicates"] == "1"
    assert aws.buffered("jamf") == 3

    report = drain_source(load_specs()["jamf"], aws.backend)
    assert report.result.events == 3
    s3 = aws.client("s3")
    bucket = aws.backend.settings.aws.bucket("jamf")
    objects = s3.list_objects_v2(Bucket=bucket, Prefix="lake/source=jamf/")["Contents"]
    lines = []
    for obj in objects:
        head = s3.head_object(Bucket=bucket, Key=obj["Key"])
        assert head["ServerSideEncryption"] == "aws:kms"
        body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        lines += gzip.decompress(body).splitlines()
    ids = [orjson.loads(line)["_lip"]["id"] for line in lines]
    assert len(ids) == 3 == len(set(ids))
    assert all(orjson.loads(line)["_lip"]["pattern"] == "webhook" for line in lines)
    assert aws.buffered("jamf") == 0


def test_a_slow_dedupe_table_does_not_hold_the_vendors_answer(
    aws: AwsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Marks only recognise redeliveries; the events are in SQS before the answer. A
    throttled dedupe table must not keep Okta (3 s) waiting past its timeout for
    them: the answer goes after at most a second, and the marks finish on the
    container's next request (or, if it is never thawed, a redelivery is buffered
    twice and dropped on landing)."""
    import threading
    import time

    from lip_dagster.state.aws import DynamoDedupeStore

    throttled = threading.Event()
    accept = DynamoDedupeStore.accept

    def slow_accept(self, source, keys):  # a table answering only once it is let go
        throttled.wait(timeout=30)
        return accept(self, source, keys)

    monkeypatch.setattr(DynamoDedupeStore, "accept", slow_accept)
    first, second = aws.sim.okta_deliveries(2, per_delivery=1)
    t0 = time.monotonic()
    resp = lambda_handler.handler(http_api_event(first), None)
    answered_in = time.monotonic() - t0
    throttled.set()
    assert resp["statusCode"] == 204 and resp["headers"]["x-lip-accepted"] == "1"
    assert answered_in < 3.0  # inside Okta's timeout
    assert aws.buffered("okta_hooks") == 1
    # the next request of the warm container finishes the marks left behind
    assert lambda_handler.handler(http_api_event(second), None)["statusCode"] == 204
    items = aws.client("dynamodb").scan(TableName=f"lip-{aws.run}-okta_hooks-dedupe")["Items"]
    assert sorted(i["status"]["S"] for i in items) == ["accepted", "accepted"]
