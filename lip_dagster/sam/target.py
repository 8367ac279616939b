"""What the SAM reads for one source on AWS, and how LIP reaches it.

``SamTarget`` names a source's resources (bucket, KMS key, state tables and queues,
the SAM's role, queue and index bucket) and caches the lookups the checks and the
provisioner share, so one evaluation makes each AWS call once. It is built from the
backend in one place (``aws_target``), which returns None for the embedded backend:
the checks that concern AWS resources then report that they do not apply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lip_dagster.config import AwsSettings, SamSettings, parse_arn
from lip_dagster.errors import LipError
from lip_dagster.lake.layout import validate_source_name
from lip_dagster.resources import AwsBackend, Backend
from lip_dagster.sam.policy import parse_policy

__all__ = [
    "AwsCallError",
    "SamTarget",
    "aws_target",
    "error_code",
    "parse_arn",
]

MISSING_KEY_CODES = frozenset({"NotFoundException"})
MISSING_BUCKET_CODES = frozenset({"404", "NoSuchBucket", "NotFound"})


class AwsCallError(LipError):
    """An AWS call of a check or of provisioning failed: checks report it as their
    failure, the provisioner turns it into a ``ProvisionError``."""

    def __init__(self, what: str, err: ClientError | BotoCoreError) -> None:
        self.what = what
        self.code = error_code(err) if isinstance(err, ClientError) else type(err).__name__
        if isinstance(err, ClientError):
            message = str(err.response.get("Error", {}).get("Message", "")).strip()
            detail = f"{self.code}: {message}" if message else self.code
        else:
            detail = f"{type(err).__name__}: {err}"
        super().__init__(f"{what} failed: {detail}")


def error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _call(what: str, fn: Any, **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except (ClientError, BotoCoreError) as err:
        raise AwsCallError(what, err) from err


@dataclass
class SamTarget:
    """One source's stack on AWS, as the SAM sees it."""

    backend: AwsBackend
    source: str

    # ----------------------------------------------------------------- names

    @property
    def aws(self) -> AwsSettings:
        assert self.backend.settings.aws is not None
        return self.backend.settings.aws

    @property
    def sam(self) -> SamSettings:
        return self.backend.settings.sam

    @property
    def region(self) -> str:
        return self.aws.region

    @property
    def bucket(self) -> str:
        return self.aws.bucket(self.source)

    @property
    def bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket}"

    @property
    def key_ref(self) -> str:
        """The key as configured: an alias, a key id or an ARN."""
        return self.aws.kms_key(self.source)

    @property
    def key_is_alias(self) -> bool:
        return self.key_ref.startswith("alias/") or ":alias/" in self.key_ref

    @property
    def lake_prefix(self) -> str:
        return self.aws.lake_prefix

    @property
    def quarantine_prefix(self) -> str:
        return self.aws.quarantine_prefix

    @property
    def source_lake_prefix(self) -> str:
        return f"{self.lake_prefix}source={self.source}/"

    def sample_object_arn(self) -> str:
        """An object ARN in the lake: what a SAM read must be allowed on."""
        return (
            f"{self.bucket_arn}/{self.source_lake_prefix}year=2026/month=01/day=01/hour=00/"
            "20260101T000000Z_00000000-0000-5000-8000-000000000000.ndjson.gz"
        )

    def sample_quarantine_arn(self) -> str:
        return f"{self.bucket_arn}/{self.quarantine_prefix}{self.source}/x.data"

    def s3_service(self) -> str:
        """The ``kms:ViaService`` value of KMS calls S3 makes for a reader."""
        return self.via_service("s3")

    def via_service(self, service: str) -> str:
        """The ``kms:ViaService`` value of KMS calls ``service`` (``s3``,
        ``secretsmanager``) makes in this region on a caller's behalf."""
        return f"{service}.{self.region}.amazonaws.com"

    # --------------------------------------------------------------- clients

    @cached_property
    def s3(self) -> Any:
        return self.backend.client("s3")

    @cached_property
    def kms(self) -> Any:
        return self.backend.client("kms")

    @cached_property
    def sqs(self) -> Any:
        return self.backend.client("sqs")

    @cached_property
    def iam(self) -> Any:
        return self.backend.client("iam")

    @cached_property
    def dynamodb(self) -> Any:
        return self.backend.client("dynamodb")

    @cached_property
    def secretsmanager(self) -> Any:
        return self.backend.client("secretsmanager")

    @cached_property
    def _caller(self) -> dict[str, Any]:
        sts = self.backend.client("sts")
        return dict(_call("reading the AWS account id", sts.get_caller_identity))

    @property
    def account(self) -> str:
        return str(self._caller["Account"])

    @property
    def caller_role_arn(self) -> str | None:
        """The IAM role LIP runs as, when it runs as one (a run task, a sensor): its
        sessions sign as ``arn:aws:sts::<account>:assumed-role/<role>/<session>``.
        None for a user or another kind of principal (an administrator's workstation).
        The session ARN carries no role path, so a role with a path is named without it."""
        parts = str(self._caller.get("Arn", "")).split(":", 5)
        if len(parts) < 6 or parts[2] != "sts" or not parts[5].startswith("assumed-role/"):
            return None
        role = parts[5].split("/")[1]
        return f"arn:{parts[1]}:iam::{parts[4]}:role/{role}"

    # ------------------------------------------------------------------- KMS

    def key_metadata(self, key_id: str | None = None) -> dict[str, Any] | None:
        """``DescribeKey`` of the source's key (or another id), None if it does not
        exist. Cached per id: the checks ask about the same keys many times."""
        key_id = key_id or self.key_ref
        cache = self._key_cache
        if key_id not in cache:
            try:
                cache[key_id] = dict(self.kms.describe_key(KeyId=key_id)["KeyMetadata"])
            except ClientError as err:
                if error_code(err) not in MISSING_KEY_CODES:
                    raise AwsCallError(f"describing KMS key {key_id!r}", err) from err
                cache[key_id] = None
            except BotoCoreError as err:
                raise AwsCallError(f"describing KMS key {key_id!r}", err) from err
        return cache[key_id]

    @cached_property
    def _key_cache(self) -> dict[str, dict[str, Any] | None]:
        return {}

    def key_arn(self, key_id: str | None = None) -> str | None:
        meta = self.key_metadata(key_id)
        return str(meta["Arn"]) if meta else None

    def key_policy(self) -> dict[str, Any]:
        arn = self.key_arn()
        assert arn is not None
        raw = _call(
            f"reading the key policy of {arn}",
            self.kms.get_key_policy,
            KeyId=arn,
            PolicyName="default",
        )["Policy"]
        return parse_policy(raw)

    def key_rotation(self) -> bool:
        arn = self.key_arn()
        resp = _call(
            f"reading the rotation status of {arn}", self.kms.get_key_rotation_status, KeyId=arn
        )
        return bool(resp.get("KeyRotationEnabled"))

    # -------------------------------------------------------------------- S3

    def bucket_state(self, bucket: str | None = None) -> str:
        """``exists``, ``missing``, or ``forbidden`` (it exists, in an account whose
        bucket LIP may not read: bucket names are global). Cached: every bucket check
        asks first."""
        bucket = bucket or self.bucket
        if bucket not in self._bucket_cache:
            self._bucket_cache[bucket] = self._head_bucket(bucket)
        return self._bucket_cache[bucket]

    def bucket_created(self, bucket: str) -> None:
        self._bucket_cache[bucket] = "exists"

    @cached_property
    def _bucket_cache(self) -> dict[str, str]:
        return {}

    def _head_bucket(self, bucket: str) -> str:
        try:
            self.s3.head_bucket(Bucket=bucket)
        except ClientError as err:
            code = error_code(err)
            if code in MISSING_BUCKET_CODES:
                return "missing"
            if code in ("403", "AccessDenied", "Forbidden"):
                return "forbidden"
            raise AwsCallError(f"looking up bucket {bucket!r}", err) from err
        except BotoCoreError as err:
            raise AwsCallError(f"looking up bucket {bucket!r}", err) from err
        return "exists"

    def _optional(self, what: str, missing: set[str], fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except ClientError as err:
            if error_code(err) in missing:
                return None
            raise AwsCallError(what, err) from err
        except BotoCoreError as err:
            raise AwsCallError(what, err) from err

    def bucket_policy(self, bucket: str | None = None) -> dict[str, Any] | None:
        bucket = bucket or self.bucket
        resp = self._optional(
            f"reading the policy of bucket {bucket!r}",
            {"NoSuchBucketPolicy"},
            self.s3.get_bucket_policy,
            Bucket=bucket,
        )
        return None if resp is None else parse_policy(resp["Policy"])

    def bucket_encryption(self) -> list[dict[str, Any]]:
        resp = self._optional(
            f"reading the default encryption of bucket {self.bucket!r}",
            {"ServerSideEncryptionConfigurationNotFoundError"},
            self.s3.get_bucket_encryption,
            Bucket=self.bucket,
        )
        if resp is None:
            return []
        return list(resp["ServerSideEncryptionConfiguration"].get("Rules", []))

    def public_access_block(self) -> dict[str, bool] | None:
        resp = self._optional(
            f"reading the public access block of bucket {self.bucket!r}",
            {"NoSuchPublicAccessBlockConfiguration"},
            self.s3.get_public_access_block,
            Bucket=self.bucket,
        )
        return None if resp is None else dict(resp["PublicAccessBlockConfiguration"])

    def notifications(self) -> dict[str, Any]:
        resp = _call(
            f"reading the event notifications of bucket {self.bucket!r}",
            self.s3.get_bucket_notification_configuration,
            Bucket=self.bucket,
        )
        return {k: v for k, v in resp.items() if k != "ResponseMetadata"}

    def lifecycle_rules(self) -> list[dict[str, Any]]:
        resp = self._optional(
            f"reading the lifecycle rules of bucket {self.bucket!r}",
            {"NoSuchLifecycleConfiguration"},
            self.s3.get_bucket_lifecycle_configuration,
            Bucket=self.bucket,
        )
        return [] if resp is None else list(resp.get("Rules", []))

    # ------------------------------------------------------------------- SQS

    def queue_url_of_arn(self, arn: str) -> str | None:
        """The URL of a queue given its ARN; None if it does not exist."""
        parts = parse_arn(arn)
        assert parts is not None
        resp = self._optional(
            f"looking up SQS queue {arn}",
            {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"},
            self.sqs.get_queue_url,
            QueueName=parts["resource"],
            QueueOwnerAWSAccountId=parts["account"],
        )
        return None if resp is None else str(resp["QueueUrl"])

    def queue_policy(self, url: str) -> dict[str, Any]:
        attrs = _call(
            f"reading the policy of SQS queue {url}",
            self.sqs.get_queue_attributes,
            QueueUrl=url,
            AttributeNames=["Policy"],
        ).get("Attributes", {})
        return parse_policy(attrs.get("Policy"))

    # ------------------------------------------------------------------- IAM

    def role_identity_policies(self, role_arn: str) -> list[dict[str, Any]] | None:
        """The inline and attached policies of a role in this account; None when
        the role lives in another account or IAM cannot be read from here."""
        parts = parse_arn(role_arn)
        if parts is None or parts["account"] != self.account:
            return None
        name = parts["resource"].rsplit("/", 1)[-1]
        try:
            docs: list[dict[str, Any]] = []
            for policy_name in self.iam.list_role_policies(RoleName=name)["PolicyNames"]:
                doc = self.iam.get_role_policy(RoleName=name, PolicyName=policy_name)
                docs.append(parse_policy(_policy_doc(doc["PolicyDocument"])))
            attached = self.iam.list_attached_role_policies(RoleName=name)
            for pol in attached["AttachedPolicies"]:
                meta = self.iam.get_policy(PolicyArn=pol["PolicyArn"])["Policy"]
                version = self.iam.get_policy_version(
                    PolicyArn=pol["PolicyArn"], VersionId=meta["DefaultVersionId"]
                )["PolicyVersion"]
                docs.append(parse_policy(_policy_doc(version["Document"])))
        except (ClientError, BotoCoreError):
            return None
        return docs


def _policy_doc(doc: Any) -> Any:
    """IAM returns documents as dicts (boto3 decodes them) or URL-encoded JSON."""
    if isinstance(doc, str):
        from urllib.parse import unquote

        return json.loads(unquote(doc))
    return doc


def aws_target(backend: Backend, source: str) -> SamTarget | None:
    """The source's AWS stack, or None on the embedded backend (nothing to check)."""
    validate_source_name(source)
    if not isinstance(backend, AwsBackend):
        return None
    return SamTarget(backend, source)
