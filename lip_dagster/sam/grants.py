"""What the SAM needs from each policy, stated once: the statements provisioning
writes, and the questions the checks ask of whatever policy is actually in place.

Writing and checking share these definitions, so a stack that ``lip provision``
builds passes ``lip check`` by construction, and a policy written by hand passes as
long as it grants the same access, whatever its statement ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lip_dagster.permissions import PERMISSIONS
from lip_dagster.sam.policy import Evaluation, Request, evaluate
from lip_dagster.sam.target import SamTarget, parse_arn

__all__ = [
    "KEY_ADMIN_SID",
    "LIST_SID",
    "NOTIFICATION_ID",
    "READ_SID",
    "RETENTION_RULE_ID",
    "SAM_DECRYPT_SID",
    "TLS_SID",
    "KeyUse",
    "RoleUse",
    "bucket_statements",
    "encryption_config",
    "key_decrypt",
    "key_statements",
    "key_use",
    "notification_config",
    "notification_covers",
    "notification_leaks",
    "queue_send",
    "queue_statement",
    "read_problems",
    "role_statements",
    "tls_gaps",
]

TLS_SID = "LipDenyInsecureTransport"
LIST_SID = "LipSamList"
READ_SID = "LipSamRead"
KEY_ADMIN_SID = "LipAccountAdmin"
SAM_DECRYPT_SID = "LipSamDecrypt"
NOTIFICATION_ID = "lip-sam-object-created"
RETENTION_RULE_ID = "lip-lake-retention"

_LIST_ACTIONS = ("s3:ListBucket", "s3:GetBucketLocation")


# ------------------------------------------------------------------ bucket policy


def bucket_statements(t: SamTarget) -> dict[str, dict[str, Any]]:
    """The bucket policy statements LIP writes, by Sid.

    Only ``s3:GetObject`` is scoped to the VPC endpoint. Listing stays open to the
    SAM's role from anywhere because the SAM's connectivity test lists the bucket
    from its own network, and a Deny keyed on the endpoint would also lock out LIP
    and the account's administrators.
    """
    role = str(t.sam.role_arn)
    read: dict[str, Any] = {
        "Sid": READ_SID,
        "Effect": "Allow",
        "Principal": {"AWS": role},
        "Action": "s3:GetObject",
        "Resource": f"{t.bucket_arn}/{t.lake_prefix}*",
    }
    if t.sam.vpce_id:
        read["Condition"] = {"StringEquals": {"aws:SourceVpce": t.sam.vpce_id}}
    return {
        TLS_SID: {
            "Sid": TLS_SID,
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [t.bucket_arn, f"{t.bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
        LIST_SID: {
            "Sid": LIST_SID,
            "Effect": "Allow",
            "Principal": {"AWS": role},
            "Action": list(_LIST_ACTIONS),
            "Resource": t.bucket_arn,
        },
        READ_SID: read,
    }


def _denied(ev: Evaluation) -> str:
    sids = ev.denied_by + ev.maybe_denied_by
    return f" (denied by statement {', '.join(sids)})" if sids else ""


def read_problems(t: SamTarget, policy: dict[str, Any] | None) -> dict[str, str]:
    """What keeps the SAM's role from reading, keyed by the Sid that would grant it;
    empty when it may list the bucket and read lake objects."""
    role = str(t.sam.role_arn)
    tls = {"aws:SecureTransport": "true"}
    read_ctx = {**tls, **({"aws:SourceVpce": t.sam.vpce_id} if t.sam.vpce_id else {})}
    problems: dict[str, str] = {}
    read = evaluate(policy, Request("s3:GetObject", t.sample_object_arn(), role, context=read_ctx))
    if not read.allowed:
        via = f" through {t.sam.vpce_id}" if t.sam.vpce_id else ""
        problems[READ_SID] = (
            f"s3:GetObject on {t.bucket}/{t.lake_prefix}*{via} is not granted{_denied(read)}"
        )
    missing = []
    for action in _LIST_ACTIONS:
        ev = evaluate(policy, Request(action, t.bucket_arn, role, context=tls))
        if not ev.allowed:
            missing.append(
                f"{action} on {t.bucket} (outside any VPC endpoint) is not granted{_denied(ev)}"
            )
    if missing:
        problems[LIST_SID] = "; ".join(missing)
    return problems


def tls_gaps(t: SamTarget, policy: dict[str, Any] | None) -> list[str]:
    """Resources a request without TLS is not certainly denied on."""
    insecure = {"aws:SecureTransport": "false"}
    return [
        target
        for action, target in (
            ("s3:GetObject", t.sample_object_arn()),
            ("s3:ListBucket", t.bucket_arn),
        )
        if not evaluate(policy, Request(action, target, "*", context=insecure)).denied
    ]


def encryption_config(key_arn: str) -> dict[str, Any]:
    """Default encryption: SSE-KMS with the source's key; S3 Bucket Keys cut the KMS
    calls (and their cost) per object."""
    return {
        "Rules": [
            {
                "ApplyServerSideEncryptionByDefault": {
                    "SSEAlgorithm": "aws:kms",
                    "KMSMasterKeyID": key_arn,
                },
                "BucketKeyEnabled": True,
            }
        ]
    }


# ---------------------------------------------------------------------- key policy


def key_statements(t: SamTarget) -> dict[str, dict[str, Any]]:
    """The key policy LIP writes for a new key: the account administers it through
    IAM (without this, KMS refuses a policy that would lock everyone out), and the
    SAM's role may decrypt only through S3 in this region."""
    return {
        KEY_ADMIN_SID: {
            "Sid": KEY_ADMIN_SID,
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{t.account}:root"},
            "Action": "kms:*",
            "Resource": "*",
        },
        SAM_DECRYPT_SID: {
            "Sid": SAM_DECRYPT_SID,
            "Effect": "Allow",
            "Principal": {"AWS": str(t.sam.role_arn)},
            "Action": "kms:Decrypt",
            "Resource": "*",
            "Condition": {"StringEquals": {"kms:ViaService": t.s3_service()}},
        },
    }


