"""A deployment on the local moto server: the SAM's side (its IAM role, its
notification queue, its index bucket) as a SAM vendor's setup guide has you create
it, LIP's settings in the environment, and a provisioned stack with landed events.
Every test gets its own names, so tests share the server but no resource."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

from lip_dagster.lake.envelope import EventIdentity
from lip_dagster.resources import Backend, backend_from_env
from lip_dagster.sam.checks import CheckOutcome, run_checks
from lip_dagster.sam.provision import provision
from lip_dagster.sam.sources import DeclaredSource
from lip_dagster_tests.sam.github_fake import FakeGitHub

FIXTURES = Path(__file__).parent.parent / "fixtures"
POLICIES = Path(__file__).parent / "policies"
PARTITION = "2026-03-01-10:00"
OKTA = DeclaredSource("okta", "polling", ("okta/api-token",))
OKTA_IDENTITY = EventIdentity(id_fields=("uuid",), time_field="published")
GITHUB_TOKEN = "ghp_samCheckTokenValue0123456789abcdefAB"


def policy_file(name: str, **values: str) -> dict[str, Any]:
    """A policy document from ``policies/``, with ``${NAME}`` placeholders filled."""
    text = (POLICIES / name).read_text()
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    doc: dict[str, Any] = json.loads(text)
    return doc


def okta_events(n: int, start: datetime, seed: int = 0) -> list[dict[str, Any]]:
    """The recorded Okta System Log event, re-stamped with unique ids and times."""
    base = orjson.loads((FIXTURES / "okta" / "system_log_event.json").read_bytes())
    out = []
    for i in range(n):
        ev = copy.deepcopy(base)
        ev["uuid"] = str(uuid.UUID(int=(seed << 64) + i))
        t = start + timedelta(seconds=7 * i)
        ev["published"] = t.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        out.append(ev)
    return out


@dataclass
class Deployment:
    run: str
    session: boto3.session.Session
    endpoint: str
    role_arn: str
    queue_arn: str
    queue_url: str
    index_bucket: str
    monkeypatch: pytest.MonkeyPatch

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint)

    def backend(self) -> Backend:
        return backend_from_env()

    def bucket(self, source: str = "okta") -> str:
        return f"lip-{self.run}-{source.replace('_', '-')}"

    def alias(self, source: str = "okta") -> str:
        return f"alias/lip-{self.run}-{source}"

    def key_arn(self, source: str = "okta") -> str:
        return str(self.client("kms").describe_key(KeyId=self.alias(source))["KeyMetadata"]["Arn"])

    def key_id(self, source: str = "okta") -> str:
        """The bare key id (moto's ScheduleKeyDeletion and DisableKey take only that)."""
        return str(
            self.client("kms").describe_key(KeyId=self.alias(source))["KeyMetadata"]["KeyId"]
        )

    def role(self, name: str) -> str:
        """A new role of the account (an administrator's, say), unique to this run;
        its ARN."""
        return str(
            self.client("iam").create_role(
                RoleName=f"{name}-{self.run}",
                AssumeRolePolicyDocument=json.dumps(policy_file("sam_role_trust.json")),
            )["Role"]["Arn"]
        )

    def table(self, source: str, kind: str) -> str:
        return f"lip{self.run}-{source}-{kind}"

    def secret(self, name: str) -> str:
        return f"lip{self.run}/{name}"


def make_deployment(
    session: boto3.session.Session,
    endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    vpce_id: str | None = None,
) -> Deployment:
    run = uuid.uuid4().hex[:10]
    iam = session.client("iam", endpoint_url=endpoint)
    sqs = session.client("sqs", endpoint_url=endpoint)
    s3 = session.client("s3", endpoint_url=endpoint)
    account = session.client("sts", endpoint_url=endpoint).get_caller_identity()["Account"]
    role = iam.create_role(
        RoleName=f"sam-reader-{run}",
        AssumeRolePolicyDocument=json.dumps(policy_file("sam_role_trust.json")),
    )["Role"]["Arn"]
    index = f"sam-index-{run}"
    s3.create_bucket(Bucket=index)
    iam.put_role_policy(
        RoleName=f"sam-reader-{run}",
        PolicyName="index-write",
        PolicyDocument=json.dumps(policy_file("sam_role_index_write.json", INDEX=index)),
    )
    queue_url = sqs.create_queue(QueueName=f"sam-notifications-{run}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            "Policy": json.dumps(
                policy_file("sam_queue_policy.json", QUEUE=queue_arn, ACCOUNT=account)
            )
        },
    )
    env = {
        "LIP_BACKEND": "aws",
        "LIP_AWS_REGION": "us-east-1",
        "LIP_AWS_ENDPOINT_URL": endpoint,
        "LIP_S3_BUCKET": f"lip-{run}-{{source}}",
        "LIP_KMS_KEY": f"alias/lip-{run}-{{source}}",
        "LIP_AWS_RESOURCE_PREFIX": f"lip{run}-",
        "LIP_SECRETS_PREFIX": f"lip{run}/",
        "LIP_SAM_ROLE_ARN": role,
        "LIP_SAM_QUEUE_ARN": queue_arn,
        "LIP_SAM_INDEX_BUCKET": index,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if vpce_id:
        monkeypatch.setenv("LIP_SAM_VPCE_ID", vpce_id)
    else:
        monkeypatch.delenv("LIP_SAM_VPCE_ID", raising=False)
    return Deployment(run, session, endpoint, role, queue_arn, queue_url, index, monkeypatch)


@pytest.fixture(autouse=True)
def _requests_over_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto enforces bucket policies on object requests but knows only the
    StringEquals operator: it reads the statement denying non-TLS requests as an
    unconditional Deny of everything, and a VPC-endpoint-scoped Allow as a Deny.
    Real clients (LIP, the SAM) use TLS, where neither applies, and the checks read
    the policy documents themselves; so moto's own enforcement is off here."""
    from moto.iam.access_control import PermissionResult
    from moto.s3.models import FakeBucket

    monkeypatch.setattr(
        FakeBucket, "get_permission", lambda self, action, resource: PermissionResult.NEUTRAL
    )


@pytest.fixture
def deployment(
    boto_session: boto3.session.Session,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    lip_home: Path,
) -> Deployment:
    return make_deployment(boto_session, moto_endpoint, monkeypatch)


def customer_key(d: Deployment, statements: list[dict[str, Any]] | None = None) -> str:
    """A key the security team created for okta, under its own alias, with a least-
    privilege key policy (its administrators, the SAM's decrypt, ``statements``), and
    LIP_KMS_KEY pointed at it; its ARN."""
    kms = d.client("kms")
    account = d.client("sts").get_caller_identity()["Account"]
    policy = policy_file(
        "kms_customer_key_policy.json", ACCOUNT=account, SAM_ROLE=d.role_arn, REGION="us-east-1"
    )
    policy["Statement"] += statements or []
    arn = str(
        kms.create_key(Description="acme okta logs", Policy=json.dumps(policy))["KeyMetadata"][
            "Arn"
        ]
    )
    kms.create_alias(AliasName=f"alias/acme-{d.run}-okta", TargetKeyId=arn)
    d.monkeypatch.setenv("LIP_KMS_KEY", f"alias/acme-{d.run}-{{source}}")
    return arn


def land(backend: Backend, n: int = 5, seed: int = 0, source: str = "okta") -> None:
    writer = backend.writer()
    try:
        writer.write(
            source,
            okta_events(n, datetime(2026, 3, 1, 10, 0, tzinfo=UTC), seed),
            OKTA_IDENTITY,
            "polling",
        )
    finally:
        writer.close()


@dataclass
class Stack:
    deployment: Deployment
    backend: Backend
    source: DeclaredSource = OKTA

    def checks(self) -> list[CheckOutcome]:
        return run_checks(self.backend, self.source.name, self.source.pattern, PARTITION)

    def failing(self) -> dict[str, CheckOutcome]:
        return {o.name: o for o in self.checks() if o.applies and not o.passed}

    def lake_key(self) -> str:
        """The S3 key of a landed object, for tests that put their own beside it."""
        s3 = self.deployment.client("s3")
        listed = s3.list_objects_v2(Bucket=self.deployment.bucket(), Prefix="lake/source=okta/")
        return str(listed["Contents"][0]["Key"])


@pytest.fixture
def stack(deployment: Deployment) -> Stack:
    """Okta provisioned, with five events landed in ``PARTITION``."""
    backend = deployment.backend()
    report = provision(backend, [OKTA])
    assert not report.drift, report.drift
    land(backend)
    return Stack(deployment, backend)


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    server = FakeGitHub(GITHUB_TOKEN).start()
    yield server
    server.stop()


CheckRunner = Callable[[], list[CheckOutcome]]
