"""``provision`` on the local moto server: a plan creates nothing, a run builds each
source's isolated stack, a second run changes nothing, and drift that cannot be
fixed safely is reported with its manual step and left alone."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lip_dagster.errors import ConfigError, StateError
from lip_dagster.sam.grants import LIST_SID, NOTIFICATION_ID, READ_SID, SAM_DECRYPT_SID, TLS_SID
from lip_dagster.sam.provision import Change, ProvisionError, ProvisionReport, provision
from lip_dagster.sam.sources import DeclaredSource
from lip_dagster_tests.conftest import all_secrets, all_tables
from lip_dagster_tests.sam.conftest import (
    OKTA,
    PARTITION,
    Deployment,
    Stack,
    customer_key,
    land,
    make_deployment,
    policy_file,
)

HOOKS = DeclaredSource("okta_hooks", "webhook", ("okta_hooks/verification",))


def kinds(report: ProvisionReport, source: str) -> list[str]:
    return [c.kind for c in report.changes if c.source == source]


def only(report: ProvisionReport, kind: str) -> Change:
    found = [c for c in report.changes if c.kind == kind]
    assert len(found) == 1, found
    return found[0]


def bucket_encrypted_with(d: Deployment, key: str) -> None:
    """The okta bucket, created before LIP, with ``key`` as its default key."""
    s3 = d.client("s3")
    s3.create_bucket(Bucket=d.bucket())
    rule = {
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}
    }
    s3.put_bucket_encryption(Bucket=d.bucket(), ServerSideEncryptionConfiguration={"Rules": [rule]})


def foreign_cursor_table(d: Deployment) -> str:
    """okta's cursor table, made before LIP with another key schema; its name."""
    name = d.table("okta", "cursor")
    d.client("dynamodb").create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def snapshot(d: Deployment, source: str = "okta") -> dict[str, Any]:
    """Everything provisioning may write, as AWS reports it."""
    s3, kms = d.client("s3"), d.client("kms")
    bucket = d.bucket(source)
    key = d.key_arn(source)
    return {
        "keys": sorted(k["KeyId"] for k in kms.list_keys()["Keys"]),
        "key_policy": kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"],
        "rotation": kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"],
        "policy": s3.get_bucket_policy(Bucket=bucket)["Policy"],
        "encryption": s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"],
        "public": s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"],
        "lifecycle": s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"],
        "notifications": s3.get_bucket_notification_configuration(Bucket=bucket).get(
            "QueueConfigurations"
        ),
        "tables": sorted(t for t in all_tables(d.client("dynamodb")) if d.run in t),
        "secrets": sorted(
            name for name in all_secrets(d.client("secretsmanager")) if d.run in name
        ),
    }


def test_plan_on_a_fresh_account_lists_every_resource_and_creates_none(
    deployment: Deployment,
) -> None:
    backend = deployment.backend()
    report = provision(backend, [OKTA, HOOKS], plan=True)
    assert report.plan and not report.drift
    assert {c.action for c in report.changes} == {"create"}
    stack = [
        "kms key",
        "kms alias",
        "s3 bucket",
        "s3 public access block",
        "s3 default encryption",
        "s3 bucket policy",
        "s3 lifecycle",
        "s3 notifications",
        "dynamodb table",
        "dynamodb table",
        "secret",
    ]
    assert kinds(report, "okta") == stack
    assert kinds(report, "okta_hooks") == [*stack[:-1], "sqs queue", "sqs queue", "secret"]
    names = {c.name for c in report.changes}
    assert {
        deployment.bucket("okta"),
        deployment.alias("okta"),
        deployment.table("okta_hooks", "dlq"),
        deployment.secret("okta/api-token"),
    } <= names

    with pytest.raises(ClientError):
        deployment.client("s3").head_bucket(Bucket=deployment.bucket("okta"))
    with pytest.raises(ClientError):
        deployment.client("kms").describe_key(KeyId=deployment.alias("okta"))
    assert not [t for t in all_tables(deployment.client("dynamodb")) if deployment.run in t]
    with pytest.raises(ClientError):
        deployment.client("sqs").get_queue_url(QueueName=deployment.table("okta_hooks", "buffer"))
    with pytest.raises(ClientError):
        deployment.client("secretsmanager").describe_secret(
            SecretId=deployment.secret("okta/api-token")
        )