def key_decrypt(t: SamTarget, policy: dict[str, Any] | None, key_arn: str) -> Evaluation:
    """May the SAM's role decrypt with the key when S3 asks on its behalf?"""
    role = str(t.sam.role_arn)
    context = _via_context(t, "s3", (parse_arn(role) or {}).get("account", ""))
    return evaluate(policy, Request("kms:Decrypt", key_arn, role, context=context))


_VIA_NAMES = {"s3": "S3", "secretsmanager": "Secrets Manager", "sqs": "SQS"}


def _deployed_key_uses() -> Iterator[tuple[str, str, str]]:
    """(action, via, process) for what LIP's deployed processes ask of a source's key
    through another service (``permissions.py``): S3 generating a data key for a lake
    or quarantine put and decrypting it, Secrets Manager decrypting a source's secret.
    Provisioning is an administrator's, never a deployed role's."""
    for p in PERMISSIONS:
        if p.resource == "source-key" and p.via:
            for process in p.by:
                if process != "provision":
                    yield p.action, p.via, process


def _key_uses() -> tuple[tuple[str, str], ...]:
    """Every (action, via) any deployed process asks of the key."""
    return tuple(dict.fromkeys((action, via) for action, via, _ in _deployed_key_uses()))


def _uses_by_process() -> dict[str, tuple[tuple[str, str], ...]]:
    """``_key_uses`` per deployed process: what a role running it needs of the key
    (the receiver only decrypts its secrets; it never writes the lake)."""
    out: dict[str, dict[tuple[str, str], None]] = {}
    for action, via, process in _deployed_key_uses():
        out.setdefault(process, {})[(action, via)] = None
    return {process: tuple(uses) for process, uses in out.items()}


def _via_context(t: SamTarget, via: str, account: str) -> dict[str, str]:
    """The request context of a key use made through ``via`` by a principal of
    ``account``."""
    return {"kms:ViaService": t.via_service(via), "kms:CallerAccount": account}


def _use_label(action: str, via: str) -> str:
    return f"{action} through {_VIA_NAMES.get(via, via)}"


