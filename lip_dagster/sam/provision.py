"""``lip provision``: each source's own stack on AWS, created with boto3.

Per source, sharing nothing with any other source: a KMS key (rotation on, a key
policy that lets the SAM's role decrypt through S3) under the alias LIP_KMS_KEY
names; a bucket with SSE-KMS by default, public access blocked, a policy that denies
non-TLS access and lets the SAM's role read, a retention rule on the lake prefix and
``s3:ObjectCreated:*`` notifications to the SAM's queue; the state tables; the
buffer queue and its dead-letter queue (buffered sources); a placeholder for each
secret the source declares.

The rule for what it touches:

- what is missing is created or added (a statement appended to a policy, a
  notification added beside the others), and settings that only tighten security
  (rotation on, public access blocked) are switched on;
- a key LIP did not create (no ``lip:source`` tag) is never written to: a grant
  the SAM misses there is reported with the statement to add, and rotation left off
  with the command to turn it on;
- what exists with another value is reported with the manual step, never changed:
  another default key, a statement with LIP's Sid that was edited, a different
  retention, a key pending deletion, a key whose policy does not let LIP's own roles
  use it (who may use a key is its owner's decision);
- nothing is ever deleted or replaced. A retention rule is not added to a bucket
  that LIP did not create, since it would expire objects already there.

A second run finds everything in place and says so; ``plan=True`` reads only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from lip_dagster.config import AwsSettings
from lip_dagster.errors import ConfigError, LipError, StateError
from lip_dagster.resources import Backend
from lip_dagster.sam import grants
from lip_dagster.sam.checks import check_key_state, key_use_fix, key_use_ok, key_use_problem
from lip_dagster.sam.policy import statement_ids
from lip_dagster.sam.sources import DeclaredSource, declared_sources
from lip_dagster.sam.target import AwsCallError, SamTarget, aws_target, error_code, parse_arn
from lip_dagster.state.aws import DynamoCursorStore, DynamoDedupeStore, SqsBuffer

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "Change",
    "ProvisionError",
    "ProvisionReport",
    "provision",
]

log = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 365
ABORT_MULTIPART_DAYS = 7
# KMS allows 50 tags per key and returns up to 50 per page: more pages than this
# means the answer is not to be trusted
_MAX_TAG_PAGES = 5

Action = Literal["create", "update", "ok", "manual"]


class ProvisionError(LipError):
    """An AWS call of provisioning failed; what was done before it stands and is in
    ``report``. ``source`` is the source it stopped at: the sources after it were
    not looked at."""

    def __init__(self, message: str, report: ProvisionReport, source: str) -> None:
        super().__init__(message)
        self.report = report
        self.source = source


@dataclass(frozen=True)
class Change:
    """One resource's verdict: created (or to create), updated, already right, or
    drift a person must resolve (``manual`` says how)."""

    source: str
    kind: str
    name: str
    action: Action
    detail: str = ""
    manual: str | None = None


@dataclass
class ProvisionReport:
    plan: bool
    changes: list[Change] = field(default_factory=list)

    def count(self, action: Action, source: str | None = None) -> int:
        return sum(1 for c in self.changes if c.action == action and source in (None, c.source))

    @property
    def drift(self) -> list[Change]:
        return [c for c in self.changes if c.action == "manual"]

    @property
    def changed(self) -> bool:
        return any(c.action in ("create", "update") for c in self.changes)


def _check_settings(backend: Backend) -> None:
    settings = backend.settings
    aws = settings.aws
    assert aws is not None
    missing = [
        var
        for var, value in (
            ("LIP_SAM_ROLE_ARN", settings.sam.role_arn),
            ("LIP_SAM_QUEUE_ARN", settings.sam.queue_arn),
        )
        if not value
    ]
    if missing:
        raise ConfigError(
            f"set {' and '.join(missing)} before provisioning: every bucket and key grants "
            "the SAM's role and notifies the SAM's queue"
        )
    role = parse_arn(settings.sam.role_arn or "")
    if role is None or role["service"] != "iam":
        raise ConfigError(f"LIP_SAM_ROLE_ARN is not an IAM role ARN: {settings.sam.role_arn!r}")
    queue = parse_arn(settings.sam.queue_arn or "")
    if queue is None or queue["service"] != "sqs":
        raise ConfigError(f"LIP_SAM_QUEUE_ARN is not an SQS queue ARN: {settings.sam.queue_arn!r}")
    for var, template in (
        ("LIP_S3_BUCKET", aws.bucket_template),
        ("LIP_KMS_KEY", aws.kms_key_template),
    ):
        if "{source}" not in template:
            raise ConfigError(
                f"{var}={template!r} has no {{source}}: sources would share one "
                "resource; give each source its own (e.g. 'acme-lip-{source}')"
            )


def _check_distinct_buckets(aws: AwsSettings, sources: Mapping[str, DeclaredSource]) -> None:
    """Bucket names spell a source's '_' as '-', so 'okta_hooks' and 'okta-hooks' would
    share one bucket and one source could read the other's data."""
    owners: dict[str, str] = {}
    for name in sorted(sources):
        bucket = aws.bucket(name)
        if bucket in owners:
            raise ConfigError(
                f"sources {owners[bucket]!r} and {name!r} would share the bucket "
                f"{bucket!r} (bucket names spell '_' as '-'); rename one of them"
            )
        owners[bucket] = name