def test_provision_builds_each_source_an_isolated_stack(deployment: Deployment) -> None:
    backend = deployment.backend()
    report = provision(backend, [OKTA, HOOKS], retention_days=90)
    assert not report.drift and report.changed
    s3, kms, sqs = deployment.client("s3"), deployment.client("kms"), deployment.client("sqs")
    okta_key, hooks_key = deployment.key_arn("okta"), deployment.key_arn("okta_hooks")
    assert okta_key != hooks_key
    assert kms.get_key_rotation_status(KeyId=okta_key)["KeyRotationEnabled"]
    enc = s3.get_bucket_encryption(Bucket=deployment.bucket("okta"))
    rule = enc["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": okta_key,
    }
    policy = json.loads(s3.get_bucket_policy(Bucket=deployment.bucket("okta"))["Policy"])
    assert {s["Sid"] for s in policy["Statement"]} == {TLS_SID, LIST_SID, READ_SID}
    read = next(s for s in policy["Statement"] if s["Sid"] == READ_SID)
    assert read["Principal"] == {"AWS": deployment.role_arn}
    assert read["Resource"] == f"arn:aws:s3:::{deployment.bucket('okta')}/lake/*"
    assert "Condition" not in read  # no VPC endpoint configured
    lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=deployment.bucket("okta"))["Rules"]
    assert lifecycle[0]["Expiration"] == {"Days": 90}
    assert lifecycle[0]["Filter"] == {"Prefix": "lake/"}
    queues = s3.get_bucket_notification_configuration(Bucket=deployment.bucket("okta"))[
        "QueueConfigurations"
    ]
    assert [(q["Id"], q["QueueArn"], q["Events"]) for q in queues] == [
        (NOTIFICATION_ID, deployment.queue_arn, ["s3:ObjectCreated:*"])
    ]
    tags = s3.get_bucket_tagging(Bucket=deployment.bucket("okta"))["TagSet"]
    assert {"Key": "lip:source", "Value": "okta"} in tags

    # state: tables for both, a buffer with its DLQ only for the webhook source
    tables = all_tables(deployment.client("dynamodb"))
    for source in ("okta", "okta_hooks"):
        assert {deployment.table(source, "cursor"), deployment.table(source, "dedupe")} <= set(
            tables
        )
    buffer = sqs.get_queue_url(QueueName=deployment.table("okta_hooks", "buffer"))["QueueUrl"]
    redrive = json.loads(
        sqs.get_queue_attributes(QueueUrl=buffer, AttributeNames=["RedrivePolicy"])["Attributes"][
            "RedrivePolicy"
        ]
    )
    assert redrive["deadLetterTargetArn"].endswith(deployment.table("okta_hooks", "dlq"))
    with pytest.raises(ClientError):
        sqs.get_queue_url(QueueName=deployment.table("okta", "buffer"))

    # the secret placeholder: encrypted with the source's key, no value
    sm = deployment.client("secretsmanager")
    secret = sm.describe_secret(SecretId=deployment.secret("okta/api-token"))
    assert secret["KmsKeyId"] == okta_key
    with pytest.raises(ClientError, match="AWSCURRENT"):
        sm.get_secret_value(SecretId=deployment.secret("okta/api-token"))


def test_a_second_run_changes_nothing_and_says_so(deployment: Deployment) -> None:
    backend = deployment.backend()
    provision(backend, [OKTA, HOOKS])
    before = snapshot(deployment)
    again = provision(deployment.backend(), [OKTA, HOOKS])
    assert not again.changed and not again.drift
    assert {c.action for c in again.changes} == {"ok"}
    assert snapshot(deployment) == before


