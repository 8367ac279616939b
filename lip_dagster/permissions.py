"""What each LIP process asks of AWS: every boto3 operation the package calls, the
IAM action AWS checks for it, on which resource, and which processes make the call.

The deployment grants each process a role (``deploy/ecs/lip-dagster.cfn.yaml``):

    run        a Dagster run (an ECS task of the run task definition): lands events,
               drains buffers, replays dead letters, evaluates the asset checks
               (the SAM checks read bucket, key, queue and role policies)
    sensors    the code server evaluating sensors: S3 arrivals (vendor bucket
               listing or notifications, the listing cursor, quarantine), webhook
               buffer depths, and the alert sensor (buffer depths, notifier secrets)
    receiver   the webhook receiver on Lambda: reads its webhook secrets, looks ids
               up in the commit log, appends to buffers, marks ids accepted
    serve      the same receiver as a server (``lip webhook serve``: the ``receiver``
               image on ECS or Kubernetes), which also looks each source's tables up
               when it starts; the template has no role for it (docs/deployment.md)
    provision  ``lip provision``, run once by an administrator: creates what the
               others only use (no deployed role may do these)

A permission missing from a role is a feature that fails in production with
AccessDenied; one a role has and no row here asks for is more than the code needs.
``lip_dagster_tests/deploy/test_permissions.py`` holds both the code and the
template to this table: it scans the package for boto3 calls (a new one fails until
it has a row here) and evaluates each role's policy against every row.

Resources are named, not spelled: the test builds each name's ARN from the settings
the way the code does (bucket and key per source, ``{prefix}{source}-cursor``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["PERMISSIONS", "PROCESSES", "RESOURCES", "Permission", "Process"]

Process = Literal["run", "sensors", "receiver", "serve", "provision"]
PROCESSES: tuple[Process, ...] = ("run", "sensors", "receiver", "serve", "provision")

RESOURCES: dict[str, str] = {
    "account": "no particular resource (IAM resource *)",
    "lake-bucket": "a source's bucket: its configuration",
    "lake-listing": "a source's bucket, listed under the lake prefix",
    "lake-object": "an object under the lake prefix",
    "quarantine-listing": "a source's bucket, listed under the quarantine prefix",
    "quarantine-object": "an object under the quarantine prefix",
    "source-key": "a source's KMS key (its alias matches LIP_KMS_KEY)",
    "cursor-table": "DynamoDB {prefix}{source}-cursor",
    "dedupe-table": "DynamoDB {prefix}{source}-dedupe (the commit log)",
    "buffer-queue": "SQS {prefix}{source}-buffer",
    "dead-letter-queue": "SQS {prefix}{source}-dlq",
    "vendor-bucket": "a bucket a vendor writes to (S3 sources)",
    "vendor-object": "an object in it",
    "vendor-queue": "the queue its ObjectCreated notifications go to",
    "vendor-key": "a KMS key the vendor encrypts with",
    "vendor-secret": "a source's credential in Secrets Manager",
    "webhook-secret": "a webhook source's auth.secret in Secrets Manager",
    "alert-secret": "an alert notifier's secret in Secrets Manager",
    "sam-queue": "LIP_SAM_QUEUE_ARN",
    "sam-role": "LIP_SAM_ROLE_ARN",
    "sam-index-bucket": "LIP_SAM_INDEX_BUCKET",
    "iam-policy": "a managed policy attached to the SAM's role",
}


@dataclass(frozen=True)
class Permission:
    """One thing a boto3 call needs. ``via``: the AWS service that calls KMS on the
    caller's behalf (``kms:ViaService``), for the KMS actions S3, SQS and Secrets
    Manager make for it; None for a direct call. ``action`` is empty for a call AWS
    does not authorize (``sts:GetCallerIdentity``)."""

    operation: str
    action: str
    resource: str
    by: tuple[Process, ...]
    via: str | None = None


def _p(operation: str, action: str, resource: str, by: str, via: str | None = None) -> Permission:
    """A row; ``by`` names its processes, space-separated ("" for none)."""
    processes = tuple(p for p in PROCESSES if p in by.split())
    if len(processes) != len(by.split()):
        raise ValueError(f"not LIP processes: {by!r}")
    return Permission(operation, action, resource, processes, via)


PERMISSIONS: tuple[Permission, ...] = (
    # ---- the lake (lake/backends.py: S3Lake) and its source's key
    _p("put_object", "s3:PutObject", "lake-object", "run"),
    # SSE-KMS: S3 asks KMS for a data key, and AWS documents Decrypt beside it
    _p("put_object", "kms:GenerateDataKey", "source-key", "run sensors", via="s3"),
    _p("put_object", "kms:Decrypt", "source-key", "run sensors", via="s3"),
    _p("head_object", "s3:GetObject", "lake-object", "run"),
    # without ListBucket a missing object answers 403, not 404: exists() would raise
    _p("head_object", "s3:ListBucket", "lake-bucket", "run"),
    _p("get_object", "s3:GetObject", "lake-object", "run"),
    _p("get_object", "kms:Decrypt", "source-key", "run", via="s3"),
    _p("list_objects_v2", "s3:ListBucket", "lake-listing", "run"),
    # ---- quarantine (S3Quarantine): runs, and S3 sources' sensors (bad notifications,
    # objects given up); the sensors count it to turn the quarantine check red
    _p("put_object", "s3:PutObject", "quarantine-object", "run sensors"),
    _p("list_objects_v2", "s3:ListBucket", "quarantine-listing", "run sensors"),
    # ---- vendor buckets and notification queues (s3stream/objects.py)
    _p("list_objects_v2", "s3:ListBucket", "vendor-bucket", "run sensors"),
    _p("head_object", "s3:GetObject", "vendor-object", "run"),
    _p("head_object", "s3:ListBucket", "vendor-bucket", "run"),
    _p("get_object", "s3:GetObject", "vendor-object", "run"),
    _p("get_object", "kms:Decrypt", "vendor-key", "run", via="s3"),
    _p("receive_message", "sqs:ReceiveMessage", "vendor-queue", "sensors"),
    _p("receive_message", "kms:Decrypt", "vendor-key", "sensors", via="sqs"),
    _p("delete_message_batch", "sqs:DeleteMessage", "vendor-queue", "sensors"),
    _p("change_message_visibility_batch", "sqs:ChangeMessageVisibility", "vendor-queue", "sensors"),
    # ---- state tables (state/aws.py): every source's run and S3 sensor looks its
    # tables up (Backend.ensure_source), as `lip webhook serve` does when it starts;
    # creating them is provisioning
    _p("describe_table", "dynamodb:DescribeTable", "cursor-table", "run sensors serve provision"),
    _p("describe_table", "dynamodb:DescribeTable", "dedupe-table", "run sensors serve provision"),
    _p(
        "describe_time_to_live",
        "dynamodb:DescribeTimeToLive",
        "dedupe-table",
        "run sensors serve provision",
    ),
    _p("create_table", "dynamodb:CreateTable", "cursor-table", "provision"),
    _p("create_table", "dynamodb:CreateTable", "dedupe-table", "provision"),
    _p("create_table", "dynamodb:TagResource", "dedupe-table", "provision"),
    _p("update_time_to_live", "dynamodb:UpdateTimeToLive", "dedupe-table", "provision"),
    # cursors: polling runs, and S3 sources' listing cursor (runs and sensors)
    _p("get_item", "dynamodb:GetItem", "cursor-table", "run sensors"),
    _p("put_item", "dynamodb:PutItem", "cursor-table", "run sensors"),
    _p("update_item", "dynamodb:UpdateItem", "cursor-table", "run sensors"),
    # the commit log: the receiver looks ids up and marks them accepted; the writer
    # claims, reclaims and marks them landed
    _p("batch_get_item", "dynamodb:BatchGetItem", "dedupe-table", "run receiver serve"),
    _p("put_item", "dynamodb:PutItem", "dedupe-table", "receiver serve"),
    _p("update_item", "dynamodb:UpdateItem", "dedupe-table", "run"),
    _p("batch_write_item", "dynamodb:BatchWriteItem", "dedupe-table", "run"),
    # ---- buffers (state/aws.py: SqsBuffer): the receiver only appends; a drain
    # receives and deletes; depth() reads both queues (sensors, checks, alerts); a
    # replay moves dead letters back
    _p("get_queue_url", "sqs:GetQueueUrl", "buffer-queue", "run sensors receiver serve provision"),
    _p("get_queue_url", "sqs:GetQueueUrl", "dead-letter-queue", "run sensors provision"),
    _p("send_message_batch", "sqs:SendMessage", "buffer-queue", "run receiver serve"),
    _p("get_queue_attributes", "sqs:GetQueueAttributes", "buffer-queue", "run sensors provision"),
    _p(
        "get_queue_attributes",
        "sqs:GetQueueAttributes",
        "dead-letter-queue",
        "run sensors provision",
    ),
    _p("receive_message", "sqs:ReceiveMessage", "buffer-queue", "run"),
    _p("receive_message", "sqs:ReceiveMessage", "dead-letter-queue", "run"),
    _p("delete_message_batch", "sqs:DeleteMessage", "buffer-queue", "run"),
    _p("delete_message_batch", "sqs:DeleteMessage", "dead-letter-queue", "run"),
    # SqsBuffer.dead_letters (a peek for tests and tools; no deployed process calls it)
    _p("change_message_visibility_batch", "sqs:ChangeMessageVisibility", "dead-letter-queue", ""),
    _p("create_queue", "sqs:CreateQueue", "buffer-queue", "provision"),
    _p("create_queue", "sqs:CreateQueue", "dead-letter-queue", "provision"),
    _p("create_queue", "sqs:TagQueue", "buffer-queue", "provision"),
    _p("set_queue_attributes", "sqs:SetQueueAttributes", "buffer-queue", "provision"),
    # ---- secrets (state/aws.py: AwsSecretsManagerStore); `lip provision` creates each
    # source's under the source's key, so reading one decrypts with it
    _p("get_secret_value", "secretsmanager:GetSecretValue", "vendor-secret", "run"),
    _p("get_secret_value", "secretsmanager:GetSecretValue", "webhook-secret", "receiver serve"),
    _p("get_secret_value", "secretsmanager:GetSecretValue", "alert-secret", "sensors"),
    _p("get_secret_value", "kms:Decrypt", "source-key", "run receiver serve", via="secretsmanager"),
    _p("describe_secret", "secretsmanager:DescribeSecret", "vendor-secret", "provision"),
    _p("create_secret", "secretsmanager:CreateSecret", "vendor-secret", "provision"),
    # ---- the SAM checks (sam/target.py), evaluated in runs; `lip provision` reads
    # the same before it changes anything
    _p("get_caller_identity", "", "account", "run provision"),
    _p("head_bucket", "s3:ListBucket", "lake-bucket", "run provision"),
    _p("head_bucket", "s3:ListBucket", "sam-index-bucket", "run"),
    _p("get_bucket_policy", "s3:GetBucketPolicy", "lake-bucket", "run provision"),
    _p("get_bucket_policy", "s3:GetBucketPolicy", "sam-index-bucket", "run"),
    _p("get_bucket_encryption", "s3:GetEncryptionConfiguration", "lake-bucket", "run provision"),
    _p("get_public_access_block", "s3:GetBucketPublicAccessBlock", "lake-bucket", "run provision"),
    _p(
        "get_bucket_notification_configuration",
        "s3:GetBucketNotification",
        "lake-bucket",
        "run provision",
    ),
    _p(
        "get_bucket_lifecycle_configuration",
        "s3:GetLifecycleConfiguration",
        "lake-bucket",
        "run provision",
    ),
    _p("describe_key", "kms:DescribeKey", "source-key", "run provision"),
    _p("get_key_policy", "kms:GetKeyPolicy", "source-key", "run provision"),
    _p("get_key_rotation_status", "kms:GetKeyRotationStatus", "source-key", "run provision"),
    _p("get_queue_url", "sqs:GetQueueUrl", "sam-queue", "run provision"),
    _p("get_queue_attributes", "sqs:GetQueueAttributes", "sam-queue", "run provision"),
    _p("list_role_policies", "iam:ListRolePolicies", "sam-role", "run"),
    _p("get_role_policy", "iam:GetRolePolicy", "sam-role", "run"),
    _p("list_attached_role_policies", "iam:ListAttachedRolePolicies", "sam-role", "run"),
    _p("get_policy", "iam:GetPolicy", "iam-policy", "run"),
    _p("get_policy_version", "iam:GetPolicyVersion", "iam-policy", "run"),
    # ---- provisioning only (sam/provision.py)
    _p("create_key", "kms:CreateKey", "account", "provision"),
    _p("enable_key_rotation", "kms:EnableKeyRotation", "source-key", "provision"),
    _p("create_alias", "kms:CreateAlias", "source-key", "provision"),
    _p("list_resource_tags", "kms:ListResourceTags", "source-key", "provision"),
    _p("put_key_policy", "kms:PutKeyPolicy", "source-key", "provision"),
    _p("create_bucket", "s3:CreateBucket", "lake-bucket", "provision"),
    _p("put_bucket_tagging", "s3:PutBucketTagging", "lake-bucket", "provision"),
    _p("put_public_access_block", "s3:PutBucketPublicAccessBlock", "lake-bucket", "provision"),
    _p("put_bucket_encryption", "s3:PutEncryptionConfiguration", "lake-bucket", "provision"),
    _p("put_bucket_policy", "s3:PutBucketPolicy", "lake-bucket", "provision"),
    _p(
        "put_bucket_lifecycle_configuration",
        "s3:PutLifecycleConfiguration",
        "lake-bucket",
        "provision",
    ),
    _p(
        "put_bucket_notification_configuration",
        "s3:PutBucketNotification",
        "lake-bucket",
        "provision",
    ),
)