@dataclass(frozen=True)
class RoleUse:
    """One of LIP's deployed roles (``LIP_ROLE_ARNS``) against a key policy.

    ``processes``: what runs as the role; ``needs``: (action, via) of each use those
    processes need that the policy grants the role neither by name nor through the
    account's IAM policies; ``denied``: the statements that deny (or might deny) the
    role a use it needs."""

    role: str
    processes: tuple[str, ...]
    needs: tuple[tuple[str, str], ...]
    denied: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.role} ({', '.join(self.processes)})"

    @property
    def missing(self) -> tuple[str, ...]:
        """``needs`` as a user reads them (``kms:Decrypt through S3``)."""
        return tuple(_use_label(action, via) for action, via in self.needs)


@dataclass(frozen=True)
class KeyUse:
    """Whether LIP's deployed roles may use a source's key for what they write and read.

    Without ``LIP_ROLE_ARNS``: ``missing``: the uses the key policy does not hand to
    the account's IAM policies (the deployment grants its run, code server and
    receiver roles the key through them, and LIP knows none of those roles' ARNs, so
    nothing else confirms them); ``named``: those of them the policy grants instead
    to ``role`` by name, which says nothing of the deployed roles; ``denied``: the
    statements that deny (or might deny) a use to a principal of the account;
    ``role``: the role this process runs as (None when it does not run as a role).

    With it: ``deployed`` holds each listed role's result, and ``denied`` every
    statement denying one of them; ``missing`` and ``named`` stay empty."""

    missing: tuple[str, ...]
    denied: tuple[str, ...]
    role: str | None
    named: tuple[str, ...] = ()
    deployed: tuple[RoleUse, ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.missing and not self.denied and not any(r.missing for r in self.deployed)


def _listed_roles_use(t: SamTarget, policy: dict[str, Any] | None, key_arn: str) -> KeyUse:
    """Each role of ``LIP_ROLE_ARNS``, for each use its processes need: granted when
    the policy names the role, or hands the use to the IAM policies of the role's
    account (which the deployment's roles carry, ``permissions.py`` and its test);
    denied when a statement denies it to that role, judged with the role's own ARN."""
    processes: dict[str, list[str]] = {}
    for process, arn in t.sam.lip_roles:
        processes.setdefault(arn, []).append(process)
    uses = _uses_by_process()
    results: list[RoleUse] = []
    denied_all: list[str] = []
    for role, procs in processes.items():
        account = (parse_arn(role) or {}).get("account", "")
        root = f"arn:aws:iam::{account}:root"
        needed = dict.fromkeys(u for p in procs for u in uses.get(p, ()))
        needs: list[tuple[str, str]] = []
        denied: list[str] = []
        for action, via in needed:
            context = _via_context(t, via, account)
            by_name = evaluate(policy, Request(action, key_arn, role, context=context))
            # through IAM the role still signs: a grant conditioned on its ARN holds
            by_iam = evaluate(
                policy,
                Request(action, key_arn, root, context={**context, "aws:PrincipalArn": role}),
            )
            if not (by_name.allowed_by or by_iam.allowed_by):
                needs.append((action, via))
            denied += [s for s in by_name.denied_by + by_name.maybe_denied_by if s not in denied]
        results.append(RoleUse(role, tuple(procs), tuple(needs), tuple(denied)))
        denied_all += [s for s in denied if s not in denied_all]
    return KeyUse((), tuple(denied_all), t.caller_role_arn, deployed=tuple(results))


def role_statements(t: SamTarget, use: KeyUse) -> list[dict[str, Any]]:
    """Key policy statements granting the listed roles what they miss, each only
    through the service that asks for it; roles missing the same uses share one."""
    grouped: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for r in use.deployed:
        by_via: dict[str, list[str]] = {}
        for action, via in r.needs:
            by_via.setdefault(via, []).append(action)
        for via, actions in by_via.items():
            grouped.setdefault((via, tuple(actions)), []).append(r.role)
    return [
        {
            "Effect": "Allow",
            "Principal": {"AWS": roles[0] if len(roles) == 1 else roles},
            "Action": list(actions) if len(actions) > 1 else actions[0],
            "Resource": "*",
            "Condition": {"StringEquals": {"kms:ViaService": t.via_service(via)}},
        }
        for (via, actions), roles in grouped.items()
    ]


def key_use(t: SamTarget, policy: dict[str, Any] | None, key_arn: str) -> KeyUse:
    """May LIP's deployed roles use the key? Only when the key policy lets the
    account's IAM policies grant each use (an Allow for ``arn:aws:iam::<account>:root``,
    what AWS's default key policy and LIP's own keys hold) and no statement denies it
    to a principal of the account. A statement naming the role this process runs as
    does not count: from a workstation that is an administrator, never the run, code
    server or receiver role, and LIP cannot tell those roles' ARNs. Evaluated per
    use, with the ``kms:ViaService`` each carries, so a grant limited to S3 does not
    count for Secrets Manager.

    With ``LIP_ROLE_ARNS`` set, LIP knows its deployed roles: each is judged by name
    for what its processes need (``_listed_roles_use``), and the caller is not."""
    if t.sam.lip_roles:
        return _listed_roles_use(t, policy, key_arn)
    root = f"arn:aws:iam::{t.account}:root"
    role = t.caller_role_arn
    missing: list[str] = []
    named: list[str] = []
    denied: list[str] = []
    for action, via in _key_uses():
        label = _use_label(action, via)
        context = _via_context(t, via, t.account)
        by_iam = evaluate(policy, Request(action, key_arn, root, context=context))
        if not by_iam.allowed_by:
            missing.append(label)
            if (
                role
                and evaluate(policy, Request(action, key_arn, role, context=context)).allowed_by
            ):
                named.append(label)
        # a Deny is judged for any principal of the account (its ARN unknown to
        # conditions), not for the caller: a Deny sparing the caller alone still
        # denies the deployed roles
        denied += [sid for sid in by_iam.denied_by + by_iam.maybe_denied_by if sid not in denied]
    return KeyUse(tuple(missing), tuple(denied), role, tuple(named))


# -------------------------------------------------------------------- notifications


def notification_config(t: SamTarget) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "Id": NOTIFICATION_ID,
        "QueueArn": str(t.sam.queue_arn),
        "Events": ["s3:ObjectCreated:*"],
    }
    if t.lake_prefix:
        cfg["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": t.lake_prefix}]}}
    return cfg