def test_an_existing_secret_value_is_left_alone(deployment: Deployment) -> None:
    provision(deployment.backend(), [OKTA])
    sm = deployment.client("secretsmanager")
    sm.put_secret_value(SecretId=deployment.secret("okta/api-token"), SecretString="ssws-value")
    report = provision(deployment.backend(), [OKTA])
    assert only(report, "secret").action == "ok"
    value = sm.get_secret_value(SecretId=deployment.secret("okta/api-token"))["SecretString"]
    assert value == "ssws-value"
    assert "ssws-value" not in repr(report)


def test_rotation_turned_off_is_turned_back_on(stack: Stack) -> None:
    kms = stack.deployment.client("kms")
    kms.disable_key_rotation(KeyId=stack.deployment.key_id())
    report = provision(stack.deployment.backend(), [OKTA])
    assert only(report, "kms rotation").action == "update"
    assert kms.get_key_rotation_status(KeyId=stack.deployment.key_id())["KeyRotationEnabled"]
    assert not stack.failing()


def test_missing_grants_are_added_beside_statements_people_wrote(stack: Stack) -> None:
    d = stack.deployment
    s3, kms = d.client("s3"), d.client("kms")
    bucket, key = d.bucket(), d.key_arn()
    audit = {
        "Sid": "AuditorsList",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:role/auditors"},
        "Action": "s3:ListBucket",
        "Resource": f"arn:aws:s3:::{bucket}",
    }
    s3.put_bucket_policy(
        Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [audit]})
    )
    key_doc = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    key_doc["Statement"] = [s for s in key_doc["Statement"] if s["Sid"] != SAM_DECRYPT_SID]
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(key_doc))

    report = provision(d.backend(), [OKTA])
    assert only(report, "s3 bucket policy").action == "update"
    assert only(report, "kms key policy").action == "update"
    sids = {
        s["Sid"] for s in json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    }
    assert sids == {"AuditorsList", TLS_SID, LIST_SID, READ_SID}
    key_sids = {
        s["Sid"]
        for s in json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])[
            "Statement"
        ]
    }
    assert SAM_DECRYPT_SID in key_sids
    assert not stack.failing()


def test_a_notification_is_added_beside_existing_ones(deployment: Deployment) -> None:
    s3 = deployment.client("s3")
    bucket = deployment.bucket()
    s3.create_bucket(Bucket=bucket)
    other = deployment.client("sqs").create_queue(QueueName=f"audit-{deployment.run}")
    other_arn = deployment.client("sqs").get_queue_attributes(
        QueueUrl=other["QueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"Id": "audit", "QueueArn": other_arn, "Events": ["s3:ObjectRemoved:*"]}
            ]
        },
    )
    provision(deployment.backend(), [OKTA])
    ids = {
        q["Id"]
        for q in s3.get_bucket_notification_configuration(Bucket=bucket)["QueueConfigurations"]
    }
    assert ids == {"audit", NOTIFICATION_ID}


def test_a_key_pending_deletion_is_reported_not_cancelled(stack: Stack) -> None:
    kms = stack.deployment.client("kms")
    kms.schedule_key_deletion(KeyId=stack.deployment.key_id(), PendingWindowInDays=7)
    report = provision(stack.deployment.backend(), [OKTA])
    key = only(report, "kms key")
    assert key.action == "manual" and key.manual is not None
    assert "cancel-key-deletion" in key.manual
    state = kms.describe_key(KeyId=stack.deployment.key_id())["KeyMetadata"]["KeyState"]
    assert state == "PendingDeletion"


def test_another_default_key_on_an_existing_bucket_is_reported_and_kept(
    deployment: Deployment,
) -> None:
    s3, kms = deployment.client("s3"), deployment.client("kms")
    bucket = deployment.bucket()
    theirs = kms.create_key(Description="chosen by the security team")["KeyMetadata"]["Arn"]
    bucket_encrypted_with(deployment, theirs)
    report = provision(deployment.backend(), [OKTA])
    enc = only(report, "s3 default encryption")
    assert enc.action == "manual" and enc.manual and "put-bucket-encryption" in enc.manual
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == theirs


