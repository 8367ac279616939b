"""The SAM checks of AWS resources on the local moto server: a provisioned stack
with landed events passes every check; breaking one requirement turns exactly the
matching check red, with a message that names the fix. (moto accepts SSE-KMS puts
with a key pending deletion, so nothing here relies on a put failing.) The content
checks are in test_content_checks.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lip_dagster.sam.checks import CHECKS
from lip_dagster.sam.grants import LIST_SID, READ_SID, SAM_DECRYPT_SID, TLS_SID
from lip_dagster.sam.provision import provision
from lip_dagster.sam.target import AwsCallError, SamTarget
from lip_dagster_tests.sam.conftest import (
    OKTA,
    Deployment,
    Stack,
    customer_key,
    land,
    policy_file,
)


def bucket_policy(stack: Stack) -> dict[str, Any]:
    s3 = stack.deployment.client("s3")
    doc: dict[str, Any] = json.loads(
        s3.get_bucket_policy(Bucket=stack.deployment.bucket())["Policy"]
    )
    return doc


def put_bucket_policy(stack: Stack, doc: dict[str, Any]) -> None:
    stack.deployment.client("s3").put_bucket_policy(
        Bucket=stack.deployment.bucket(), Policy=json.dumps(doc)
    )


# -------------------------------------------------------------------- breakers


def remove_notification(stack: Stack) -> None:
    stack.deployment.client("s3").put_bucket_notification_configuration(
        Bucket=stack.deployment.bucket(), NotificationConfiguration={}
    )


def schedule_key_deletion(stack: Stack) -> None:
    stack.deployment.client("kms").schedule_key_deletion(
        KeyId=stack.deployment.key_id(), PendingWindowInDays=7
    )


def disable_key(stack: Stack) -> None:
    stack.deployment.client("kms").disable_key(KeyId=stack.deployment.key_id())


def disable_rotation(stack: Stack) -> None:
    stack.deployment.client("kms").disable_key_rotation(KeyId=stack.deployment.key_id())


def drop_bucket_grant(stack: Stack) -> None:
    doc = bucket_policy(stack)
    doc["Statement"] = [s for s in doc["Statement"] if s.get("Sid") not in (LIST_SID, READ_SID)]
    put_bucket_policy(stack, doc)


def drop_key_grant(stack: Stack) -> None:
    kms = stack.deployment.client("kms")
    arn = stack.deployment.key_arn()
    doc = json.loads(kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"])
    doc["Statement"] = [s for s in doc["Statement"] if s.get("Sid") != SAM_DECRYPT_SID]
    kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=json.dumps(doc))


def delete_index_bucket(stack: Stack) -> None:
    stack.deployment.client("s3").delete_bucket(Bucket=stack.deployment.index_bucket)


def revoke_index_write(stack: Stack) -> None:
    stack.deployment.client("iam").delete_role_policy(
        RoleName=stack.deployment.role_arn.rsplit("/", 1)[1], PolicyName="index-write"
    )


def remove_tls_deny(stack: Stack) -> None:
    doc = bucket_policy(stack)
    doc["Statement"] = [s for s in doc["Statement"] if s.get("Sid") != TLS_SID]
    put_bucket_policy(stack, doc)


def open_public_access(stack: Stack) -> None:
    stack.deployment.client("s3").put_public_access_block(
        Bucket=stack.deployment.bucket(),
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": False,
            "RestrictPublicBuckets": False,
        },
    )


def default_to_sse_s3(stack: Stack) -> None:
    stack.deployment.client("s3").put_bucket_encryption(
        Bucket=stack.deployment.bucket(),
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )


def close_queue_to_bucket(stack: Stack) -> None:
    sqs = stack.deployment.client("sqs")
    sqs.set_queue_attributes(
        QueueUrl=stack.deployment.queue_url,
        Attributes={"Policy": json.dumps({"Version": "2012-10-17", "Statement": []})},
    )


def quarantine_input(stack: Stack) -> None:
    stack.backend.quarantine.put("okta", "page-3.json", b"{truncated", "not JSON")


BREAKS: list[tuple[Callable[[Stack], None], str, str, str]] = [
    # breaker, the one check that must fail, words of the problem, words of the fix
    (remove_notification, "sam_notifications", "does not send s3:ObjectCreated:*", "lip provision"),
    (schedule_key_deletion, "sam_kms_key_state", "is PendingDeletion", "cancel-key-deletion"),
    (disable_key, "sam_kms_key_state", "is Disabled", "aws kms enable-key"),
    (disable_rotation, "sam_kms_key_rotation", "rotation is off", "enable-key-rotation"),
    (drop_bucket_grant, "sam_bucket_read_grant", "s3:GetObject", "LipSamRead"),
    (drop_key_grant, "sam_kms_key_policy", "decrypt", "kms:ViaService"),
    (delete_index_bucket, "sam_index_bucket", "does not exist", "create sam-index-"),
    (revoke_index_write, "sam_index_bucket", "nothing lets", "s3:PutObject"),
    (remove_tls_deny, "sam_bucket_tls_only", "does not deny non-TLS", TLS_SID),
    (open_public_access, "sam_public_access_block", "BlockPublicPolicy", "put-public-access-block"),
    (default_to_sse_s3, "sam_bucket_encryption", "is AES256", "put-bucket-encryption"),
    (close_queue_to_bucket, "sam_notifications", "does not let", "sqs:SendMessage"),
    (quarantine_input, "sam_quarantine", "1 inputs sit in quarantine", ".reason.json"),
]


def test_a_provisioned_stack_with_landed_events_passes_every_check(stack: Stack) -> None:
    outcomes = stack.checks()
    assert [o.name for o in outcomes] == [c.name for c in CHECKS]
    assert {o.name: o.status for o in outcomes} == {
        **{c.name: "pass" for c in CHECKS},
        "sam_dead_letters": "n/a",  # a polling source has no buffer
    }
    content = next(o for o in outcomes if o.name == "lake_content")
    assert content.metadata["events"] == 5
    encryption = next(o for o in outcomes if o.name == "sam_object_encryption")
    assert encryption.metadata["objects"] >= 1


@pytest.mark.parametrize(
    ("breaker", "check", "problem", "fix"), BREAKS, ids=[b[0].__name__ for b in BREAKS]
)
def test_breaking_one_requirement_fails_exactly_its_check(
    stack: Stack, breaker: Callable[[Stack], None], check: str, problem: str, fix: str
) -> None:
    breaker(stack)
    failing = stack.failing()
    assert list(failing) == [check]
    outcome = failing[check]
    assert problem in outcome.summary
    assert outcome.fix is not None and fix in outcome.fix


def test_a_missing_sam_setting_fails_the_checks_that_need_it_naming_the_variable(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIP_SAM_INDEX_BUCKET")
    stack.backend = stack.deployment.backend()
    failing = stack.failing()
    assert list(failing) == ["sam_index_bucket"]
    assert "LIP_SAM_INDEX_BUCKET" in failing["sam_index_bucket"].summary


def test_an_unreachable_aws_endpoint_fails_checks_with_the_call_not_an_exception(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIP_AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens
    backend = stack.deployment.backend()
    backend.client = _no_retries("http://127.0.0.1:9")  # type: ignore[method-assign]
    stack.backend = backend
    outcomes = {o.name: o for o in stack.checks()}
    key_state = outcomes["sam_kms_key_state"]
    assert not key_state.passed and "describing KMS key" in key_state.summary
    assert not outcomes["lake_content"].passed


def _no_retries(endpoint: str) -> Callable[[str], Any]:
    """Clients that give up on the first refused connection, to keep the test fast."""

    def build(service: str) -> Any:
        return boto3.session.Session(region_name="us-east-1").client(
            service,
            endpoint_url=endpoint,
            config=Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1}),
        )

    return build


def test_a_deny_that_exempts_the_sams_role_by_principal_arn_does_not_fail_its_read(
    stack: Stack,
) -> None:
    """The usual data-perimeter statement: deny the lake to everyone but named roles.
    The SAM's role is named, so it may still read, and the blocking check passes."""
    doc = bucket_policy(stack)
    doc["Statement"].append(
        {
            "Sid": "OnlyNamedRoles",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": f"arn:aws:s3:::{stack.deployment.bucket()}/*",
            "Condition": {
                "StringNotLike": {
                    "aws:PrincipalArn": [
                        stack.deployment.role_arn,
                        "arn:aws:iam::123456789012:role/lip-*",
                    ]
                }
            },
        }
    )
    put_bucket_policy(stack, doc)
    assert "sam_bucket_read_grant" not in stack.failing()


def test_a_deny_that_locks_out_the_sams_role_by_principal_arn_fails_its_read(
    stack: Stack,
) -> None:
    doc = bucket_policy(stack)
    doc["Statement"].append(
        {
            "Sid": "OnlyAdmins",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": f"arn:aws:s3:::{stack.deployment.bucket()}/*",
            "Condition": {
                "StringNotEquals": {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/admin"}
            },
        }
    )
    put_bucket_policy(stack, doc)
    failing = stack.failing()
    assert list(failing) == ["sam_bucket_read_grant"]
    assert "OnlyAdmins" in failing["sam_bucket_read_grant"].summary


def test_a_tls_deny_that_exempts_a_principal_is_a_gap(stack: Stack) -> None:
    """Requests without TLS from the role the Deny leaves out are allowed: the bucket
    does not deny every request without TLS."""
    doc = bucket_policy(stack)
    for statement in doc["Statement"]:
        if statement.get("Sid") == TLS_SID:
            statement["Condition"]["StringNotEquals"] = {
                "aws:PrincipalArn": "arn:aws:iam::123456789012:role/legacy-exporter"
            }
    put_bucket_policy(stack, doc)
    failing = stack.failing()
    assert list(failing) == ["sam_bucket_tls_only"]
    assert "does not deny non-TLS" in failing["sam_bucket_tls_only"].summary


# ------------------------------------------------------- a key the security team owns


def _iam_delegation(account: str) -> dict[str, Any]:
    statement: dict[str, Any] = policy_file("kms_default_key_policy.json", ACCOUNT=account)[
        "Statement"
    ][0]
    return statement


def _customer_stack(deployment: Deployment, statements: list[dict[str, Any]] | None) -> Stack:
    arn = customer_key(deployment, statements)
    # the security team's own setting: provisioning leaves a key it did not create alone
    deployment.client("kms").enable_key_rotation(KeyId=arn)
    backend = deployment.backend()
    provision(backend, [OKTA])
    land(backend)  # moto does not enforce key policies: AWS would refuse this put
    return Stack(deployment, backend)


def test_a_key_lips_roles_may_not_use_fails_its_check_with_the_statement_to_add(
    deployment: Deployment,
) -> None:
    """A key whose policy names its administrators and the SAM but does not hand use
    to the account's IAM policies: every run's first lake write fails with an
    AccessDenied that names no cause. The check says so first, and how to fix it."""
    stack = _customer_stack(deployment, None)
    failing = stack.failing()
    assert list(failing) == ["lip_kms_key_use"]  # the SAM's own grant is in place
    outcome = failing["lip_kms_key_use"]
    assert "LIP's own roles may not use" in outcome.summary
    assert "kms:GenerateDataKey through S3" in outcome.summary
    assert "kms:Decrypt through Secrets Manager" in outcome.summary
    account = deployment.client("sts").get_caller_identity()["Account"]
    assert outcome.fix is not None
    assert f'"Principal": {{"AWS": "arn:aws:iam::{account}:root"}}, "Action": "kms:*"' in (
        outcome.fix
    )


def test_a_key_that_hands_its_use_to_iam_policies_passes(deployment: Deployment) -> None:
    account = deployment.client("sts").get_caller_identity()["Account"]
    stack = _customer_stack(deployment, [_iam_delegation(account)])
    assert stack.failing() == {}


def test_a_grant_limited_to_s3_does_not_cover_secrets(deployment: Deployment) -> None:
    account = deployment.client("sts").get_caller_identity()["Account"]
    through_s3 = {
        **_iam_delegation(account),
        "Condition": {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}},
    }
    outcome = _customer_stack(deployment, [through_s3]).failing()["lip_kms_key_use"]
    assert "kms:Decrypt through Secrets Manager" in outcome.summary
    assert "kms:GenerateDataKey through S3" not in outcome.summary
    assert "kms:Decrypt through S3" not in outcome.summary


def test_a_deny_of_lips_roles_fails_the_check_naming_the_statement(
    deployment: Deployment,
) -> None:
    account = deployment.client("sts").get_caller_identity()["Account"]
    deny = {
        "Sid": "NoDataKeysOutsideTheVault",
        "Effect": "Deny",
        "Principal": {"AWS": account},
        "Action": "kms:GenerateDataKey*",
        "Resource": "*",
    }
    outcome = _customer_stack(deployment, [_iam_delegation(account), deny]).failing()[
        "lip_kms_key_use"
    ]
    assert "NoDataKeysOutsideTheVault" in outcome.summary
    assert outcome.fix is not None and "NoDataKeysOutsideTheVault" in outcome.fix


def _named_role(deployment: Deployment, name: str) -> tuple[str, dict[str, Any]]:
    """A role of the account and a key statement naming it (not the account's IAM
    policies) for everything LIP's roles do with the key; both."""
    role = deployment.role(name)
    named = {
        "Sid": "NamedRole",
        "Effect": "Allow",
        "Principal": {"AWS": role},
        "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
        "Resource": "*",
        "Condition": {
            "StringEquals": {
                "kms:ViaService": [
                    "s3.us-east-1.amazonaws.com",
                    "secretsmanager.us-east-1.amazonaws.com",
                ]
            }
        },
    }
    return role, named


def _run_as(deployment: Deployment, monkeypatch: pytest.MonkeyPatch, role: str) -> None:
    creds = deployment.client("sts").assume_role(RoleArn=role, RoleSessionName="workstation")[
        "Credentials"
    ]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", creds["SessionToken"])


def test_a_key_naming_only_the_administrator_running_the_check_fails_it(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An administrator runs `lip check` from a workstation as the one role the key
    policy names: LIP's deployed roles (which get the key through IAM policies the
    key policy does not honour) cannot use it, and every run would fail on its first
    lake write. The check must not pass, and says what to add."""
    admin, named = _named_role(deployment, "acme-admin")
    stack = _customer_stack(deployment, [named])
    _run_as(deployment, monkeypatch, admin)
    stack.backend = deployment.backend()
    outcome = stack.failing()["lip_kms_key_use"]
    assert "cannot confirm" in outcome.summary and admin in outcome.summary
    account = deployment.client("sts").get_caller_identity()["Account"]
    assert outcome.fix is not None
    assert f'"Principal": {{"AWS": "arn:aws:iam::{account}:root"}}' in outcome.fix


def test_a_deny_sparing_only_the_role_running_the_check_fails_it(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Deny of every principal but the administrator's role: judged for that role it
    spares the key, yet it denies LIP's deployed roles."""
    admin, _ = _named_role(deployment, "acme-admin")
    account = deployment.client("sts").get_caller_identity()["Account"]
    deny = {
        "Sid": "OnlyTheAdministrator",
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": "kms:GenerateDataKey*",
        "Resource": "*",
        "Condition": {"StringNotEquals": {"aws:PrincipalArn": admin}},
    }
    stack = _customer_stack(deployment, [_iam_delegation(account), deny])
    _run_as(deployment, monkeypatch, admin)
    stack.backend = deployment.backend()
    outcome = stack.failing()["lip_kms_key_use"]
    assert "OnlyTheAdministrator" in outcome.summary


def test_an_unreadable_key_policy_fails_the_check_naming_the_read(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(self: SamTarget) -> dict[str, Any]:
        err = ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}},
            "GetKeyPolicy",
        )
        raise AwsCallError(f"reading the key policy of {self.key_arn()}", err)

    monkeypatch.setattr(SamTarget, "key_policy", refused)
    outcome = stack.failing()["sam_kms_key_policy"]
    assert "reading the key policy" in outcome.summary
    assert "AccessDeniedException" in outcome.summary


# ------------------------------------------- a key naming LIP's deployed roles


def _deployed_roles(deployment: Deployment) -> dict[str, str]:
    """LIP's run, code server and receiver roles (the template's RunTaskRole,
    CodeServerTaskRole and ReceiverRole), by the process each runs."""
    return {
        "run": deployment.role("lip-run"),
        "sensors": deployment.role("lip-code-server"),
        "receiver": deployment.role("lip-receiver"),
    }


def _role_arns(roles: dict[str, str]) -> str:
    return ",".join(f"{process}={arn}" for process, arn in roles.items())


def _grant(sid: str, role: str, actions: list[str], via: str) -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"AWS": role},
        "Action": actions,
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:ViaService": f"{via}.us-east-1.amazonaws.com"}},
    }


def _grants_by_name(roles: dict[str, str]) -> list[dict[str, Any]]:
    """What a security team writes for LIP's roles when it keeps the account's IAM
    policies out of its key: each role, only what its process does with the key
    (the receiver never writes the lake, so it gets no data key)."""
    return [
        _grant("LipRunLake", roles["run"], ["kms:GenerateDataKey", "kms:Decrypt"], "s3"),
        _grant("LipRunSecrets", roles["run"], ["kms:Decrypt"], "secretsmanager"),
        _grant(
            "LipCodeServerQuarantine",
            roles["sensors"],
            ["kms:GenerateDataKey", "kms:Decrypt"],
            "s3",
        ),
        _grant("LipReceiverSecrets", roles["receiver"], ["kms:Decrypt"], "secretsmanager"),
    ]


def test_a_key_naming_the_deployed_roles_passes_once_lip_knows_them(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A working deployment whose key policy names LIP's roles instead of the account:
    unconfirmable without LIP_ROLE_ARNS (the check fails, as before), confirmed with
    it, so the check no longer pages forever."""
    roles = _deployed_roles(deployment)
    stack = _customer_stack(deployment, _grants_by_name(roles))
    assert list(stack.failing()) == ["lip_kms_key_use"]
    monkeypatch.setenv("LIP_ROLE_ARNS", _role_arns(roles))
    stack.backend = deployment.backend()
    assert stack.failing() == {}
    outcome = next(o for o in stack.checks() if o.name == "lip_kms_key_use")
    assert all(arn in outcome.summary for arn in roles.values())


def test_a_key_naming_only_the_run_role_fails_naming_the_roles_it_leaves_out(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    roles = _deployed_roles(deployment)
    monkeypatch.setenv("LIP_ROLE_ARNS", _role_arns(roles))
    only_run = [s for s in _grants_by_name(roles) if s["Principal"]["AWS"] == roles["run"]]
    outcome = _customer_stack(deployment, only_run).failing()["lip_kms_key_use"]
    assert f"{roles['sensors']} (sensors): kms:GenerateDataKey through S3" in outcome.summary
    assert f"{roles['receiver']} (receiver): kms:Decrypt through Secrets Manager" in (
        outcome.summary
    )
    # the receiver never writes the lake: no data key is asked of it
    assert "(receiver): kms:GenerateDataKey" not in outcome.summary
    assert f"{roles['run']} (run)" not in outcome.summary
    assert outcome.fix is not None
    assert roles["receiver"] in outcome.fix and roles["sensors"] in outcome.fix
    assert "LIP does not know" not in outcome.fix


def test_a_deny_of_a_listed_role_fails_naming_the_role_and_the_statement(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The account's IAM policies get the key, but a statement denies the receiver's
    role by name: every webhook delivery would fail reading its secret."""
    roles = _deployed_roles(deployment)
    monkeypatch.setenv("LIP_ROLE_ARNS", _role_arns(roles))
    account = deployment.client("sts").get_caller_identity()["Account"]
    deny = {
        "Sid": "NoInternetFacingDecrypt",
        "Effect": "Deny",
        "Principal": {"AWS": roles["receiver"]},
        "Action": "kms:Decrypt",
        "Resource": "*",
    }
    outcome = _customer_stack(deployment, [_iam_delegation(account), deny]).failing()[
        "lip_kms_key_use"
    ]
    assert "NoInternetFacingDecrypt" in outcome.summary
    assert roles["receiver"] in outcome.summary
    assert outcome.fix is not None and "NoInternetFacingDecrypt" in outcome.fix


def test_listed_roles_with_the_accounts_grant_pass(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The template sets LIP_ROLE_ARNS on every deployment: a key with AWS's default
    statement (the deployment grants its roles the key through their IAM policies)
    still passes."""
    monkeypatch.setenv("LIP_ROLE_ARNS", _role_arns(_deployed_roles(deployment)))
    account = deployment.client("sts").get_caller_identity()["Account"]
    assert _customer_stack(deployment, [_iam_delegation(account)]).failing() == {}