def provision(
    backend: Backend,
    sources: Sequence[DeclaredSource],
    *,
    plan: bool = False,
    retention_days: int = DEFAULT_RETENTION_DAYS,
) -> ProvisionReport:
    """Create what is missing in each source's stack (or, with ``plan``, only say
    what would be created or changed). Raises ``ConfigError`` before touching AWS
    when a setting makes a safe stack impossible, ``ProvisionError`` when an AWS call
    fails or a state store refuses what it finds (with the report of what was done
    up to then)."""
    if retention_days < 1:
        raise ConfigError(f"retention must be at least 1 day, not {retention_days}")
    report = ProvisionReport(plan=plan)
    if backend.settings.aws is None:
        return report
    _check_settings(backend)
    # against every declared source, not only those provisioned now
    _check_distinct_buckets(
        backend.settings.aws, {s.name: s for s in [*declared_sources(), *sources]}
    )
    for src in sources:
        target = aws_target(backend, src.name)
        assert target is not None
        stack = _Stack(backend, target, src, plan=plan, retention_days=retention_days)
        try:
            stack.run()
        except (AwsCallError, StateError) as err:  # StateError: a state store's ensure
            report.changes.extend(stack.changes)
            raise ProvisionError(f"source {src.name!r}: {err}", report, src.name) from err
        except (ClientError, BotoCoreError) as err:
            report.changes.extend(stack.changes)
            message = f"source {src.name!r}: {AwsCallError('an AWS call', err)}"
            raise ProvisionError(message, report, src.name) from err
        report.changes.extend(stack.changes)
    return report