def _filter_rules(cfg: dict[str, Any]) -> list[tuple[str, str]]:
    rules = cfg.get("Filter", {}).get("Key", {}).get("FilterRules", [])
    return [(str(r.get("Name", "")).lower(), str(r.get("Value", ""))) for r in rules]


def notification_covers(cfg: dict[str, Any], queue_arn: str, lake_prefix: str) -> bool:
    """Does this queue configuration send every object created under the lake prefix
    to the queue?"""
    if cfg.get("QueueArn") != queue_arn or "s3:ObjectCreated:*" not in cfg.get("Events", []):
        return False
    for kind, value in _filter_rules(cfg):
        if kind == "prefix" and not lake_prefix.startswith(value):
            return False
        if kind == "suffix" and value and not ".ndjson.gz".endswith(value):
            return False
    return True


def notification_leaks(cfg: dict[str, Any], queue_arn: str, quarantine_prefix: str) -> bool:
    """Would quarantined input reach the SAM's queue too?"""
    if cfg.get("QueueArn") != queue_arn or not quarantine_prefix:
        return False
    prefixes = [v for k, v in _filter_rules(cfg) if k == "prefix"]
    return not prefixes or any(quarantine_prefix.startswith(p) for p in prefixes)


def queue_statement(t: SamTarget, queue_arn: str) -> dict[str, Any]:
    """The SAM queue policy statement that lets this bucket notify it."""
    return {
        "Sid": "LipS3Notify" + "".join(c for c in t.source.title() if c.isalnum()),
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": {
            "ArnEquals": {"aws:SourceArn": t.bucket_arn},
            "StringEquals": {"aws:SourceAccount": t.account},
        },
    }


def queue_send(t: SamTarget, policy: dict[str, Any] | None, queue_arn: str) -> Evaluation:
    """May S3 deliver this bucket's notifications to the queue?"""
    req = Request(
        "sqs:SendMessage",
        queue_arn,
        service="s3.amazonaws.com",
        context={"aws:SourceArn": t.bucket_arn, "aws:SourceAccount": t.account},
    )
    return evaluate(policy, req)