def test_a_plan_reports_another_default_key_like_the_run_while_the_key_is_to_be_created(
    deployment: Deployment,
) -> None:
    """An existing bucket encrypted with a key someone chose, and the source's own key
    still to be created: the run creates the key and leaves the bucket's encryption
    as a manual step; the plan must say that, not promise to switch it."""
    kms = deployment.client("kms")
    theirs = kms.create_key(Description="chosen by the security team")["KeyMetadata"]["Arn"]
    bucket_encrypted_with(deployment, theirs)
    plan = provision(deployment.backend(), [OKTA], plan=True)
    assert only(plan, "kms key").action == "create"
    planned = only(plan, "s3 default encryption")
    done = only(provision(deployment.backend(), [OKTA]), "s3 default encryption")
    assert done.action == "manual"
    assert planned.action == "manual", planned
    assert theirs in planned.detail and planned.manual and "put-bucket-encryption" in planned.manual


def test_a_plan_for_a_bucket_without_a_key_of_its_own_switches_it_to_the_new_key(
    deployment: Deployment,
) -> None:
    """SSE-S3 (what S3 gives every bucket): the run switches it to the new key, and so
    does the plan."""
    deployment.client("s3").create_bucket(Bucket=deployment.bucket())
    planned = only(provision(deployment.backend(), [OKTA], plan=True), "s3 default encryption")
    done = only(provision(deployment.backend(), [OKTA]), "s3 default encryption")
    assert planned.action == done.action == "update"
    assert "SSE-KMS with the new key" in planned.detail


def test_a_plan_for_a_bucket_already_naming_the_keys_alias_calls_it_ok_like_the_run(
    deployment: Deployment,
) -> None:
    bucket_encrypted_with(deployment, deployment.alias("okta"))
    planned = only(provision(deployment.backend(), [OKTA], plan=True), "s3 default encryption")
    done = only(provision(deployment.backend(), [OKTA]), "s3 default encryption")
    assert planned.action == done.action == "ok"


def test_a_key_lips_roles_may_not_use_is_a_manual_step_and_never_changed(
    deployment: Deployment,
) -> None:
    """The security team's key for okta grants its administrators and the SAM, not the
    account's IAM policies: LIP's roles could not write. Provisioning says so, with
    the statement to add, in the plan and the run, and leaves the key policy alone."""
    arn = customer_key(deployment)
    kms = deployment.client("kms")
    before = kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"]
    planned = only(provision(deployment.backend(), [OKTA], plan=True), "kms key use")
    report = provision(deployment.backend(), [OKTA])
    use = only(report, "kms key use")
    assert use.action == "manual" and use in report.drift
    assert "kms:GenerateDataKey through S3" in use.detail
    account = deployment.client("sts").get_caller_identity()["Account"]
    assert use.manual and f'{{"AWS": "arn:aws:iam::{account}:root"}}' in use.manual
    assert (planned.action, planned.manual) == (use.action, use.manual)
    assert kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"] == before
    assert only(report, "kms key policy").action == "ok"  # the SAM may decrypt