def _apply(what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    log.info("%s", what)
    try:
        return fn(**kwargs)
    except (ClientError, BotoCoreError) as err:
        raise AwsCallError(what, err) from err


class _Stack:
    """One source's stack: inspect each resource, then create or fix what is safe."""

    def __init__(
        self,
        backend: Backend,
        target: SamTarget,
        src: DeclaredSource,
        *,
        plan: bool,
        retention_days: int,
    ) -> None:
        self.backend = backend
        self.t = target
        self.src = src
        self.plan = plan
        self.retention_days = retention_days
        self.changes: list[Change] = []
        self.key_arn: str | None = None
        self.key_usable = False

    @property
    def key_ready(self) -> bool:
        """Whether the source's key is usable by the time encryption and secrets need
        it: enabled now, or (in a plan) to be created under its alias. A key LIP may
        not create (LIP_KMS_KEY not an alias) stays missing in the run too."""
        return self.key_usable or (self.plan and self.key_arn is None and self.t.key_is_alias)

    def note(
        self, kind: str, name: str, action: Action, detail: str = "", manual: str | None = None
    ) -> None:
        self.changes.append(Change(self.src.name, kind, name, action, detail, manual))

    def run(self) -> None:
        self.key()
        self.bucket()
        self.tables()
        if self.src.buffered:
            self.queues()
        self.secrets()

    # ---------------------------------------------------------------------- KMS

    def key(self) -> None:
        t = self.t
        meta = t.key_metadata()
        if meta is None:
            if not t.key_is_alias:
                self.note(
                    "kms key",
                    t.key_ref,
                    "manual",
                    "does not exist",
                    "LIP creates keys only under an alias: create the key yourself, or set "
                    "LIP_KMS_KEY to an alias such as alias/lip-{source}",
                )
                return
            self.create_key()
            return
        self.key_arn = str(meta["Arn"])
        state = str(meta.get("KeyState"))
        if state != "Enabled":
            self.note(
                "kms key", t.key_ref, "manual", f"{self.key_arn} is {state}", check_key_state(t).fix
            )
            return
        self.key_usable = True
        self.note("kms key", t.key_ref, "ok", f"{self.key_arn} is Enabled")
        if t.key_rotation():
            self.note("kms rotation", t.key_ref, "ok", "on")
        elif not self.lip_key():
            # tightening, but still a write to a key its owner manages
            self.note(
                "kms rotation",
                t.key_ref,
                "manual",
                "automatic rotation is off, and the key is not LIP's (no "
                f"lip:source={self.src.name} tag): its settings are its owner's to change",
                f"aws kms enable-key-rotation --key-id {self.key_arn}",
            )
        else:
            if not self.plan:
                _apply(
                    f"enabling rotation of {self.key_arn}",
                    t.kms.enable_key_rotation,
                    KeyId=self.key_arn,
                )
            self.note("kms rotation", t.key_ref, "update", "turn automatic rotation on")
        self.key_policy()

    def create_key(self) -> None:
        t = self.t
        alias = t.key_ref[t.key_ref.index("alias/") :]
        policy = {"Version": "2012-10-17", "Statement": list(grants.key_statements(t).values())}
        detail = "symmetric, rotation on; key policy: the account administers it, the SAM's role "
        detail += "decrypts through S3"
        if self.plan:
            self.note("kms key", alias, "create", detail)
            self.note("kms alias", alias, "create", "names the new key")
            return
        meta = _apply(
            f"creating the KMS key of source {self.src.name!r}",
            t.kms.create_key,
            Description=f"LIP lake key of source {self.src.name}",
            KeyUsage="ENCRYPT_DECRYPT",
            KeySpec="SYMMETRIC_DEFAULT",
            Policy=json.dumps(policy),
            Tags=[{"TagKey": "lip:source", "TagValue": self.src.name}],
        )["KeyMetadata"]
        self.key_arn = str(meta["Arn"])
        _apply(
            f"enabling rotation of {self.key_arn}", t.kms.enable_key_rotation, KeyId=self.key_arn
        )
        _apply(
            f"creating alias {alias}",
            t.kms.create_alias,
            AliasName=alias,
            TargetKeyId=self.key_arn,
        )
        t._key_cache.clear()
        self.key_usable = True
        self.note("kms key", alias, "create", f"{self.key_arn}: {detail}")
        self.note("kms alias", alias, "create", f"-> {self.key_arn}")

    def key_policy(self) -> None:
        t = self.t
        assert self.key_arn is not None
        policy = t.key_policy()
        self.key_use(policy)
        if grants.key_decrypt(t, policy, self.key_arn).allowed:
            self.note("kms key policy", t.key_ref, "ok", "the SAM's role may decrypt through S3")
            return
        wanted = grants.key_statements(t)[grants.SAM_DECRYPT_SID]
        if grants.SAM_DECRYPT_SID in statement_ids(policy):
            self.note(
                "kms key policy",
                t.key_ref,
                "manual",
                f"statement {grants.SAM_DECRYPT_SID} was changed and no longer lets the SAM "
                "decrypt",
                f"replace statement {grants.SAM_DECRYPT_SID} of {self.key_arn}'s key policy "
                f"with {json.dumps(wanted)}",
            )
            return
        merged = dict(policy)
        merged["Statement"] = [*policy.get("Statement", []), wanted]
        if not grants.key_decrypt(t, merged, self.key_arn).allowed:
            self.note(
                "kms key policy",
                t.key_ref,
                "manual",
                "another statement denies the SAM's role kms:Decrypt",
                f"review the Deny statements of {self.key_arn}'s key policy",
            )
            return
        if not self.lip_key():
            self.note(
                "kms key policy",
                t.key_ref,
                "manual",
                "the SAM's role may not decrypt through S3, and the key is not LIP's (no "
                f"lip:source={self.src.name} tag): its policy is its owner's to change",
                f"add to the key policy of {self.key_arn}: {json.dumps(wanted)}",
            )
            return
        if not self.plan:
            _apply(
                f"adding {grants.SAM_DECRYPT_SID} to the key policy of {self.key_arn}",
                t.kms.put_key_policy,
                KeyId=self.key_arn,
                PolicyName="default",
                Policy=json.dumps(merged),
            )
        self.note(
            "kms key policy",
            t.key_ref,
            "update",
            f"add statement {grants.SAM_DECRYPT_SID} (the SAM's role decrypts through S3)",
        )

    def lip_key(self) -> bool:
        """Whether LIP created this key: it tags each key it creates with the source it
        is for. A key without that tag (a security team's, named by LIP_KMS_KEY) is
        never written to, and one whose tags cannot be read counts as not LIP's."""
        t = self.t
        marker: str | None = None
        for _ in range(_MAX_TAG_PAGES):
            kwargs: dict[str, Any] = {"KeyId": self.key_arn}
            if marker:
                kwargs["Marker"] = marker
            try:
                page = t.kms.list_resource_tags(**kwargs)
            except ClientError as err:
                if error_code(err) == "AccessDeniedException":
                    return False
                raise AwsCallError(f"reading the tags of {self.key_arn}", err) from err
            except BotoCoreError as err:
                raise AwsCallError(f"reading the tags of {self.key_arn}", err) from err
            if any(
                tag.get("TagKey") == "lip:source" and tag.get("TagValue") == self.src.name
                for tag in page.get("Tags", [])
            ):
                return True
            marker = page.get("NextMarker")
            if not page.get("Truncated") or not marker:
                return False
        return False

    def key_use(self, policy: dict[str, Any]) -> None:
        """Whether LIP's own roles may use the key. Never fixed here: which principals
        may use a key is its owner's decision (and a key LIP did not create is not
        LIP's to change), so a missing grant is a manual step with the statement."""
        t = self.t
        assert self.key_arn is not None
        use = grants.key_use(t, policy, self.key_arn)
        if use.allowed:
            self.note("kms key use", t.key_ref, "ok", key_use_ok(use, self.key_arn))
            return
        self.note(
            "kms key use",
            t.key_ref,
            "manual",
            key_use_problem(t, use, self.key_arn),
            key_use_fix(t, use, self.key_arn),
        )

    # ----------------------------------------------------------------------- S3

    def bucket(self) -> None:
        t = self.t
        state = t.bucket_state()
        if state == "forbidden":
            self.note(
                "s3 bucket",
                t.bucket,
                "manual",
                "the name is taken (bucket names are global) or LIP may not read it",
                "choose another LIP_S3_BUCKET, or grant LIP's role access to the bucket",
            )
            return
        created = state == "missing"
        if created:
            if self.plan:
                # what the run does to the new bucket, where it does not depend on
                # the bucket; the key and the SAM's queue are read like the run does
                self.note("s3 bucket", t.bucket, "create", f"in {t.region}, tagged lip:source")
                self.note("s3 public access block", t.bucket, "create", "all four settings on")
                if self.key_ready:
                    detail = "SSE-KMS with the source's key, bucket keys on"
                    self.note("s3 default encryption", t.bucket, "create", detail)
                else:
                    self._waits_for_key("s3 default encryption", t.bucket)
                detail = "deny non-TLS; the SAM's role lists and reads"
                self.note("s3 bucket policy", t.bucket, "create", detail)
                self.note("s3 lifecycle", t.bucket, "create", self._retention_detail())
                self.notifications(created)
                return
            self.create_bucket()
        self.public_access(created)
        self.encryption(created)
        self.bucket_policy(created)
        self.lifecycle(created)
        self.notifications(created)

    def create_bucket(self) -> None:
        t = self.t
        kwargs: dict[str, Any] = {"Bucket": t.bucket}
        if t.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": t.region}
        try:
            t.s3.create_bucket(**kwargs)
        except ClientError as err:
            if error_code(err) != "BucketAlreadyOwnedByYou":  # a concurrent run made it
                raise AwsCallError(f"creating bucket {t.bucket!r}", err) from err
        t.bucket_created(t.bucket)
        _apply(
            f"tagging bucket {t.bucket!r}",
            t.s3.put_bucket_tagging,
            Bucket=t.bucket,
            Tagging={"TagSet": [{"Key": "lip:source", "Value": self.src.name}]},
        )
        self.note("s3 bucket", t.bucket, "create", f"in {t.region}, tagged lip:source")

    def public_access(self, created: bool) -> None:
        t = self.t
        current = t.public_access_block() or {}
        flags = (
            "BlockPublicAcls",
            "IgnorePublicAcls",
            "BlockPublicPolicy",
            "RestrictPublicBuckets",
        )
        if all(current.get(f) for f in flags):
            self.note("s3 public access block", t.bucket, "ok", "all four settings on")
            return
        if not self.plan:
            _apply(
                f"blocking public access to {t.bucket!r}",
                t.s3.put_public_access_block,
                Bucket=t.bucket,
                PublicAccessBlockConfiguration={f: True for f in flags},
            )
        off = ", ".join(f for f in flags if not current.get(f))
        self.note(
            "s3 public access block",
            t.bucket,
            "create" if created else "update",
            "all four settings on" + ("" if created else f" (was off: {off})"),
        )

    def _waits_for_key(self, kind: str, name: str) -> None:
        self.note(
            kind,
            name,
            "manual",
            "waits for a usable KMS key",
            "resolve the KMS key first, then run `lip provision` again",
        )

    def _is_source_key(self, configured: str) -> bool:
        """Whether a bucket's default key is the source's key. In a plan whose key is
        still to be created, only its alias can name it."""
        if self.key_arn is not None:
            return self.t.key_arn(configured) == self.key_arn
        alias = self.t.key_ref[self.t.key_ref.index("alias/") :]
        return "alias/" in configured and configured[configured.index("alias/") :] == alias

    def encryption(self, created: bool) -> None:
        t = self.t
        if self.key_arn is None and not self.key_ready:
            self._waits_for_key("s3 default encryption", t.bucket)
            return
        # A plan whose key is still to be created reads the bucket too: the run creates
        # the key first, then finds what this finds (another key is a manual step).
        rules = t.bucket_encryption()
        default = next((r.get("ApplyServerSideEncryptionByDefault") for r in rules), None) or {}
        algorithm = default.get("SSEAlgorithm")
        configured = default.get("KMSMasterKeyID")
        ours = self.key_arn or "the new key"
        if algorithm in ("aws:kms", "aws:kms:dsse") and configured:
            if self._is_source_key(configured):
                self.note("s3 default encryption", t.bucket, "ok", f"SSE-KMS with {ours}")
            else:
                config = json.dumps(grants.encryption_config(self.key_arn or "<new key ARN>"))
                self.note(
                    "s3 default encryption",
                    t.bucket,
                    "manual",
                    f"SSE-KMS with another key ({configured})",
                    f"aws s3api put-bucket-encryption --bucket {t.bucket} "
                    f"--server-side-encryption-configuration '{config}', or point "
                    "LIP_KMS_KEY at that key if it was chosen on purpose",
                )
            return
        if self.key_arn is None:  # a plan: the run creates the key, then sets it
            was = "" if created else f" (was {algorithm or 'none'})"
            self.note("s3 default encryption", t.bucket, "update", f"SSE-KMS with {ours}{was}")
            return
        if not self.key_usable:
            self._waits_for_key("s3 default encryption", t.bucket)
            return
        # Not set, SSE-S3 (what S3 gives every bucket) or KMS with the AWS managed key:
        # switching new objects to the source's key only tightens access.
        if not self.plan:
            _apply(
                f"setting default encryption of {t.bucket!r}",
                t.s3.put_bucket_encryption,
                Bucket=t.bucket,
                ServerSideEncryptionConfiguration=grants.encryption_config(self.key_arn),
            )
        self.note(
            "s3 default encryption",
            t.bucket,
            "create" if created else "update",
            f"SSE-KMS with {self.key_arn}" + ("" if created else f" (was {algorithm or 'none'})"),
        )

    def bucket_policy(self, created: bool) -> None:
        t = self.t
        current = t.bucket_policy()
        policy = current or {"Version": "2012-10-17", "Statement": []}
        wanted = grants.bucket_statements(t)
        present = statement_ids(policy)
        needed = set(grants.read_problems(t, policy))
        if grants.tls_gaps(t, policy):
            needed.add(grants.TLS_SID)
        if not needed:
            self.note("s3 bucket policy", t.bucket, "ok", "denies non-TLS; the SAM's role reads")
            return
        edited = sorted(needed & present)
        for sid in edited:
            self.note(
                "s3 bucket policy",
                t.bucket,
                "manual",
                f"statement {sid} was changed and no longer does its job",
                f"replace statement {sid} of the policy of {t.bucket} with "
                f"{json.dumps(wanted[sid])}",
            )
        add = sorted(needed - present)
        if not add:
            return
        merged = dict(policy)
        merged["Statement"] = [*policy.get("Statement", []), *(wanted[s] for s in add)]
        blocked = set(grants.read_problems(t, merged)) & set(add)
        if grants.TLS_SID in add and grants.tls_gaps(t, merged):
            blocked.add(grants.TLS_SID)
        if blocked:
            self.note(
                "s3 bucket policy",
                t.bucket,
                "manual",
                "other statements defeat " + ", ".join(sorted(blocked)),
                f"review the Deny statements of the policy of {t.bucket}: "
                + "; ".join(grants.read_problems(t, merged).values()),
            )
            return
        if not self.plan:
            _apply(
                f"writing the policy of {t.bucket!r}",
                t.s3.put_bucket_policy,
                Bucket=t.bucket,
                Policy=json.dumps(merged),
            )
        self.note(
            "s3 bucket policy",
            t.bucket,
            "create" if current is None else "update",
            "add statements " + ", ".join(add),
        )

    def _retention_detail(self) -> str:
        return (
            f"objects under {self.t.lake_prefix} expire after {self.retention_days} days; "
            f"incomplete uploads are aborted after {ABORT_MULTIPART_DAYS}"
        )

    def lifecycle(self, created: bool) -> None:
        t = self.t
        rules = t.lifecycle_rules()
        ours = next((r for r in rules if r.get("ID") == grants.RETENTION_RULE_ID), None)
        rule = {
            "ID": grants.RETENTION_RULE_ID,
            "Status": "Enabled",
            "Filter": {"Prefix": t.lake_prefix},
            "Expiration": {"Days": self.retention_days},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_DAYS},
        }
        command = (
            f"aws s3api put-bucket-lifecycle-configuration --bucket {t.bucket} "
            f"--lifecycle-configuration '{json.dumps({'Rules': [*rules, rule]})}'"
        )
        if ours is not None:
            days = ours.get("Expiration", {}).get("Days")
            if days == self.retention_days and ours.get("Status") == "Enabled":
                self.note("s3 lifecycle", t.bucket, "ok", f"retention {days} days")
            else:
                self.note(
                    "s3 lifecycle",
                    t.bucket,
                    "manual",
                    f"rule {grants.RETENTION_RULE_ID} keeps {days} days "
                    f"({ours.get('Status')}), asked for {self.retention_days}",
                    "LIP never changes retention it did not just create: edit the rule by "
                    "hand, or pass --retention-days " + str(days),
                )
            return
        if not created:
            self.note(
                "s3 lifecycle",
                t.bucket,
                "manual",
                "no LIP retention rule on a bucket LIP did not create",
                "not added automatically because it would expire objects already there: " + command,
            )
            return
        if not self.plan:
            _apply(
                f"setting the retention rule of {t.bucket!r}",
                t.s3.put_bucket_lifecycle_configuration,
                Bucket=t.bucket,
                LifecycleConfiguration={"Rules": [*rules, rule]},
            )
        self.note("s3 lifecycle", t.bucket, "create", self._retention_detail())

    def notifications(self, created: bool) -> None:
        t = self.t
        queue = str(t.sam.queue_arn)
        # a plan for a bucket still to be created has no configuration to read
        current = {} if self.plan and created else t.notifications()
        configs = list(current.get("QueueConfigurations", []))
        if any(grants.notification_covers(c, queue, t.lake_prefix) for c in configs):
            self.note("s3 notifications", t.bucket, "ok", f"s3:ObjectCreated:* -> {queue}")
            return
        ours = grants.notification_config(t)
        if any(c.get("Id") == grants.NOTIFICATION_ID for c in configs):
            self.note(
                "s3 notifications",
                t.bucket,
                "manual",
                f"notification {grants.NOTIFICATION_ID} was changed",
                f"replace it with {json.dumps(ours)}",
            )
            return
        url = t.queue_url_of_arn(queue)
        if url is None:
            self.note(
                "s3 notifications",
                t.bucket,
                "manual",
                f"the SAM's queue {queue} does not exist",
                "create the SAM's queue (or fix LIP_SAM_QUEUE_ARN), then run `lip provision` again",
            )
            return
        try:
            queue_policy: dict[str, Any] | None = t.queue_policy(url)
        except AwsCallError as err:
            if err.code not in ("AccessDenied", "AccessDeniedException"):
                raise
            queue_policy = None  # another account's queue: S3 validates on the put below
        if queue_policy is not None and not grants.queue_send(t, queue_policy, queue).allowed:
            self.note(
                "s3 notifications",
                t.bucket,
                "manual",
                f"the policy of the SAM's queue does not let {t.bucket} send to it",
                f"add to the policy of {queue}: {json.dumps(grants.queue_statement(t, queue))}; "
                "then run `lip provision` again",
            )
            return
        if not self.plan:
            merged = {k: v for k, v in current.items() if k != "QueueConfigurations"}
            merged["QueueConfigurations"] = [*configs, ours]
            try:
                t.s3.put_bucket_notification_configuration(
                    Bucket=t.bucket, NotificationConfiguration=merged
                )
            except ClientError as err:
                self.note(
                    "s3 notifications",
                    t.bucket,
                    "manual",
                    f"S3 refused the notification: {AwsCallError('setting it', err)}",
                    "remove the overlap or grant the queue permission S3 names, then run "
                    "`lip provision` again",
                )
                return
        self.note(
            "s3 notifications",
            t.bucket,
            "create" if created else "update",
            f"s3:ObjectCreated:* under {t.lake_prefix or '/'} -> {queue}",
        )

    # -------------------------------------------------------------------- state

    def _table_exists(self, name: str) -> bool:
        try:
            self.t.dynamodb.describe_table(TableName=name)
        except ClientError as err:
            if error_code(err) == "ResourceNotFoundException":
                return False
            raise AwsCallError(f"describing DynamoDB table {name!r}", err) from err
        return True

    def _ttl_on(self, name: str) -> bool:
        ttl = _apply(
            f"reading the TTL of {name!r}", self.t.dynamodb.describe_time_to_live, TableName=name
        ).get("TimeToLiveDescription", {})
        return ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")

    def tables(self) -> None:
        cursors = self.backend.cursors
        dedupe = self.backend.dedupe
        assert isinstance(cursors, DynamoCursorStore) and isinstance(dedupe, DynamoDedupeStore)
        for store, what in ((cursors, "cursors"), (dedupe, "the commit log, TTL on expires_at")):
            name = store.table_name(self.src.name)
            exists = self._table_exists(name)
            ttl_off = exists and store is dedupe and not self._ttl_on(name)
            # a plan reads what the run would refuse (a table with another key
            # schema) or leave alone (TTL on another attribute), and says so
            drift = store.drift(self.src.name) if self.plan else store.ensure(self.src.name)
            for note in drift:
                self.note("dynamodb table", name, "manual", note, "fix the table by hand")
            if drift:
                continue
            if not exists:
                self.note("dynamodb table", name, "create", f"on demand: {what}")
            elif ttl_off:
                self.note("dynamodb table", name, "update", "turn TTL on expires_at on")
            else:
                self.note("dynamodb table", name, "ok", what)

    def _queue_url(self, name: str) -> str | None:
        try:
            return str(self.t.sqs.get_queue_url(QueueName=name)["QueueUrl"])
        except ClientError as err:
            if error_code(err) in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                return None
            raise AwsCallError(f"looking up SQS queue {name!r}", err) from err

    def queues(self) -> None:
        buffer = self.backend.buffer
        assert isinstance(buffer, SqsBuffer)
        main, dlq = buffer.queue_names(self.src.name)
        main_url, dlq_url = self._queue_url(main), self._queue_url(dlq)
        redrive_missing = False
        if main_url is not None:
            attrs = _apply(
                f"reading the redrive policy of {main!r}",
                self.t.sqs.get_queue_attributes,
                QueueUrl=main_url,
                AttributeNames=["RedrivePolicy"],
            ).get("Attributes", {})
            redrive_missing = not attrs.get("RedrivePolicy")
        drift = buffer.drift(self.src.name) if self.plan else buffer.ensure(self.src.name)
        for note in drift:
            self.note("sqs queue", main, "manual", note, "fix the redrive policy by hand")
        self.note(
            "sqs queue",
            dlq,
            "create" if dlq_url is None else "ok",
            "dead-letter queue, 14 days retention",
        )
        if main_url is None:
            self.note("sqs queue", main, "create", f"buffer, redrive to {dlq}")
        elif redrive_missing:
            self.note("sqs queue", main, "update", f"add the redrive policy to {dlq}")
        elif not drift:
            self.note("sqs queue", main, "ok", f"buffer, redrive to {dlq}")

    def secrets(self) -> None:
        t = self.t
        prefix = t.aws.secrets_prefix
        for name in self.src.secrets:
            secret_id = f"{prefix}{name}"
            try:
                found = t.secretsmanager.describe_secret(SecretId=secret_id)
            except ClientError as err:
                if error_code(err) != "ResourceNotFoundException":
                    raise AwsCallError(f"describing secret {secret_id!r}", err) from err
                found = None
            if found is not None:
                if found.get("DeletedDate"):
                    self.note(
                        "secret",
                        secret_id,
                        "manual",
                        "scheduled for deletion",
                        f"aws secretsmanager restore-secret --secret-id {secret_id}",
                    )
                else:
                    self.note("secret", secret_id, "ok", "exists (its value is left alone)")
                continue
            set_it = f"set it: aws secretsmanager put-secret-value --secret-id {secret_id}"
            if not self.key_ready:
                self._waits_for_key("secret", secret_id)
                continue
            if self.plan:
                self.note("secret", secret_id, "create", f"placeholder without a value; {set_it}")
                continue
            kwargs: dict[str, Any] = {
                "Name": secret_id,
                "Description": f"LIP source {self.src.name}: {name} (placeholder until set)",
                "KmsKeyId": self.key_arn,
                "Tags": [{"Key": "lip:source", "Value": self.src.name}],
            }
            _apply(
                f"creating secret placeholder {secret_id!r}",
                t.secretsmanager.create_secret,
                **kwargs,
            )
            self.note("secret", secret_id, "create", f"placeholder without a value; {set_it}")
