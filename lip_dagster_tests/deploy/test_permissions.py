"""The production roles have exactly the permissions the code uses.

``lip_dagster/permissions.py`` states, for every boto3 call, the IAM action, the
resource and the processes that make it. Here the package is scanned for boto3 calls
(a new one fails until it has a row there), and each role of
``deploy/ecs/lip-dagster.cfn.yaml`` is evaluated, with the template's parameters
filled in the way docs/deployment.md fills them, against every row: a row its
process makes and the role does not allow is a feature that fails with AccessDenied
in production; an action a role allows that no row of its process asks for, or on a
resource none asks for, is a grant beyond what the code needs.
"""

from __future__ import annotations

import ast
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore import xform_name
from cfnlint.decode import decode_str

from lip_dagster.components.s3 import batch_outcomes
from lip_dagster.config import Settings
from lip_dagster.errors import ConfigError
from lip_dagster.lake.writer import LakeWriter
from lip_dagster.permissions import PERMISSIONS, RESOURCES, Permission, Process
from lip_dagster.resources import AwsBackend
from lip_dagster.sam.checks import content_outcomes, resource_outcomes
from lip_dagster.sam.policy import Request, evaluate
from lip_dagster.sam.provision import provision
from lip_dagster.sam.target import SamTarget
from lip_dagster.state.aws import DynamoCursorStore, DynamoDedupeStore, SqsBuffer
from lip_dagster.webhook.drain import DrainConfig, Drainer, replay
from lip_dagster.webhook.message import pack
from lip_dagster.webhook.vendors import OKTA_EVENT_IDENTITY
from lip_dagster_tests.conftest import aws_settings
from lip_dagster_tests.lake.conftest import okta_events
from lip_dagster_tests.s3stream.conftest import cloudtrail_records, trail_file
from lip_dagster_tests.s3stream.test_arrivals_aws import ASSET, NOW, TRAIL, World
from lip_dagster_tests.sam.conftest import OKTA, PARTITION, Deployment, land, make_deployment

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "lip_dagster"
TEMPLATE = REPO / "deploy" / "ecs" / "lip-dagster.cfn.yaml"

SERVICES = ("s3", "sqs", "dynamodb", "kms", "iam", "secretsmanager", "sts")
# the names LIP holds its boto3 clients under (self._client, t.s3, ...)
CLIENT_NAMES = frozenset({"client", "_client", *SERVICES})

REGION, ACCOUNT, STACK = "eu-west-1", "123456789012", "lip"
SOURCE = "google_workspace"  # a '_' in the name: its bucket spells it '-'
ROLES: dict[Process, str] = {
    "run": "RunTaskRole",
    "sensors": "CodeServerTaskRole",
    "receiver": "ReceiverRole",
}
# what Dagster's ECS launcher and Lambda itself need, not LIP's code
INFRA_ACTIONS = re.compile(r"^(ecs:|ec2:|logs:|iam:PassRole$)")

# an organization trail's bucket, its queue and key, in another region than LIP
VENDOR_REGION = "us-east-1"
VENDOR_BUCKET = "arn:aws:s3:::acme-cloudtrail"
VENDOR_QUEUE = f"arn:aws:sqs:{VENDOR_REGION}:{ACCOUNT}:acme-cloudtrail-objects"
VENDOR_KEY = f"arn:aws:kms:{VENDOR_REGION}:999988887777:key/0b8c5d1e-vendor"
SAM_ROLE = f"arn:aws:iam::{ACCOUNT}:role/sam-reader"
SAM_QUEUE = f"arn:aws:sqs:{REGION}:210987654321:sam-intake"
SAM_INDEX = "acme-sam-index"
SUFFIX = "-AbCdEf"  # Secrets Manager appends six characters to every secret's ARN


def secret_arn(name: str) -> str:
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}{SUFFIX}"


# ----------------------------------------------------------------- the code side


def client_operations() -> dict[str, set[str]]:
    """Every boto3 operation the package calls (or hands on as a callable), with
    the files it is in: attributes named like an operation of a service LIP uses,
    read off a client held under one of ``CLIENT_NAMES``; paginators and waiters by
    the operation they call."""
    session = botocore.session.get_session()
    operations: set[str] = set()
    waiters: dict[str, str] = {}
    for service in SERVICES:
        model = session.get_service_model(service)
        operations.update(xform_name(op) for op in model.operation_names)
        try:
            waiter_model = session.get_waiter_model(service)
        except botocore.exceptions.UnknownServiceError:
            continue
        for name in waiter_model.waiter_names:
            waiters[xform_name(name)] = xform_name(waiter_model.get_waiter(name).operation)
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(REPO))
        for node in ast.walk(ast.parse(path.read_text(), filename=where)):
            if isinstance(node, ast.Attribute) and node.attr in operations:
                held = node.value
                name = held.attr if isinstance(held, ast.Attribute) else getattr(held, "id", "")
                if name in CLIENT_NAMES:
                    found.setdefault(node.attr, set()).add(where)
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("get_paginator", "get_waiter")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                name = str(node.args[0].value)
                op = name if node.func.attr == "get_paginator" else waiters[name]
                found.setdefault(op, set()).add(where)
    return found


def test_every_boto3_call_of_the_package_is_in_the_permissions_table() -> None:
    called = client_operations()
    # the scan is live: it sees the lake's conditional put and the paginated listing
    assert "lip_dagster/lake/backends.py" in called["put_object"]
    assert "lip_dagster/lake/backends.py" in called["list_objects_v2"]
    assert "lip_dagster/state/aws.py" in called["describe_table"]  # a waiter's call
    listed = {p.operation for p in PERMISSIONS}
    missing = {op: sorted(files) for op, files in called.items() if op not in listed}
    assert not missing, (
        "boto3 calls without a row in lip_dagster/permissions.py (which process makes "
        f"them, and which IAM action on which resource they need): {missing}"
    )
    stale = sorted(listed - set(called))
    assert not stale, f"rows for calls the package no longer makes: {stale}"
    assert {p.resource for p in PERMISSIONS} <= set(RESOURCES)