def test_a_key_naming_only_the_administrator_provisioning_is_not_called_usable(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key names the administrator's role, the one `lip provision` runs as, and
    neither the account's IAM policies nor LIP's deployed roles: the runs could not
    write. The row is a manual step with the statement to add, never "ok"."""
    account = deployment.client("sts").get_caller_identity()["Account"]
    admin = deployment.role("acme-admin")
    named = {
        "Sid": "Administrators",
        "Effect": "Allow",
        "Principal": {"AWS": admin},
        "Action": "kms:*",
        "Resource": "*",
    }
    customer_key(deployment, [named])
    creds = deployment.client("sts").assume_role(RoleArn=admin, RoleSessionName="admin")[
        "Credentials"
    ]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", creds["SessionToken"])
    planned = only(provision(deployment.backend(), [OKTA], plan=True), "kms key use")
    report = provision(deployment.backend(), [OKTA])
    use = only(report, "kms key use")
    assert use.action == "manual" and use in report.drift, use
    assert "cannot confirm" in use.detail and admin in use.detail
    assert use.manual and f'{{"AWS": "arn:aws:iam::{account}:root"}}' in use.manual
    assert (planned.action, planned.manual) == (use.action, use.manual)


def test_a_key_lip_did_not_create_is_never_changed_to_let_the_sam_decrypt(
    deployment: Deployment,
) -> None:
    """The security team's key does not (yet) let the SAM decrypt: its policy is
    theirs, so provisioning prints the statement to add, in the plan and the run
    alike, and never writes the policy."""
    account = deployment.client("sts").get_caller_identity()["Account"]
    delegation = policy_file("kms_default_key_policy.json", ACCOUNT=account)["Statement"][0]
    arn = customer_key(deployment, [delegation])
    kms = deployment.client("kms")
    doc = json.loads(kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"])
    doc["Statement"] = [s for s in doc["Statement"] if s["Sid"] != "SamIndexerDecrypt"]
    kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=json.dumps(doc))
    before = kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"]
    planned = only(provision(deployment.backend(), [OKTA], plan=True), "kms key policy")
    report = provision(deployment.backend(), [OKTA])
    grant = only(report, "kms key policy")
    assert grant.action == "manual" and grant in report.drift, grant
    assert grant.manual and SAM_DECRYPT_SID in grant.manual and deployment.role_arn in grant.manual
    assert (planned.action, planned.manual) == (grant.action, grant.manual)
    assert kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"] == before


def test_rotation_of_a_key_lip_did_not_create_is_left_to_its_owner(
    deployment: Deployment,
) -> None:
    """Turning rotation on only tightens security, but it is a write to the security
    team's key all the same: reported with the command, in plan and run alike."""
    account = deployment.client("sts").get_caller_identity()["Account"]
    delegation = policy_file("kms_default_key_policy.json", ACCOUNT=account)["Statement"][0]
    arn = customer_key(deployment, [delegation])
    kms = deployment.client("kms")
    assert not kms.get_key_rotation_status(KeyId=arn)["KeyRotationEnabled"]
    planned = only(provision(deployment.backend(), [OKTA], plan=True), "kms rotation")
    report = provision(deployment.backend(), [OKTA])
    rotation = only(report, "kms rotation")
    assert rotation.action == "manual" and rotation in report.drift, rotation
    assert rotation.manual == f"aws kms enable-key-rotation --key-id {arn}"
    assert (planned.action, planned.manual) == (rotation.action, rotation.manual)
    assert not kms.get_key_rotation_status(KeyId=arn)["KeyRotationEnabled"]


def test_lips_own_key_hands_its_use_to_iam_policies(deployment: Deployment) -> None:
    provision(deployment.backend(), [OKTA])
    use = only(provision(deployment.backend(), [OKTA]), "kms key use")
    assert use.action == "ok" and "IAM policies" in use.detail


def test_no_retention_rule_is_added_to_a_bucket_lip_did_not_create(
    deployment: Deployment,
) -> None:
    s3 = deployment.client("s3")
    s3.create_bucket(Bucket=deployment.bucket())
    report = provision(deployment.backend(), [OKTA])
    lifecycle = only(report, "s3 lifecycle")
    assert lifecycle.action == "manual"
    assert lifecycle.manual and "put-bucket-lifecycle-configuration" in lifecycle.manual
    with pytest.raises(ClientError, match="NoSuchLifecycleConfiguration"):
        s3.get_bucket_lifecycle_configuration(Bucket=deployment.bucket())
    # everything the SAM needs was still added to that bucket
    assert only(report, "s3 bucket policy").action == "create"
    assert only(report, "s3 default encryption").action == "update"
    land(deployment.backend())
    assert not Stack(deployment, deployment.backend()).failing()


def test_a_queue_that_refuses_the_bucket_is_a_manual_step_with_the_statement(
    deployment: Deployment,
) -> None:
    deployment.client("sqs").set_queue_attributes(
        QueueUrl=deployment.queue_url,
        Attributes={"Policy": json.dumps({"Version": "2012-10-17", "Statement": []})},
    )
    report = provision(deployment.backend(), [OKTA])
    note = only(report, "s3 notifications")
    assert note.action == "manual" and note.manual
    assert "sqs:SendMessage" in note.manual and deployment.bucket() in note.manual
    config = deployment.client("s3").get_bucket_notification_configuration(
        Bucket=deployment.bucket()
    )
    assert not config.get("QueueConfigurations")


def test_provisioning_never_replaces_a_table(deployment: Deployment) -> None:
    name = foreign_cursor_table(deployment)
    with pytest.raises(ProvisionError, match="will not replace") as caught:
        provision(deployment.backend(), [OKTA])
    assert isinstance(caught.value.__cause__, StateError)
    schema = deployment.client("dynamodb").describe_table(TableName=name)["Table"]["KeySchema"]
    assert schema == [{"AttributeName": "pk", "KeyType": "HASH"}]


def test_a_vpc_endpoint_scopes_only_object_reads(
    boto_session: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, lip_home: Any
) -> None:
    d = make_deployment(boto_session, moto_endpoint, monkeypatch, vpce_id="vpce-0a1b2c3d")
    provision(d.backend(), [OKTA])
    land(d.backend())
    policy = json.loads(d.client("s3").get_bucket_policy(Bucket=d.bucket())["Policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid[READ_SID]["Condition"] == {"StringEquals": {"aws:SourceVpce": "vpce-0a1b2c3d"}}
    assert "Condition" not in by_sid[LIST_SID]  # the SAM's connectivity test lists from outside
    stack = Stack(d, d.backend())
    assert not stack.failing()

    # The documented "only through this endpoint" Deny also blocks that test.
    lockdown = policy_file("deny_outside_vpce.json", BUCKET=d.bucket(), VPCE="vpce-0a1b2c3d")
    policy["Statement"] += lockdown["Statement"]
    d.client("s3").put_bucket_policy(Bucket=d.bucket(), Policy=json.dumps(policy))
    failing = stack.failing()
    assert list(failing) == ["sam_bucket_read_grant"]
    assert "s3:ListBucket" in failing["sam_bucket_read_grant"].summary
    assert "Access-to-specific-VPCE-only" in failing["sam_bucket_read_grant"].summary


def test_provisioning_needs_the_sam_settings(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIP_SAM_ROLE_ARN")
    with pytest.raises(ConfigError, match="LIP_SAM_ROLE_ARN"):
        provision(deployment.backend(), [OKTA])


@pytest.mark.parametrize(
    ("var", "value"), [("LIP_S3_BUCKET", "acme-lip-lake"), ("LIP_KMS_KEY", "alias/lip-shared")]
)
def test_provisioning_refuses_resources_shared_between_sources(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=r"\{source\}"):
        provision(deployment.backend(), [OKTA])


def test_the_checks_of_a_provisioned_stack_see_the_partition_landed(stack: Stack) -> None:
    content = next(o for o in stack.checks() if o.name == "lake_content")
    assert content.metadata["partition"] == PARTITION and content.metadata["objects"] >= 1


def test_a_failure_part_way_says_what_was_already_done(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIP_S3_BUCKET", f"lip-{deployment.run}-{'x' * 60}-{{source}}")  # > 63
    with pytest.raises(ProvisionError) as caught:
        provision(deployment.backend(), [OKTA])
    assert "creating bucket" in str(caught.value) and "InvalidBucketName" in str(caught.value)
    done = [(c.kind, c.action) for c in caught.value.report.changes]
    assert done == [("kms key", "create"), ("kms alias", "create")]
    assert deployment.key_arn()  # it stands; the next run finds it and goes on


def test_a_source_name_with_an_underscore_gets_a_bucket_s3_accepts(
    deployment: Deployment,
) -> None:
    """S3 refuses '_' in bucket names (moto does not): the bucket spells it '-'."""
    provision(deployment.backend(), [HOOKS])
    bucket = deployment.backend().settings.aws.bucket("okta_hooks")
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket)
    assert "okta-hooks" in bucket
    assert deployment.client("s3").head_bucket(Bucket=bucket)


def test_two_sources_that_would_share_a_bucket_are_refused(deployment: Deployment) -> None:
    twin = DeclaredSource("okta-hooks", "webhook", ())
    with pytest.raises(ConfigError, match="would share the bucket"):
        provision(deployment.backend(), [twin])


def test_a_plan_for_a_new_bucket_names_the_queue_that_refuses_it(
    deployment: Deployment,
) -> None:
    """On a fresh account the real run leaves the notification as a manual step when
    the SAM's queue refuses the bucket: the plan must say so, not promise it."""
    deployment.client("sqs").set_queue_attributes(
        QueueUrl=deployment.queue_url,
        Attributes={"Policy": json.dumps({"Version": "2012-10-17", "Statement": []})},
    )
    planned = only(provision(deployment.backend(), [OKTA], plan=True), "s3 notifications")
    done = only(provision(deployment.backend(), [OKTA]), "s3 notifications")
    assert done.action == "manual"
    assert (planned.action, planned.manual) == (done.action, done.manual)


def test_a_plan_does_not_promise_encryption_or_secrets_with_a_key_lip_cannot_create(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LIP_KMS_KEY naming a key id that does not exist: the run encrypts nothing and
    creates no secret (they wait for the key); the plan must say the same."""
    monkeypatch.setenv(
        "LIP_KMS_KEY", "arn:aws:kms:us-east-1:123456789012:key/{source}-0000-0000-0000-000000000000"
    )
    planned = provision(deployment.backend(), [OKTA], plan=True)
    done = provision(deployment.backend(), [OKTA])
    for kind in ("s3 default encryption", "secret"):
        assert only(done, kind).action == "manual"
        assert only(planned, kind).action == "manual", only(planned, kind)


def test_a_plan_reports_a_table_the_run_would_refuse(deployment: Deployment) -> None:
    name = foreign_cursor_table(deployment)
    planned = provision(deployment.backend(), [OKTA], plan=True).changes
    table = next(c for c in planned if c.name == name)
    assert table.action == "manual" and table.manual and "pk" in table.detail
    with pytest.raises(ProvisionError, match="will not replace"):
        provision(deployment.backend(), [OKTA])


def test_a_plan_reports_ttl_on_another_attribute_like_the_run(deployment: Deployment) -> None:
    provision(deployment.backend(), [OKTA])
    name = deployment.table("okta", "dedupe")
    ddb = deployment.client("dynamodb")
    ddb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": False, "AttributeName": "expires_at"}
    )
    ddb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
    )
    planned = provision(deployment.backend(), [OKTA], plan=True).changes
    done = provision(deployment.backend(), [OKTA]).changes
    assert [c.action for c in done if c.name == name] == ["manual"]
    assert [c.action for c in planned if c.name == name] == ["manual"]


def test_a_plan_reports_a_buffer_redriving_elsewhere_like_the_run(
    deployment: Deployment,
) -> None:
    sqs = deployment.client("sqs")
    other = sqs.create_queue(QueueName=f"other-dlq-{deployment.run}")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=other, AttributeNames=["QueueArn"])
    other_arn = attrs["Attributes"]["QueueArn"]
    sqs.create_queue(
        QueueName=deployment.table("okta_hooks", "buffer"),
        Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": other_arn, "maxReceiveCount": 5})
        },
    )
    main = deployment.table("okta_hooks", "buffer")
    planned = provision(deployment.backend(), [HOOKS], plan=True).changes
    done = provision(deployment.backend(), [HOOKS]).changes
    assert [c.action for c in done if c.name == main] == ["manual"]
    assert [c.action for c in planned if c.name == main] == ["manual"]
