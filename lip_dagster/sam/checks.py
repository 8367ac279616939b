"""The SAM contract (DESIGN §6) as named checks, one per requirement, runnable inside
Dagster (asset checks) and outside it (``lip check``).

Every failure says what is wrong and how to fix it. Checks on AWS resources read the
real configuration; on the embedded backend they report that they do not apply.
Content checks read the objects of one partition. A failed AWS read is a failed
check naming the call, never an exception: one unreadable setting must not hide the
other checks' results.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from lip_dagster.errors import LakeReadError, LipError
from lip_dagster.lake.backends import LakeBackend
from lip_dagster.resources import Backend
from lip_dagster.sam import grants
from lip_dagster.sam.content import ContentReport, verify_partition
from lip_dagster.sam.policy import Request, evaluate
from lip_dagster.sam.sources import buffered
from lip_dagster.sam.target import AwsCallError, SamTarget, aws_target, parse_arn

__all__ = [
    "CHECKS",
    "CONTENT_CHECKS",
    "RESOURCE_CHECKS",
    "CheckOutcome",
    "CheckSpec",
    "content_outcomes",
    "resource_outcomes",
    "run_checks",
    "spec",
]

Scope = Literal["resource", "content"]


@dataclass(frozen=True)
class CheckSpec:
    """A named check: DESIGN §6 item, whether a failure blocks the materialization
    (the SAM cannot read what lands), and what it verifies."""

    name: str
    item: int
    scope: Scope
    blocking: bool
    description: str


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    source: str
    passed: bool
    summary: str
    fix: str | None = None
    applies: bool = True
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if not self.applies:
            return "n/a"
        return "pass" if self.passed else "FAIL"


CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec(
        "sam_bucket_encryption",
        1,
        "resource",
        False,
        "the bucket's default encryption is SSE-KMS with the source's key",
    ),
    CheckSpec(
        "sam_object_encryption",
        1,
        "content",
        True,
        "every object of the partition is encrypted with the source's key",
    ),
    CheckSpec(
        "sam_kms_key_state",
        2,
        "resource",
        True,
        "the source's KMS key is Enabled (not PendingDeletion or Disabled)",
    ),
    CheckSpec(
        "sam_kms_key_rotation",
        2,
        "resource",
        False,
        "automatic rotation is on for the source's KMS key",
    ),
    CheckSpec(
        "sam_kms_key_policy",
        2,
        "resource",
        True,
        "the key policy lets the SAM's role decrypt through S3",
    ),
    # Not blocking: if LIP's roles truly cannot use the key, the run's first write
    # fails anyway; this says why, early. A key policy naming the deployed roles
    # instead of the account is confirmed once LIP_ROLE_ARNS lists them.
    CheckSpec(
        "lip_kms_key_use",
        2,
        "resource",
        False,
        "the key policy lets LIP's own roles use the key for what they write and read",
    ),
    CheckSpec(
        "sam_bucket_read_grant",
        3,
        "resource",
        True,
        "the bucket policy lets the SAM's role list the bucket and read lake objects",
    ),
    CheckSpec(
        "sam_bucket_tls_only",
        3,
        "resource",
        False,
        "the bucket policy denies every request not made over TLS",
    ),
    CheckSpec(
        "sam_public_access_block",
        3,
        "resource",
        False,
        "all four S3 public access block settings are on for the bucket",
    ),
    CheckSpec(
        "sam_notifications",
        4,
        "resource",
        False,
        "s3:ObjectCreated:* under the lake prefix goes to the SAM's queue, whose "
        "policy lets the bucket send",
    ),
    CheckSpec(
        "sam_index_bucket",
        5,
        "resource",
        False,
        "the SAM's index bucket exists and its role may write to it",
    ),
    CheckSpec(
        "lake_content",
        6,
        "content",
        True,
        "objects match the layout, are gzip, every line is JSON with a valid _lip, no id repeats",
    ),
    CheckSpec(
        "sam_dead_letters",
        7,
        "resource",
        False,
        "the source's dead-letter queue is empty (buffered sources)",
    ),
    CheckSpec("sam_quarantine", 7, "resource", False, "nothing of the source sits in quarantine"),
)
RESOURCE_CHECKS = tuple(c for c in CHECKS if c.scope == "resource")
CONTENT_CHECKS = tuple(c for c in CHECKS if c.scope == "content")
_BY_NAME = {c.name: c for c in CHECKS}


def spec(name: str) -> CheckSpec:
    return _BY_NAME[name]


def _ok(name: str, source: str, summary: str, **metadata: Any) -> CheckOutcome:
    return CheckOutcome(name, source, True, summary, metadata=metadata)


def _fail(name: str, source: str, summary: str, fix: str, **metadata: Any) -> CheckOutcome:
    return CheckOutcome(name, source, False, summary, fix, metadata=metadata)


def _not_applicable(name: str, source: str, why: str) -> CheckOutcome:
    return CheckOutcome(name, source, True, why, applies=False)


# ----------------------------------------------------------------- resource checks


def _needs_role(t: SamTarget, name: str) -> CheckOutcome | None:
    if not t.sam.role_arn:
        return _fail(
            name,
            t.source,
            "LIP_SAM_ROLE_ARN is not set, so no grant can be checked",
            "set LIP_SAM_ROLE_ARN to the IAM role ARN the SAM reads with",
        )
    return None


def _key_missing(t: SamTarget, name: str) -> CheckOutcome | None:
    if t.key_metadata() is None:
        return _fail(
            name,
            t.source,
            f"KMS key {t.key_ref} does not exist",
            "run `lip provision` to create it, or point LIP_KMS_KEY at the source's key",
        )
    return None


def _bucket_missing(t: SamTarget, name: str) -> CheckOutcome | None:
    state = t.bucket_state()
    if state == "missing":
        return _fail(
            name,
            t.source,
            f"bucket {t.bucket} does not exist",
            "run `lip provision` to create it, or fix LIP_S3_BUCKET",
        )
    if state == "forbidden":
        return _fail(
            name,
            t.source,
            f"bucket {t.bucket} exists but LIP may not read it (another account "
            "owns the name, or LIP's role lacks s3:ListBucket)",
            "choose another LIP_S3_BUCKET, or grant LIP's role access to it",
        )
    return None


def check_bucket_encryption(t: SamTarget) -> CheckOutcome:
    name = "sam_bucket_encryption"
    early = _bucket_missing(t, name) or _key_missing(t, name)
    if early:
        return early
    want = str(t.key_arn())
    rules = t.bucket_encryption()
    default = next((r.get("ApplyServerSideEncryptionByDefault") for r in rules), None) or {}
    algorithm = default.get("SSEAlgorithm")
    configured = default.get("KMSMasterKeyID")
    command = (
        f"aws s3api put-bucket-encryption --bucket {t.bucket} "
        f"--server-side-encryption-configuration '{json.dumps(grants.encryption_config(want))}'"
    )
    if algorithm not in ("aws:kms", "aws:kms:dsse"):
        return _fail(
            name,
            t.source,
            f"bucket {t.bucket} default encryption is {algorithm or 'not set'}, "
            "not SSE-KMS with the source's key",
            f"run `lip provision` (sets it), or {command}",
            algorithm=algorithm or "none",
        )
    if not configured or t.key_arn(configured) != want:
        return _fail(
            name,
            t.source,
            f"bucket {t.bucket} encrypts by default with "
            f"{configured or 'the AWS managed key'}, not the source's key {want}",
            f"{command} (`lip provision` leaves another key in place: if it was chosen on "
            "purpose, point LIP_KMS_KEY at it instead)",
            configured_key=configured or "aws/s3",
        )
    return _ok(name, t.source, f"SSE-KMS with {want}", key=want)


def check_key_state(t: SamTarget) -> CheckOutcome:
    name = "sam_kms_key_state"
    early = _key_missing(t, name)
    if early:
        return early
    meta = t.key_metadata() or {}
    state = str(meta.get("KeyState"))
    arn = meta["Arn"]
    if state == "Enabled":
        return _ok(name, t.source, f"{arn} is Enabled", key=arn, key_state=state)
    if state == "PendingDeletion":
        fix = (
            f"aws kms cancel-key-deletion --key-id {arn} && aws kms enable-key --key-id "
            f"{arn} (before {_when(meta.get('DeletionDate'))}: after it, every object "
            "encrypted with it is unreadable for good)"
        )
    elif state == "Disabled":
        fix = f"aws kms enable-key --key-id {arn}"
    else:
        fix = f"open {arn} in the KMS console and make it usable again"
    return _fail(
        name,
        t.source,
        f"{arn} is {state}: the SAM cannot decrypt anything landed with it",
        fix,
        key=arn,
        key_state=state,
    )


def _when(moment: object) -> str:
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "the deletion date"


def check_key_rotation(t: SamTarget) -> CheckOutcome:
    name = "sam_kms_key_rotation"
    early = _key_missing(t, name)
    if early:
        return early
    arn = t.key_arn()
    try:
        rotating = t.key_rotation()
    except AwsCallError as err:
        if err.code != "KMSInvalidStateException":
            raise
        state = (t.key_metadata() or {}).get("KeyState")
        return _ok(
            name,
            t.source,
            f"rotation of {arn} cannot be read while the key is {state}: see sam_kms_key_state",
            key=arn,
        )
    if rotating:
        return _ok(name, t.source, f"rotation is on for {arn}", key=arn)
    return _fail(
        name,
        t.source,
        f"automatic rotation is off for {arn}",
        f"aws kms enable-key-rotation --key-id {arn} (or run `lip provision` if LIP "
        "created the key)",
        key=arn,
    )


def check_key_policy(t: SamTarget) -> CheckOutcome:
    name = "sam_kms_key_policy"
    early = _needs_role(t, name) or _key_missing(t, name)
    if early:
        return early
    role = str(t.sam.role_arn)
    arn = str(t.key_arn())
    policy = t.key_policy()
    ev = grants.key_decrypt(t, policy, arn)
    if ev.allowed:
        return _ok(
            name,
            t.source,
            f"{role} may decrypt with {arn} through S3",
            granted_by=list(ev.allowed_by),
        )
    why = (
        f"statement {', '.join(ev.denied_by + ev.maybe_denied_by)} denies it"
        if ev.denied_by or ev.maybe_denied_by
        else "no statement grants it"
    )
    return _fail(
        name,
        t.source,
        f"the key policy of {arn} does not let the SAM's role {role} decrypt ({why})",
        f"run `lip provision` (adds the statement {grants.SAM_DECRYPT_SID} to a key it "
        "created; it never changes another's policy), or add a "
        f"statement allowing kms:Decrypt to {role} with kms:ViaService = {t.s3_service()}",
        key=arn,
    )


def check_key_use(t: SamTarget) -> CheckOutcome:
    name = "lip_kms_key_use"
    early = _key_missing(t, name)
    if early:
        return early
    arn = str(t.key_arn())
    use = grants.key_use(t, t.key_policy(), arn)
    if use.allowed:
        roles = {"roles": [r.label for r in use.deployed]} if use.deployed else {}
        return _ok(name, t.source, key_use_ok(use, arn), **roles)
    return _fail(name, t.source, key_use_problem(t, use, arn), key_use_fix(t, use, arn), key=arn)


def key_use_ok(use: grants.KeyUse, arn: str) -> str:
    """What confirmed the key's use: the listed roles by name, or the account's grant."""
    if use.deployed:
        return f"LIP's deployed roles may use {arn} for what each does: " + "; ".join(
            r.label for r in use.deployed
        )
    return f"LIP's roles may use {arn} through the account's IAM policies"


def _listed_roles_problem(use: grants.KeyUse, arn: str) -> str:
    """``key_use_problem`` when LIP_ROLE_ARNS names the roles: which role lacks which
    use, and which statement denies which role."""
    parts = []
    short = [r for r in use.deployed if r.missing]
    if short:
        parts.append(
            "does not grant (by name or through the account's IAM policies) "
            + "; ".join(f"{r.label}: {', '.join(r.missing)}" for r in short)
        )
    parts += [
        f"has statement {', '.join(r.denied)} denying (or maybe denying) {r.label} a use it needs"
        for r in use.deployed
        if r.denied
    ]
    return (
        f"LIP's deployed roles (LIP_ROLE_ARNS) may not use {arn}: its key policy "
        + " and ".join(parts)
        + "; every lake write (and every read of the source's secrets) by those roles "
        "fails with AccessDenied"
    )


def key_use_problem(t: SamTarget, use: grants.KeyUse, arn: str) -> str:
    """What keeps LIP's own roles from using the key, as a user reads it: every run
    would fail on its first lake write with an AccessDenied that names no cause. A
    grant naming the role this runs as (an administrator's, on a workstation) is
    said to be one LIP cannot confirm, never counted as the deployed roles'; roles
    listed in LIP_ROLE_ARNS are judged by name."""
    if use.deployed:
        return _listed_roles_problem(use, arn)
    parts = []
    if use.missing:
        parts.append(
            f"does not hand {', '.join(use.missing)} to the account's IAM policies "
            f"(no Allow for arn:aws:iam::{t.account}:root), which is how the deployment "
            "grants its run, code server and receiver roles the key"
        )
    if use.named:
        parts.append(
            f"grants {', '.join(use.named)} by name only to {use.role}, the role this "
            "runs as, not known to be one of them"
        )
    if use.denied:
        parts.append(f"has statement {', '.join(use.denied)} denying (or maybe denying) it")
    lead = (
        f"LIP cannot confirm that its deployed roles may use {arn}"
        if use.named and not use.denied and set(use.named) == set(use.missing)
        else f"LIP's own roles may not use {arn}"
    )
    return (
        f"{lead}: its key policy "
        + " and ".join(parts)
        + "; unless it names each of those roles, every lake write (and every read of "
        "the source's secrets) fails with AccessDenied (if it does, list them in "
        "LIP_ROLE_ARNS and this check confirms it)"
    )


def key_use_fix(t: SamTarget, use: grants.KeyUse, arn: str) -> str:
    """The statement to add (never added by LIP to a key's policy: the key's owner
    decides who may use it), or the Deny to review."""
    if use.deployed:
        return _listed_roles_fix(t, use, arn)
    if use.denied and not use.missing:
        return (
            f"narrow statement {', '.join(use.denied)} of {arn}'s key policy so that it "
            "does not apply to LIP's run, code server and receiver roles"
        )
    statement = json.dumps(grants.key_statements(t)[grants.KEY_ADMIN_SID])
    fix = (
        f"add to the key policy of {arn}: {statement} (AWS's default key statement: "
        "LIP's roles then get the key through their IAM policies, as the deployment "
        "grants it); statements naming LIP's run, code server and receiver roles for "
        "what each does work too, and this check confirms them once LIP_ROLE_ARNS lists "
        "those roles (the deployment's template sets it); `lip provision` never changes "
        "this"
    )
    if use.denied:
        fix += f"; and narrow statement {', '.join(use.denied)}"
    return fix


def _listed_roles_fix(t: SamTarget, use: grants.KeyUse, arn: str) -> str:
    denied = [r for r in use.deployed if r.denied]
    narrow = (
        f"narrow statement {', '.join(use.denied)} of {arn}'s key policy so that it does "
        f"not apply to {', '.join(r.role for r in denied)}"
    )
    if not any(r.missing for r in use.deployed):
        return narrow
    statements = ", ".join(json.dumps(s) for s in grants.role_statements(t, use))
    admin = json.dumps(grants.key_statements(t)[grants.KEY_ADMIN_SID])
    fix = (
        f"add to the key policy of {arn}: {statements} (or AWS's default key statement "
        f"{admin}, which hands the key to the roles' IAM policies, as the deployment "
        "grants it; or correct LIP_ROLE_ARNS if it names the wrong roles); `lip provision` "
        "never changes this"
    )
    if denied:
        fix += "; and " + narrow
    return fix


def check_bucket_read_grant(t: SamTarget) -> CheckOutcome:
    name = "sam_bucket_read_grant"
    early = _needs_role(t, name) or _bucket_missing(t, name)
    if early:
        return early
    role = str(t.sam.role_arn)
    problems = list(grants.read_problems(t, t.bucket_policy()).values())
    if not problems:
        return _ok(
            name,
            t.source,
            f"{role} may list {t.bucket} and read lake objects",
            vpc_endpoint=t.sam.vpce_id or "none",
        )
    return _fail(
        name,
        t.source,
        f"the bucket policy of {t.bucket} does not let the SAM's role read: " + "; ".join(problems),
        f"run `lip provision` (adds statements {grants.LIST_SID} and {grants.READ_SID}), or "
        f"grant {role} s3:ListBucket and s3:GetBucketLocation on the bucket and "
        "s3:GetObject on the lake prefix; scope only GetObject to the VPC endpoint",
        problems=problems,
    )


def check_bucket_tls_only(t: SamTarget) -> CheckOutcome:
    name = "sam_bucket_tls_only"
    early = _bucket_missing(t, name)
    if early:
        return early
    gaps = grants.tls_gaps(t, t.bucket_policy())
    if not gaps:
        return _ok(name, t.source, f"{t.bucket} denies requests without TLS")
    return _fail(
        name,
        t.source,
        f"the bucket policy of {t.bucket} does not deny non-TLS requests to " + ", ".join(gaps),
        f"run `lip provision` (adds the statement {grants.TLS_SID}), or add a "
        "Deny of s3:* for Principal * on the bucket and its objects when "
        "aws:SecureTransport is false",
    )


_PAB_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


def check_public_access_block(t: SamTarget) -> CheckOutcome:
    name = "sam_public_access_block"
    early = _bucket_missing(t, name)
    if early:
        return early
    pab = t.public_access_block() or {}
    off = [f for f in _PAB_FLAGS if not pab.get(f)]
    if not off:
        return _ok(name, t.source, f"public access is blocked on {t.bucket}")
    return _fail(
        name,
        t.source,
        f"public access block on {t.bucket} is off for: " + ", ".join(off),
        f"aws s3api put-public-access-block --bucket {t.bucket} "
        "--public-access-block-configuration BlockPublicAcls=true,IgnorePublicAcls="
        "true,BlockPublicPolicy=true,RestrictPublicBuckets=true (or run `lip provision`)",
        off=off,
    )


def check_notifications(t: SamTarget) -> CheckOutcome:
    name = "sam_notifications"
    queue = t.sam.queue_arn
    if not queue:
        return _fail(
            name,
            t.source,
            "LIP_SAM_QUEUE_ARN is not set",
            "set LIP_SAM_QUEUE_ARN to the ARN of the SQS queue the SAM indexes from",
        )
    parts = parse_arn(queue)
    if parts is None or parts["service"] != "sqs":
        return _fail(
            name,
            t.source,
            f"LIP_SAM_QUEUE_ARN {queue!r} is not an SQS queue ARN",
            "set it to arn:aws:sqs:<region>:<account>:<queue>",
        )
    if parts["region"] != t.region:
        return _fail(
            name,
            t.source,
            f"the SAM's queue is in {parts['region']}, the bucket in {t.region}: S3 "
            "only notifies queues in its own region",
            "use a SAM queue in the bucket's region",
        )
    early = _bucket_missing(t, name)
    if early:
        return early
    configs = t.notifications().get("QueueConfigurations", [])
    problems: list[str] = []
    fix = (
        f"run `lip provision` (adds the notification {grants.NOTIFICATION_ID}), or send "
        f"s3:ObjectCreated:* with prefix {t.lake_prefix} to {queue}"
    )
    if not any(grants.notification_covers(c, queue, t.lake_prefix) for c in configs):
        problems.append(
            f"{t.bucket} does not send s3:ObjectCreated:* under "
            f"{t.lake_prefix or 'the bucket root'} to {queue}"
        )
    if any(grants.notification_leaks(c, queue, t.quarantine_prefix) for c in configs):
        problems.append(
            f"the notification also covers the quarantine prefix "
            f"{t.quarantine_prefix}: the SAM would index rejected input"
        )
        fix = f"limit the notification to the prefix {t.lake_prefix}; " + fix
    metadata: dict[str, Any] = {"queue": queue}
    url = t.queue_url_of_arn(queue)
    if url is None:
        problems.append(f"the SAM's queue {queue} does not exist")
        fix = "create the SAM's queue or fix LIP_SAM_QUEUE_ARN; then " + fix
    else:
        try:
            policy = t.queue_policy(url)
        except AwsCallError as err:
            if err.code not in ("AccessDenied", "AccessDeniedException"):
                raise
            # Another account's queue: S3 validated the permission when the
            # notification was set; LIP cannot re-read it from here.
            metadata["queue_policy"] = "not readable from this account"
        else:
            if not grants.queue_send(t, policy, queue).allowed:
                problems.append(f"the policy of {queue} does not let {t.bucket} send to it")
                statement = json.dumps(grants.queue_statement(t, queue))
                fix = f"add to the policy of {queue}: {statement}; then {fix}"
    if not problems:
        return _ok(name, t.source, f"{t.bucket} notifies {queue} of new lake objects", **metadata)
    return _fail(name, t.source, "; ".join(problems), fix, problems=problems, **metadata)


def check_index_bucket(t: SamTarget) -> CheckOutcome:
    name = "sam_index_bucket"
    index = t.sam.index_bucket
    if not index:
        return _fail(
            name,
            t.source,
            "LIP_SAM_INDEX_BUCKET is not set",
            "set LIP_SAM_INDEX_BUCKET to the bucket the SAM keeps its index in",
        )
    early = _needs_role(t, name)
    if early:
        return early
    state = t.bucket_state(index)
    if state == "missing":
        return _fail(
            name,
            t.source,
            f"the SAM's index bucket {index} does not exist",
            f"create {index} (and let {t.sam.role_arn} write to it), or fix LIP_SAM_INDEX_BUCKET",
        )
    role = str(t.sam.role_arn)
    req = Request(
        "s3:PutObject",
        f"arn:aws:s3:::{index}/lip-check",
        role,
        context={"aws:SecureTransport": "true"},
    )
    try:
        bucket_policy = t.bucket_policy(index) if state == "exists" else None
    except AwsCallError as err:
        if err.code not in ("AccessDenied", "AccessDeniedException"):
            raise
        bucket_policy = None
    by_bucket = evaluate(bucket_policy, req) if bucket_policy else None
    identity = t.role_identity_policies(role)
    by_role = [evaluate(p, req, identity=True) for p in identity] if identity else []
    denied = (
        by_bucket is not None and (by_bucket.denied or bool(by_bucket.maybe_denied_by))
    ) or any(e.denied for e in by_role)
    granted = (by_bucket is not None and bool(by_bucket.allowed_by)) or any(
        e.allowed_by for e in by_role
    )
    readable = bucket_policy is not None or identity is not None
    fix = (
        f"grant {role} s3:PutObject on arn:aws:s3:::{index}/* (in the role's IAM policy or "
        "the bucket's policy)"
    )
    if denied:
        return _fail(name, t.source, f"writing to {index} is denied to {role}", fix)
    if readable and not granted:
        return _fail(name, t.source, f"nothing lets {role} write to {index}", fix)
    if not readable:
        return _ok(
            name,
            t.source,
            f"{index} exists; its write grant is not readable from this account",
            write_grant="not verifiable here",
        )
    return _ok(name, t.source, f"{index} exists and {role} may write to it")


def check_dead_letters(backend: Backend, source: str, pattern: str) -> CheckOutcome:
    name = "sam_dead_letters"
    if not buffered(pattern):
        return _not_applicable(name, source, f"{pattern} sources have no buffer queue")
    try:
        depth = backend.buffer.depth(source)
    except LipError as err:
        return _fail(
            name,
            source,
            f"could not read the dead-letter queue: {err}",
            "run `lip provision` to create the source's queues",
        )
    if depth.dead_letters == 0:
        return _ok(name, source, "the dead-letter queue is empty")
    return _fail(
        name,
        source,
        f"{depth.dead_letters} messages sit in the dead-letter queue: their events "
        "are not in the lake",
        "read them (they failed too often to land), fix the cause, then move them back "
        f"to the buffer with the job {source}_replay",
        dead_letters=depth.dead_letters,
    )


def check_quarantine(backend: Backend, source: str) -> CheckOutcome:
    name = "sam_quarantine"
    try:
        count = backend.quarantine.count(source)
    except (LipError, OSError, ClientError, BotoCoreError) as err:
        return _fail(
            name,
            source,
            f"could not count quarantined input: {err}",
            "check that the source's bucket exists (`lip provision`)",
        )
    if count == 0:
        return _ok(name, source, "nothing in quarantine")
    return _fail(
        name,
        source,
        f"{count} inputs sit in quarantine: they are not in the lake",
        "read each one's .reason.json beside it, fix the cause, land the input again "
        "and remove it from quarantine",
        quarantined=count,
    )


_AWS_CHECKS: dict[str, Callable[[SamTarget], CheckOutcome]] = {
    "sam_bucket_encryption": check_bucket_encryption,
    "sam_kms_key_state": check_key_state,
    "sam_kms_key_rotation": check_key_rotation,
    "sam_kms_key_policy": check_key_policy,
    "lip_kms_key_use": check_key_use,
    "sam_bucket_read_grant": check_bucket_read_grant,
    "sam_bucket_tls_only": check_bucket_tls_only,
    "sam_public_access_block": check_public_access_block,
    "sam_notifications": check_notifications,
    "sam_index_bucket": check_index_bucket,
}


def _guarded(
    name: str, source: str, fn: Callable[[SamTarget], CheckOutcome], target: SamTarget
) -> CheckOutcome:
    try:
        return fn(target)
    except AwsCallError as err:
        return _fail(
            name,
            source,
            str(err),
            "give LIP's role the read permission named above, or check that the "
            "AWS endpoint is reachable",
        )


def resource_outcomes(
    backend: Backend, source: str, pattern: str, only: Collection[str] | None = None
) -> Iterator[CheckOutcome]:
    """The resource checks of the source (``only`` those named), in ``CHECKS`` order."""
    target = aws_target(backend, source)
    for check in RESOURCE_CHECKS:
        if only is not None and check.name not in only:
            continue
        fn = _AWS_CHECKS.get(check.name)
        if fn is not None:
            if target is None:
                yield _not_applicable(
                    check.name,
                    source,
                    "does not apply: the embedded backend has no S3 bucket or KMS key",
                )
            else:
                yield _guarded(check.name, source, fn, target)
        elif check.name == "sam_dead_letters":
            yield check_dead_letters(backend, source, pattern)
        elif check.name == "sam_quarantine":
            yield check_quarantine(backend, source)


def _key_judge(target: SamTarget) -> Callable[[str | None], str | None]:
    want = target.key_arn()

    def judge(key_id: str | None) -> str | None:
        if key_id is None:
            return "not encrypted with SSE-KMS"
        try:
            arn = target.key_arn(key_id)
        except AwsCallError as err:
            return f"its key {key_id} could not be looked up ({err.code})"
        if arn is None:
            return f"encrypted with {key_id}, a KMS key that does not exist"
        if arn != want:
            return f"encrypted with {arn}, not the source's key {want}"
        return None

    return judge


def content_outcomes(
    backend: Backend,
    source: str,
    partition_key: str,
    *,
    encryption: bool = True,
    lake: LakeBackend | None = None,
) -> list[CheckOutcome]:
    """``lake_content`` and ``sam_object_encryption`` for one partition, from one pass
    (``encryption=False``: the first only, without looking up each object's key).
    ``lake``: where the source's objects are, if not in LIP's lake (a lake-layout
    producer's own bucket, ``s3stream.producer_lake``)."""
    target = aws_target(backend, source) if encryption else None
    judge = None
    enc_early: CheckOutcome | None = None
    if target is not None:
        try:
            enc_early = _key_missing(target, "sam_object_encryption")
            if enc_early is None:
                judge = _key_judge(target)
        except AwsCallError as err:
            enc_early = _fail(
                "sam_object_encryption",
                source,
                str(err),
                "give LIP's role kms:DescribeKey on the source's key",
            )
    try:
        rep = verify_partition(lake or backend.lake, source, partition_key, judge_key=judge)
    except (LakeReadError, OSError) as err:
        detail = f"reading the partition failed: {err}"
        fix = "check that the lake exists and LIP may read it (`lip provision` on AWS)"
        return [
            _fail("lake_content", source, detail, fix, partition=partition_key),
            _not_applicable(
                "sam_object_encryption", source, "does not apply: the embedded lake is a directory"
            )
            if target is None
            else _fail("sam_object_encryption", source, detail, fix, partition=partition_key),
        ]
    return [
        _content_outcome(source, partition_key, rep),
        _encryption_outcome(source, partition_key, rep, target, enc_early),
    ]


def _content_outcome(source: str, partition_key: str, rep: ContentReport) -> CheckOutcome:
    meta = {
        "partition": partition_key,
        "objects": rep.objects,
        "events": rep.events,
        "problems": list(rep.problems),
    }
    if rep.ok:
        return _ok(
            "lake_content",
            source,
            f"{rep.objects} objects, {rep.events} events in {partition_key}",
            **meta,
        )
    return _fail(
        "lake_content",
        source,
        rep.problems[0] + (f" (and {len(rep.problems) - 1} more)" if len(rep.problems) > 1 else ""),
        "move the objects named out of the lake prefix (to quarantine) and "
        "re-run the partition: one bad object breaks the SAM's queries",
        **meta,
    )


def _encryption_outcome(
    source: str,
    partition_key: str,
    rep: ContentReport,
    target: SamTarget | None,
    early: CheckOutcome | None,
) -> CheckOutcome:
    name = "sam_object_encryption"
    if target is None:
        return _not_applicable(name, source, "does not apply: the embedded lake is a directory")
    if early is not None:
        return early
    meta = {
        "partition": partition_key,
        "objects": rep.encryption_checked,
        "problems": list(rep.encryption_problems),
    }
    if rep.encryption_ok:
        return _ok(
            name,
            source,
            f"{rep.encryption_checked} objects in {partition_key} carry {target.key_arn()}",
            **meta,
        )
    return _fail(
        name,
        source,
        rep.encryption_problems[0]
        + (
            f" (and {len(rep.encryption_problems) - 1} more)"
            if len(rep.encryption_problems) > 1
            else ""
        ),
        "copy each object named onto itself with the source's key (aws s3 cp "
        "s3://BUCKET/KEY s3://BUCKET/KEY --sse aws:kms --sse-kms-key-id "
        f"{target.key_arn()}), and find the writer that put it without that key",
        **meta,
    )


def run_checks(
    backend: Backend,
    source: str,
    pattern: str,
    partition_key: str,
    lake: LakeBackend | None = None,
) -> list[CheckOutcome]:
    """Every check of one source, in ``CHECKS`` order (``lake`` as in
    ``content_outcomes``)."""
    by_name = {o.name: o for o in resource_outcomes(backend, source, pattern)}
    by_name.update({o.name: o for o in content_outcomes(backend, source, partition_key, lake=lake)})
    return [by_name[c.name] for c in CHECKS]