# ------------------------------------------------------------- the template side

PARAMETERS: dict[str, Any] = {
    "LakeBucket": "acme-lip-{source}",
    "LakeBucketArnPattern": "arn:aws:s3:::acme-lip-*",
    "VendorBucketArns": [VENDOR_BUCKET],
    "VendorObjectArns": [f"{VENDOR_BUCKET}/AWSLogs/*"],
    "VendorQueueArns": [VENDOR_QUEUE],
    "VendorKmsKeyArns": [VENDOR_KEY],
    "WebhookSecretArns": [secret_arn("lip/github/webhook-secret")],
    "SamQueueArn": SAM_QUEUE,
    "SamRoleArn": SAM_ROLE,
    "SamIndexBucketArn": f"arn:aws:s3:::{SAM_INDEX}",
}
PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::StackName": STACK,
}
NO_VALUE = object()


class Resolver:
    """Just enough of CloudFormation's intrinsic functions to read the roles'
    policies with a set of parameter values."""

    def __init__(self, tpl: Mapping[str, Any], params: Mapping[str, Any]) -> None:
        self.tpl = tpl
        self.params = {name: p.get("Default", "") for name, p in tpl["Parameters"].items()} | dict(
            params
        )
        for name, p in tpl["Parameters"].items():
            value = self.params[name]
            if p["Type"] == "CommaDelimitedList" and isinstance(value, str):
                self.params[name] = value.split(",") if value else [""]
        self.conditions = {name: bool(self(c)) for name, c in tpl["Conditions"].items()}

    def ref(self, name: str) -> Any:
        if name in self.params:
            return self.params[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        return STACK if name == "Cluster" else f"{STACK}-{name}"

    def sub(self, text: str, local: Mapping[str, Any]) -> str:
        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in local:
                return str(local[name])
            if "." in name:
                return self.get_att(*name.split(".", 1))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def get_att(self, resource: str, attribute: str) -> str:
        if attribute == "Arn" and self.tpl["Resources"].get(resource, {}).get("Type") == (
            "AWS::IAM::Role"
        ):
            return role_arn(resource)
        return f"arn:aws:{resource.lower()}:{REGION}:{ACCOUNT}:{STACK}-{resource}"

    def __call__(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self(n) for n in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((fn, arg),) = node.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Condition":
                return self.conditions[arg]
            if fn == "Fn::Sub":
                text, local = (arg, {}) if isinstance(arg, str) else arg
                return self.sub(text, {k: self(v) for k, v in local.items()})
            if fn == "Fn::If":
                return self(arg[1] if self.conditions[arg[0]] else arg[2])
            if fn == "Fn::Equals":
                return self(arg[0]) == self(arg[1])
            if fn == "Fn::Not":
                return not self(arg[0])
            if fn == "Fn::And":
                return all(self(a) for a in arg)
            if fn == "Fn::Or":
                return any(self(a) for a in arg)
            if fn == "Fn::Join":
                return arg[0].join(str(v) for v in self(arg[1]))
            if fn == "Fn::Split":
                return str(self(arg[1])).split(arg[0])
            if fn == "Fn::Select":
                return self(arg[1])[int(arg[0])]
            if fn == "Fn::GetAtt":
                return self.get_att(*arg)
        out = {}
        for key, value in node.items():
            resolved = self(value)
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out


@cache
def template() -> Any:
    tpl, errors = decode_str(TEMPLATE.read_text())
    assert not errors, errors
    return tpl


def role_policy(role: str, **params: Any) -> dict[str, Any]:
    """The role's inline policies as one identity policy, for these parameters."""
    resolve = Resolver(template(), {**PARAMETERS, **params})
    statements = []
    for policy in template()["Resources"][role]["Properties"].get("Policies", []):
        statements += resolve(policy["PolicyDocument"])["Statement"]
    return {"Version": "2012-10-17", "Statement": statements}


def role_arn(role: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{STACK}-{role}"


def granted_actions(policy: Mapping[str, Any]) -> set[str]:
    out: set[str] = set()
    for stmt in policy["Statement"]:
        if stmt.get("Effect") == "Allow":
            actions = stmt["Action"]
            out.update([actions] if isinstance(actions, str) else actions)
    return out


@cache
def samples() -> dict[str, tuple[str, dict[str, str]]]:
    """Each named resource of the permissions table as the code names it for one
    source, with the request context AWS evaluates it in."""
    settings = Settings.from_env(
        {
            "LIP_BACKEND": "aws",
            "LIP_AWS_REGION": REGION,
            "LIP_S3_BUCKET": PARAMETERS["LakeBucket"],
            "LIP_SAM_ROLE_ARN": SAM_ROLE,
            "LIP_SAM_QUEUE_ARN": SAM_QUEUE,
            "LIP_SAM_INDEX_BUCKET": SAM_INDEX,
        }
    )
    aws = settings.aws
    assert aws is not None
    backend = AwsBackend(settings)
    target = SamTarget(backend, SOURCE)
    cursors, dedupe, queues = backend.cursors, backend.dedupe, backend.buffer
    assert isinstance(cursors, DynamoCursorStore) and isinstance(dedupe, DynamoDedupeStore)
    assert isinstance(queues, SqsBuffer)
    buffer, dlq = queues.queue_names(SOURCE)
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:"
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/"
    source_key = (
        f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1f2e3d4c-0000-4000-8000-000000000001",
        {"kms:ResourceAliases": aws.kms_key(SOURCE)},
    )
    return {
        "account": ("*", {}),
        "lake-bucket": (target.bucket_arn, {}),
        "lake-listing": (target.bucket_arn, {"s3:prefix": target.source_lake_prefix}),
        "lake-object": (target.sample_object_arn(), {}),
        "quarantine-listing": (
            target.bucket_arn,
            {"s3:prefix": f"{aws.quarantine_prefix}{SOURCE}/"},
        ),
        "quarantine-object": (target.sample_quarantine_arn(), {}),
        "source-key": source_key,
        "cursor-table": (table + cursors.table_name(SOURCE), {}),
        "dedupe-table": (table + dedupe.table_name(SOURCE), {}),
        "buffer-queue": (queue + buffer, {}),
        "dead-letter-queue": (queue + dlq, {}),
        "vendor-bucket": (VENDOR_BUCKET, {}),
        "vendor-object": (f"{VENDOR_BUCKET}/AWSLogs/{ACCOUNT}/CloudTrail/x.json.gz", {}),
        "vendor-queue": (VENDOR_QUEUE, {}),
        "vendor-key": (VENDOR_KEY, {}),
        "vendor-secret": (secret_arn(f"{aws.secrets_prefix}okta/api-token"), {}),
        "webhook-secret": (secret_arn(f"{aws.secrets_prefix}github/webhook-secret"), {}),
        "alert-secret": (secret_arn(aws.secrets_prefix + settings.alerts.slack_secret), {}),
        "sam-queue": (SAM_QUEUE, {}),
        "sam-role": (SAM_ROLE, {}),
        "sam-index-bucket": (f"arn:aws:s3:::{SAM_INDEX}", {}),
        "iam-policy": (f"arn:aws:iam::{ACCOUNT}:policy/sam-read", {}),
    }


# resources of the account no LIP process has any business with
ELSEWHERE: dict[str, list[tuple[str, dict[str, str]]]] = {
    "s3": [("arn:aws:s3:::acme-payroll", {}), ("arn:aws:s3:::acme-payroll/2026/x.csv", {})],
    "kms": [
        (f"arn:aws:kms:{REGION}:{ACCOUNT}:key/payroll", {"kms:ResourceAliases": "alias/payroll"})
    ],
    "dynamodb": [(f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/payroll", {})],
    "sqs": [(f"arn:aws:sqs:{REGION}:{ACCOUNT}:payroll-jobs", {})],
    "secretsmanager": [(secret_arn("payroll/db-password"), {})],
    "iam": [(f"arn:aws:iam::{ACCOUNT}:role/admin", {})],
}


# Broader than the code, on purpose: what a pattern cannot tell apart
ACCEPTED: dict[tuple[str, str, str], str] = {
    # one pattern covers lake and quarantine; runs write both, and the template has no
    # lake-prefix parameter to keep reads to the lake (quarantine is the runs' own)
    ("RunTaskRole", "s3:GetObject", "quarantine-object"): "lake/* and quarantine/* share it",
    # vendor credentials, webhook secrets and notifier secrets share the secrets prefix
    ("RunTaskRole", "secretsmanager:GetSecretValue", "webhook-secret"): "lip/*",
    ("RunTaskRole", "secretsmanager:GetSecretValue", "alert-secret"): "lip/*",
}


def same(action: str, a: tuple[str, dict[str, str]], b: tuple[str, dict[str, str]]) -> bool:
    """Whether a request on ``a`` and one on ``b`` are the same to IAM for ``action``:
    the listing prefix matters only to a listing."""

    def key(r: tuple[str, dict[str, str]]) -> tuple[str, dict[str, str]]:
        arn, context = r
        if action != "s3:ListBucket":
            context = {k: v for k, v in context.items() if k != "s3:prefix"}
        return arn, context

    return key(a) == key(b)


def kind(arn: str) -> str:
    """What an ARN names: a bucket or an object, a key, a table, a role, ..."""
    parts = arn.split(":", 5)
    if len(parts) < 6:
        return arn
    service, resource = parts[2], parts[5]
    if service == "s3":
        return "s3 object" if "/" in resource else "s3 bucket"
    if service == "iam":
        return f"iam {resource.split('/', 1)[0]}"  # a role or a policy
    return service


def request_context(p: Permission, context: Mapping[str, str]) -> dict[str, str]:
    out = dict(context)
    if p.via:
        region = VENDOR_REGION if p.resource == "vendor-key" else REGION
        out["kms:ViaService"] = f"{p.via}.{region}.amazonaws.com"
        out["kms:CallerAccount"] = ACCOUNT
    return out


def check(
    policy: Mapping[str, Any], role: str, action: str, arn: str, ctx: Mapping[str, str]
) -> bool:
    return evaluate(
        policy, Request(action, arn, role_arn(role), context=ctx), identity=True
    ).allowed


@pytest.mark.parametrize("process", list(ROLES))
def test_each_role_allows_every_call_its_process_makes(process: Process) -> None:
    role = ROLES[process]
    policy = role_policy(role)
    missing = []
    for p in PERMISSIONS:
        if process not in p.by or not p.action:
            continue
        arn, context = samples()[p.resource]
        if not check(policy, role, p.action, arn, request_context(p, context)):
            missing.append(f"{p.operation}: {p.action} on {p.resource} ({arn})")
    assert not missing, f"{role} would fail with AccessDenied on: {missing}"


@pytest.mark.parametrize("process", list(ROLES))
def test_each_role_allows_nothing_its_process_does_not_do(process: Process) -> None:
    role = ROLES[process]
    policy = role_policy(role)
    rows = [p for p in PERMISSIONS if process in p.by and p.action]
    needed = {p.action for p in rows}
    actions = {a for a in granted_actions(policy) if not INFRA_ACTIONS.match(a)}
    assert actions <= needed, f"{role} may {sorted(actions - needed)}, which no code of it does"
    beyond = []
    for action in sorted(actions):
        # every named resource of the kind it acts on, directly and through each
        # service that calls KMS for a caller
        uses = [p for p in PERMISSIONS if p.action == action]
        kinds = {kind(samples()[p.resource][0]) for p in uses}
        vias = {p.via for p in uses} | {None}
        asked = {(p.resource, p.via) for p in rows if p.action == action}
        for name, (arn, context) in samples().items():
            if kind(arn) not in kinds:
                continue
            for via in vias:
                probe = Permission("", action, name, (process,), via)
                if arn == "*" or (role, action, name) in ACCEPTED:
                    continue
                if any(same(action, samples()[r], (arn, context)) and v == via for r, v in asked):
                    continue
                if check(policy, role, action, arn, request_context(probe, context)):
                    beyond.append(f"{action} on {name}" + (f" via {via}" if via else ""))
        for arn, context in ELSEWHERE.get(action.split(":")[0], []):
            if kind(arn) in kinds and check(policy, role, action, arn, context):
                beyond.append(f"{action} on {arn}")
    assert not beyond, f"{role} may do more than its code: {beyond}"


def test_roles_that_run_no_lip_code_have_no_lip_permission() -> None:
    for role in ("DaemonTaskRole", "WebserverTaskRole"):
        actions = granted_actions(role_policy(role))
        assert all(INFRA_ACTIONS.match(a) for a in actions), (role, actions)


def test_the_receiver_only_appends_to_buffers_and_reads_only_webhook_secrets() -> None:
    """The internet-facing function: a stolen credential of it must not read the lake,
    vendor credentials or dead letters, nor rewrite the commit log."""
    role = "ReceiverRole"
    policy = role_policy(role)
    s = samples()
    buffer, dlq = s["buffer-queue"][0], s["dead-letter-queue"][0]
    assert check(policy, role, "sqs:SendMessage", buffer, {})
    for action in ("sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage"):
        assert not check(policy, role, action, dlq, {}), action
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:PurgeQueue"):
        assert not check(policy, role, action, buffer, {}), action
    for action in ("dynamodb:UpdateItem", "dynamodb:BatchWriteItem", "dynamodb:DeleteItem"):
        assert not check(policy, role, action, s["dedupe-table"][0], {}), action
    for action in ("s3:GetObject", "s3:PutObject"):
        assert not check(policy, role, action, s["lake-object"][0], {}), action
    vendor = s["vendor-secret"][0]
    assert not check(policy, role, "secretsmanager:GetSecretValue", vendor, {})
    # a source key decrypts a webhook secret, and nothing else
    key, aliases = s["source-key"]
    direct = {**aliases, "kms:CallerAccount": ACCOUNT}
    assert not check(policy, role, "kms:Decrypt", key, direct)
    # until WebhookSecretArns is set it reads every secret under the prefix: documented
    open_policy = role_policy(role, WebhookSecretArns="")
    assert check(open_policy, role, "secretsmanager:GetSecretValue", vendor, {})


def test_sensors_write_only_quarantine_and_never_read_the_lake() -> None:
    role = "CodeServerTaskRole"
    policy = role_policy(role)
    s = samples()
    assert check(policy, role, "s3:PutObject", s["quarantine-object"][0], {})
    assert not check(policy, role, "s3:PutObject", s["lake-object"][0], {})
    assert not check(policy, role, "s3:GetObject", s["lake-object"][0], {})
    arn, context = s["lake-listing"]
    assert not check(policy, role, "s3:ListBucket", arn, context)


@pytest.mark.parametrize(
    "variable",
    ["LIP_ALERT_WEBHOOK_SECRET", "LIP_ALERT_SLACK_SECRET", "LIP_ALERT_GITHUB_TOKEN_SECRET"],
)
@pytest.mark.parametrize(
    "name", ["alerts/prod/slack-url", "slack-webhook-url", "pagerduty/url", "okta/api-token"]
)
def test_every_notifier_secret_the_settings_accept_the_alert_sensor_may_read(
    variable: str, name: str
) -> None:
    """A notifier secret named where the sensors' role may not read would fail every
    alert with AccessDenied, and only in production: such a name is refused at load."""
    env = {"LIP_BACKEND": "aws", "LIP_AWS_REGION": REGION, "LIP_S3_BUCKET": "acme-{source}"}
    try:
        settings = Settings.from_env({**env, variable: name})
    except ConfigError as err:
        assert variable in str(err) and "'alerts/'" in str(err)
        return
    secret = {
        "LIP_ALERT_WEBHOOK_SECRET": settings.alerts.webhook_secret,
        "LIP_ALERT_SLACK_SECRET": settings.alerts.slack_secret,
        "LIP_ALERT_GITHUB_TOKEN_SECRET": settings.alerts.github_token_secret,
    }[variable]
    assert settings.aws is not None and secret == name
    role = "CodeServerTaskRole"
    arn = secret_arn(settings.aws.secrets_prefix + secret)
    assert check(role_policy(role), role, "secretsmanager:GetSecretValue", arn, {}), (
        f"{variable}={name!r} loads, but the alert sensor's role may not read {arn}"
    )


def test_one_kubernetes_service_account_needs_the_run_and_the_sensors_policies() -> None:
    """On Kubernetes the code server and the runs share one service account: with the
    run role's policy alone, every tick of an S3 source that reads notifications
    fails with AccessDenied. The Helm values and the guide name both policies."""
    run = role_policy("RunTaskRole")
    sensors = role_policy("CodeServerTaskRole")
    both = {"Statement": run["Statement"] + sensors["Statement"]}

    def missing(policy: Mapping[str, Any], process: Process) -> list[str]:
        out = []
        for p in PERMISSIONS:
            if process in p.by and p.action:
                arn, context = samples()[p.resource]
                if not check(policy, "shared", p.action, arn, request_context(p, context)):
                    out.append(f"{p.action} on {p.resource}")
        return out

    assert "sqs:ReceiveMessage on vendor-queue" in missing(run, "sensors")
    assert missing(both, "sensors") == missing(both, "run") == []
    values = (REPO / "deploy" / "k8s" / "values.yaml").read_text()
    guide = (REPO / "docs" / "deployment.md").read_text().split("## Kubernetes", 1)[1]
    for text in (values, guide):
        assert "RunTaskRole" in text and "CodeServerTaskRole" in text


def test_every_task_running_lip_knows_the_roles_the_template_creates(tmp_path: Path) -> None:
    """`lip_kms_key_use` confirms a key policy that names LIP's roles instead of the
    account only when LIP_ROLE_ARNS lists them: every ECS task running LIP's code (the
    runs evaluate the checks; the code server, daemon and webserver load the same
    settings) gets the roles this template creates, each under the process that runs
    as it, and the stack outputs the same value for `lip check` on a workstation."""
    resolve = Resolver(template(), PARAMETERS)
    expected = tuple((process, role_arn(role)) for process, role in ROLES.items())
    tasks: dict[str, dict[str, str]] = {}
    for name, resource in template()["Resources"].items():
        if resource["Type"] != "AWS::ECS::TaskDefinition":
            continue
        for container in resolve(resource["Properties"])["ContainerDefinitions"]:
            env = {e["Name"]: str(e["Value"]) for e in container.get("Environment", [])}
            if env.get("LIP_BACKEND") == "aws":
                tasks[name] = env
    assert {"RunTaskDefinition", "CodeServerTaskDefinition"} <= set(tasks)
    for name, env in tasks.items():
        assert "LIP_ROLE_ARNS" in env, f"{name} does not set LIP_ROLE_ARNS"
        settings = Settings.from_env({**env, "LIP_HOME": str(tmp_path)})
        assert settings.sam.lip_roles == expected, name
    output = resolve(template()["Outputs"]["LipRoleArns"]["Value"])
    assert output == tasks["RunTaskDefinition"]["LIP_ROLE_ARNS"]


def test_the_guide_names_what_the_receiver_needs_as_a_server() -> None:
    """`lip webhook serve` (the receiver on ECS or Kubernetes) has no role in the
    template: the guide gives the receiver role's policy plus what the server does
    beyond the Lambda function."""
    receiver = {(p.action, p.resource) for p in PERMISSIONS if "receiver" in p.by}
    extra = {
        (p.action, p.resource)
        for p in PERMISSIONS
        if "serve" in p.by and (p.action, p.resource) not in receiver
    }
    assert extra  # the lookups at start
    guide = (REPO / "docs" / "deployment.md").read_text().split("## Kubernetes", 1)[1]
    for action, resource in sorted(extra):
        suffix = "-cursor" if resource == "cursor-table" else "-dedupe"
        assert re.search(rf"`{action}` on [^.]*`lip-\*{suffix}`", guide), (action, resource)
    # and everything else the server does is the receiver role's
    assert {(p.action, p.resource) for p in PERMISSIONS if "serve" in p.by} - extra == receiver


class AsTheRole:
    """A template role, standing between boto3 clients and the (moto) server: each
    call is evaluated against the role's policy before it is sent, and one the role
    does not allow fails as AWS would, with AccessDenied. moto enforces no IAM, so
    without this a call the deployed role refuses passes every test.

    ``watch`` a boto3 session before its clients are created (each client copies the
    session's event handlers). ARNs are built as AWS would in the template's region
    and account. Of the KMS calls services make for the caller, the decrypt of a
    secret's key is evaluated (Secrets Manager's key is a secret's own, named by
    ``lookup``); those S3 and SQS make are not client calls and are not.
    Every refused call is kept in ``denied``: some callers (the SAM checks' IAM
    reads) take AccessDenied for "not readable from here" and carry on."""

    SQS_ACTIONS = {
        "SendMessageBatch": "SendMessage",
        "DeleteMessageBatch": "DeleteMessage",
        "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
    }

    S3_ACTIONS = {
        "GetBucketEncryption": "s3:GetEncryptionConfiguration",
        "GetBucketPolicy": "s3:GetBucketPolicy",
        "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
        "GetBucketNotificationConfiguration": "s3:GetBucketNotification",
        "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
    }

    def __init__(self, role: str, lookup: AwsBackend | None = None, **params: Any) -> None:
        """``lookup``: an administrator's backend, unwatched, to resolve what AWS
        resolves before it authorizes (a key alias to its key, a secret's key)."""
        self.role = role
        self.policy = role_policy(role, **params)
        self.lookup = lookup
        self.asked: list[str] = []
        self.denied: list[str] = []

    def key(self, key_id: str) -> tuple[str, dict[str, str]] | None:
        """A KMS key as IAM sees it: its ARN in the template's region and account, and
        its alias as ``kms:ResourceAliases``; None for a key that does not exist (AWS
        answers NotFound)."""
        assert self.lookup is not None, f"{self.role}: a KMS call needs a lookup backend"
        kms = self.lookup.client("kms")
        try:
            bare = kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyId"]
        except botocore.exceptions.ClientError:
            return None
        aliases = [a["AliasName"] for a in kms.list_aliases(KeyId=bare).get("Aliases", [])]
        context = {"kms:ResourceAliases": aliases[0]} if aliases else {}
        return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{bare}", context

    def watch(self, session: Any) -> Any:
        session.events.register("before-parameter-build", self)
        return session

    def requests(self, service: str, op: str, params: Mapping[str, Any]) -> list[Any]:
        """The (action, ARN, context) AWS authorizes for one call."""
        if service == "s3":
            bucket = f"arn:aws:s3:::{params['Bucket']}"
            listing = {"s3:prefix": params["Prefix"]} if "Prefix" in params else {}
            if op == "PutObject":
                return [("s3:PutObject", f"{bucket}/{params['Key']}", {})]
            if op == "GetObject":
                return [("s3:GetObject", f"{bucket}/{params['Key']}", {})]
            if op == "HeadObject":
                # without ListBucket a missing object answers 403, not 404
                return [
                    ("s3:GetObject", f"{bucket}/{params['Key']}", {}),
                    ("s3:ListBucket", bucket, {}),
                ]
            if op in ("ListObjectsV2", "ListObjects", "HeadBucket"):
                return [("s3:ListBucket", bucket, listing)]
            if op in self.S3_ACTIONS:
                return [(self.S3_ACTIONS[op], bucket, {})]
        if service == "sqs":
            name = params.get("QueueName") or str(params["QueueUrl"]).rsplit("/", 1)[-1]
            action = "sqs:" + self.SQS_ACTIONS.get(op, op)
            owner = params.get("QueueOwnerAWSAccountId") or ACCOUNT
            return [(action, f"arn:aws:sqs:{REGION}:{owner}:{name}", {})]
        if service == "dynamodb":
            tables = (
                [params["TableName"]] if "TableName" in params else list(params["RequestItems"])
            )
            table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/"
            return [(f"dynamodb:{op}", table + t, {}) for t in tables]
        if service == "kms":
            key = self.key(str(params["KeyId"]))
            return [] if key is None else [(f"kms:{op}", *key)]
        if service == "iam":
            if "PolicyArn" in params:
                return [(f"iam:{op}", str(params["PolicyArn"]), {})]
            return [(f"iam:{op}", f"arn:aws:iam::{ACCOUNT}:role/{params['RoleName']}", {})]
        if service == "secretsmanager" and op == "GetSecretValue":
            name = str(params["SecretId"])
            asked = [("secretsmanager:GetSecretValue", secret_arn(name), {})]
            # Secrets Manager decrypts with the secret's key for the caller
            assert self.lookup is not None, f"{self.role}: a secret read needs a lookup backend"
            try:
                meta = self.lookup.client("secretsmanager").describe_secret(SecretId=name)
            except botocore.exceptions.ClientError:
                return asked
            key = self.key(meta["KmsKeyId"]) if meta.get("KmsKeyId") else None
            if key is not None:
                via = {
                    "kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com",
                    "kms:CallerAccount": ACCOUNT,
                }
                asked.append(("kms:Decrypt", key[0], {**key[1], **via}))
            return asked
        if service == "sts" and op == "GetCallerIdentity":
            return []  # AWS authorizes no one for it: every principal may ask
        raise AssertionError(f"{self.role}: no mapping to IAM for {service} {op}")

    def __call__(self, model: Any, params: Mapping[str, Any], **_: Any) -> None:
        service = model.service_model.service_name
        for action, arn, context in self.requests(service, model.name, params):
            self.asked.append(f"{action} {arn}")
            if not check(self.policy, self.role, action, arn, context):
                self.denied.append(f"{action} {arn}")
                raise botocore.exceptions.ClientError(
                    {"Error": {"Code": "AccessDenied", "Message": f"{action} on {arn}"}},
                    model.name,
                )


def test_the_receiver_buffers_a_delivery_under_its_own_role(
    boto_session: Any, moto_endpoint: str
) -> None:
    """The receiver's SQS calls, made for real (moto) and each evaluated against the
    template's ReceiverRole first: one the role does not allow fails as AWS would,
    with AccessDenied. A delivery must be buffered: the role may look up and send to
    the buffer queue only, so a send that also looked up the dead-letter queue was
    refused, and every delivery of every webhook source answered 503."""
    role = AsTheRole("ReceiverRole")
    source = f"hooks{uuid.uuid4().hex[:8]}"
    admin = SqsBuffer(session=boto_session, endpoint_url=moto_endpoint)
    admin.ensure(source)
    session = role.watch(boto3.session.Session(region_name=boto_session.region_name))
    receiver = SqsBuffer(session=session, endpoint_url=moto_endpoint)
    try:
        receiver.send(source, [b'{"id": "e1"}'])
    finally:
        receiver.close()
    _, dlq = admin.queue_names(source)
    assert role.asked and not any(a.endswith(dlq) for a in role.asked), role.asked
    assert {a.split()[0] for a in role.asked} == {"sqs:GetQueueUrl", "sqs:SendMessage"}
    assert [m.body for m in admin.receive(source, 10, 30)] == [b'{"id": "e1"}']
    admin.close()


def deployed(role: AsTheRole, endpoint: str, home: Path, run: str) -> AwsBackend:
    """The AWS backend of one deployment on the local server, every client of it
    under ``role``."""
    backend = AwsBackend(aws_settings(endpoint, home, run))
    role.watch(backend.session)
    return backend


def lake_lines(admin: AwsBackend, bucket: str, prefix: str) -> list[str]:
    s3 = admin.client("s3")
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def test_a_run_lands_quarantines_and_drains_under_its_own_role(
    aws_env: str, tmp_path: Path
) -> None:
    """A polling run (cursor read and commit, a page landed with SSE-KMS, claimed
    and marked in the commit log, a page landed again, a quarantine put) and a
    webhook drain (receive, land, delete, a poison message quarantined), each boto3
    call evaluated against the template's RunTaskRole: a call the role refuses
    fails the collection in production with AccessDenied."""
    run = uuid.uuid4().hex[:8]
    source = "okta"
    admin = AwsBackend(aws_settings(aws_env, tmp_path, run))
    kms = admin.client("kms")
    admin.client("s3").create_bucket(Bucket=f"lake-{run}-{source}")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=f"alias/lip-{run}-{source}", TargetKeyId=key_id)
    admin.ensure_source(source)
    admin.buffer.ensure(source)

    role = AsTheRole("RunTaskRole", LakeBucketArnPattern="arn:aws:s3:::lake-*")
    lip = deployed(role, aws_env, tmp_path, run)
    assert lip.ensure_source(source) == []
    # a polling run: its cursor, a page, the same page again, a quarantined item
    assert lip.cursors.get(source, "events") is None
    events = okta_events(5, datetime(2026, 3, 1, 10, tzinfo=UTC), timedelta(seconds=10))
    writer = LakeWriter(lip.lake, lip.dedupe, quarantine=lip.quarantine)
    try:
        assert writer.write(source, events, OKTA_EVENT_IDENTITY, "polling").events == 5
        assert writer.write(source, events, OKTA_EVENT_IDENTITY, "polling").events == 0
        lip.cursors.commit(source, "events", "after-page-1", None)
        lip.quarantine.put(source, "page-2", b"{not json", "undecodable", stable_id="p2")
        # a webhook drain: one delivery lands, one poison message is set aside
        hooks = okta_events(3, datetime(2026, 3, 1, 11, tzinfo=UTC), timedelta(seconds=5), seed=1)
        admin.buffer.send(source, [pack(source, 1772362800.0, hooks), b"poison"])
        drain = Drainer(
            DrainConfig(source, OKTA_EVENT_IDENTITY, 10, 30, 30),
            buffer=lip.buffer,
            writer=writer,
            quarantine=lip.quarantine,
        )
        report = drain.run()
    finally:
        writer.close()
    assert report.error is None, report.error
    assert report.result.events == 3 and report.quarantined == 1
    assert admin.buffer.depth(source).ready == 0
    assert lip.cursors.get(source, "events") is not None
    bucket = f"lake-{run}-{source}"
    assert len(lake_lines(admin, bucket, "lake/")) == 2
    assert len(lake_lines(admin, bucket, f"quarantine/{source}/")) >= 2
    asked = {a.split()[0] for a in role.asked}
    assert {"s3:PutObject", "sqs:ReceiveMessage", "sqs:DeleteMessage"} <= asked, asked


def roles_of(w: World) -> tuple[AsTheRole, AsTheRole, AwsBackend]:
    """The code server's and the run's roles for this world's vendor bucket and
    queue: the world's runs go under the run role from now on, and the sensor's
    ticks through the deployment returned, under the code server's."""
    vendor = {
        "LakeBucketArnPattern": "arn:aws:s3:::lake-*",
        "VendorBucketArns": [f"arn:aws:s3:::{w.vendor_bucket}"],
        "VendorObjectArns": [f"arn:aws:s3:::{w.vendor_bucket}/AWSLogs/*"],
        "VendorQueueArns": [f"arn:aws:sqs:{REGION}:{ACCOUNT}:notify-{w.run}"],
    }
    sensors, runs = AsTheRole("CodeServerTaskRole", **vendor), AsTheRole("RunTaskRole", **vendor)
    runs.watch(w.backend.session)
    code_server = AwsBackend(w.backend.settings)
    sensors.watch(code_server.session)
    return sensors, runs, code_server


@pytest.mark.parametrize("queue", [False, True], ids=["listing", "notifications"])
def test_the_s3_arrival_sensor_ticks_under_the_code_servers_role(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, queue: bool
) -> None:
    """The S3 arrival sensor's calls, each evaluated against CodeServerTaskRole: the
    vendor bucket listed (or its notifications received, a bad one quarantined and
    counted, the rest acknowledged), the listing cursor read and committed; and the
    run it requests under RunTaskRole. A call the role refuses fails every tick of
    the source in production, or every run."""
    w = World(aws_env, tmp_path, monkeypatch, queue=queue)
    w.backend.ensure_source("cloudtrail")
    key = f"{TRAIL}111122223333_CloudTrail_us-east-2_20260301T1005Z_A.json.gz"
    w.put(key, trail_file(cloudtrail_records(3)))
    if queue:
        w.sqs.send_message(QueueUrl=w.queue_url, MessageBody="not a notification")
    sensors, runs, code_server = roles_of(w)

    def tick(cursor: str | None) -> Any:
        return w.component.evaluate_tick(
            code_server, cursor, ASSET, NOW, lambda ids: batch_outcomes(w.instance, ids)
        )

    first = tick(None)
    requested = [r.run_config["ops"]["cloudtrail"]["config"]["keys"] for r in first.run_requests]
    assert requested == [[key]]
    for request in first.run_requests:
        assert w.execute(request).success
    tick(first.cursor)
    assert len(w.lake_lines()) == 3
    asked = {a.split()[0] for a in sensors.asked}
    if queue:
        assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "s3:PutObject"} <= asked, asked
        assert w.queued() == 0
    else:
        assert {"s3:ListBucket", "dynamodb:GetItem", "dynamodb:PutItem"} <= asked, asked
    assert {"s3:GetObject", "s3:PutObject"} <= {a.split()[0] for a in runs.asked}, runs.asked


def test_the_webhook_arrival_sensor_reads_buffer_depth_under_the_code_servers_role(
    aws_env: str, tmp_path: Path
) -> None:
    """The webhook arrival sensor measures the buffer (and its dead letters) under
    CodeServerTaskRole: refused, it fails open and drains on every tick."""
    run = uuid.uuid4().hex[:8]
    source = "okta_hooks"
    AwsBackend(aws_settings(aws_env, tmp_path, run)).buffer.ensure(source)
    role = AsTheRole("CodeServerTaskRole")
    lip = deployed(role, aws_env, tmp_path, run)
    depth = lip.buffer.depth(source)
    assert depth.messages == 0 and depth.dead_letters == 0
    assert {a.split()[0] for a in role.asked} == {"sqs:GetQueueUrl", "sqs:GetQueueAttributes"}


def tls_only_buckets_readable(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto reads a provisioned bucket's deny of non-TLS requests as a deny of all
    (lip_dagster_tests/sam/conftest.py): its own bucket-policy enforcement is off."""
    from moto.iam.access_control import PermissionResult
    from moto.s3.models import FakeBucket

    monkeypatch.setattr(
        FakeBucket, "get_permission", lambda self, action, resource: PermissionResult.NEUTRAL
    )


def provisioned(
    boto_session: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Deployment, AwsBackend, dict[str, Any]]:
    """Okta provisioned by an administrator (bucket, key, tables, queues, its
    credential's secret) with events landed, the SAM's role, queue and index bucket
    beside it; and the template's parameters for this deployment."""
    tls_only_buckets_readable(monkeypatch)
    d = make_deployment(boto_session, moto_endpoint, monkeypatch)
    admin = d.backend()
    assert isinstance(admin, AwsBackend)
    assert not provision(admin, [OKTA]).drift
    land(admin)
    params = {
        "LakeBucketArnPattern": "arn:aws:s3:::lip-*",
        "AwsResourcePrefix": f"lip{d.run}-",
        "SecretsPrefix": f"lip{d.run}/",
        "SamRoleArn": d.role_arn,
        "SamQueueArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{d.queue_arn.rsplit(':', 1)[1]}",
        "SamIndexBucketArn": f"arn:aws:s3:::{d.index_bucket}",
    }
    return d, admin, params


def as_role(role: AsTheRole, d: Deployment) -> AwsBackend:
    lip = d.backend()
    assert isinstance(lip, AwsBackend)
    role.watch(lip.session)
    return lip


def test_the_sam_checks_read_what_they_judge_under_the_run_role(
    boto_session: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, lip_home: Path
) -> None:
    """The asset checks run inside a Dagster run: every read of a resource check (the
    bucket's encryption, policy, public access block, notifications and lifecycle,
    the key's description, policy and rotation, the SAM queue's policy, the SAM
    role's policies, the index bucket) and of the content checks (each object's key)
    is evaluated against RunTaskRole. One the role refuses reports a failed check
    naming AccessDenied in production, or (the SAM role's policies) silently checks
    less than it says."""
    d, admin, params = provisioned(boto_session, moto_endpoint, monkeypatch)
    role = AsTheRole("RunTaskRole", lookup=admin, **params)
    lip = as_role(role, d)
    outcomes = list(resource_outcomes(lip, OKTA.name, OKTA.pattern))
    outcomes += content_outcomes(lip, OKTA.name, PARTITION)
    assert not role.denied, role.denied
    assert not [o.summary for o in outcomes if "AccessDenied" in o.summary]
    asked = {a.split()[0] for a in role.asked}
    assert {
        "s3:GetEncryptionConfiguration",
        "s3:GetBucketPolicy",
        "s3:GetBucketPublicAccessBlock",
        "s3:GetBucketNotification",
        "kms:DescribeKey",
        "kms:GetKeyPolicy",
        "kms:GetKeyRotationStatus",
        "sqs:GetQueueAttributes",
        "iam:ListRolePolicies",
        "iam:GetRolePolicy",
        "iam:ListAttachedRolePolicies",
        "s3:ListBucket",  # the partition listed, each object's key read
        "s3:GetObject",
    } <= asked, asked
    # deployed without SamRoleArn, the role may not read the SAM role's policies: the
    # index check says so instead of judging the grant, which is why ``denied`` and
    # not only the outcomes must be empty above
    bare = AsTheRole("RunTaskRole", lookup=admin, **{**params, "SamRoleArn": ""})
    refused = {o.name: o for o in resource_outcomes(as_role(bare, d), OKTA.name, OKTA.pattern)}
    assert bare.denied and all(a.startswith("iam:") for a in bare.denied), bare.denied
    assert "not readable from this account" in refused["sam_index_bucket"].summary


def test_the_alert_sensor_reads_its_notifier_secrets_under_the_code_servers_role(
    boto_session: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, lip_home: Path
) -> None:
    """The alert sensor fetches each notifier's secret when it sends, in the code
    server: refused, every page of every incident fails."""
    d, admin, params = provisioned(boto_session, moto_endpoint, monkeypatch)
    settings = admin.settings
    names = [
        settings.alerts.webhook_secret,
        settings.alerts.slack_secret,
        settings.alerts.github_token_secret,
    ]
    sm = admin.client("secretsmanager")
    for name in names:
        sm.create_secret(Name=d.secret(name), SecretString=f"https://hooks.example/{name}")
    role = AsTheRole("CodeServerTaskRole", lookup=admin, **params)
    lip = as_role(role, d)
    store = lip.secrets
    for name in names:
        assert store.get(name).reveal() == f"https://hooks.example/{name}"
    assert not role.denied, role.denied
    assert {a.split()[0] for a in role.asked} == {"secretsmanager:GetSecretValue"}


def test_a_replay_moves_dead_letters_back_under_the_run_role(
    boto_session: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, lip_home: Path
) -> None:
    """`lip webhook replay` launches the source's replay job: a Dagster run, under
    RunTaskRole. Every dead letter must be back in the buffer, none left behind."""
    d, admin, params = provisioned(boto_session, moto_endpoint, monkeypatch)
    source = "okta"
    buffer = admin.buffer
    assert isinstance(buffer, SqsBuffer)
    buffer.ensure(source)  # what `lip provision` creates for a webhook source
    _, dlq = buffer.queue_names(source)
    sqs = admin.client("sqs")
    dlq_url = sqs.get_queue_url(QueueName=dlq)["QueueUrl"]
    for i in range(3):
        sqs.send_message(QueueUrl=dlq_url, MessageBody=f'{{"id": "d{i}"}}')
    role = AsTheRole("RunTaskRole", lookup=admin, **params)
    lip = as_role(role, d)
    assert replay(lip.buffer, source) == 3
    assert not role.denied, role.denied
    depth = buffer.depth(source)
    assert depth.dead_letters == 0 and depth.messages == 3
    asked = {a.split()[0] for a in role.asked}
    assert {"sqs:ReceiveMessage", "sqs:SendMessage", "sqs:DeleteMessage"} <= asked, asked


def test_a_run_reads_its_sources_credential_under_the_run_role(
    boto_session: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, lip_home: Path
) -> None:
    """A polling run reads the source's token from Secrets Manager; `lip provision`
    created the secret under the source's key, so the read also decrypts with it
    (through Secrets Manager). Refused, every run of the source fails."""
    d, admin, params = provisioned(boto_session, moto_endpoint, monkeypatch)
    sm = admin.client("secretsmanager")
    name = OKTA.secrets[0]
    assert sm.describe_secret(SecretId=d.secret(name)).get("KmsKeyId")
    sm.put_secret_value(SecretId=d.secret(name), SecretString="00okta-token-value")
    role = AsTheRole("RunTaskRole", lookup=admin, **params)
    lip = as_role(role, d)
    assert lip.secrets.get(name).reveal() == "00okta-token-value"
    assert not role.denied, role.denied
    assert {a.split()[0] for a in role.asked} == {"secretsmanager:GetSecretValue", "kms:Decrypt"}
