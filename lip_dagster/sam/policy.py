"""Just enough IAM policy evaluation to answer the SAM checks' questions ("may this
role read this object?", "is a non-TLS request denied?") from the policy documents
themselves, because the AWS policy simulator cannot see resource policies of another
account and is not available on AWS-compatible test servers.

The evaluation is deliberately conservative. A condition operator it does not know
makes an Allow count as not granting and a Deny count as possibly denying, so an
answer of "allowed" is one the SAM can rely on. Principals: an explicit ARN, ``*``
and service principals match; an account root (``arn:aws:iam::123:root``) does not
count as granting a role anything, since that only delegates to the role's own IAM
policies, which this account may not be able to read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

__all__ = ["Evaluation", "Request", "evaluate", "parse_policy", "statement_ids"]


@dataclass(frozen=True)
class Request:
    """One request to evaluate.

    ``principal`` is an IAM ARN or ``*`` (anyone, including anonymous callers); an
    account root (``arn:aws:iam::123456789012:root``) asks what a policy hands to
    that account's IAM policies, so it matches statements naming the account, and
    which of its principals signs is unknown to conditions. ``service`` is set
    instead for a service principal such as ``s3.amazonaws.com``.
    ``context`` holds condition keys (any case) and their values for this request.
    """

    action: str
    resource: str
    principal: str = "*"
    service: str | None = None
    context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    """Which statements allowed or denied the request (by Sid or position)."""

    allowed_by: tuple[str, ...] = ()
    denied_by: tuple[str, ...] = ()
    maybe_denied_by: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        """Granted, and no statement denies or might deny it."""
        return bool(self.allowed_by) and not self.denied_by and not self.maybe_denied_by

    @property
    def denied(self) -> bool:
        """Certainly denied by an explicit Deny."""
        return bool(self.denied_by)


def parse_policy(doc: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """A policy document as a dict; an empty policy for None or empty text. Raises
    ``ValueError`` for text that is not a JSON object."""
    if doc is None or doc == "":
        return {"Statement": []}
    if isinstance(doc, Mapping):
        return dict(doc)
    parsed = json.loads(doc)
    if not isinstance(parsed, dict):
        raise ValueError("a policy document is a JSON object")
    return parsed


def _statements(policy: Mapping[str, Any]) -> list[dict[str, Any]]:
    raw = policy.get("Statement", [])
    if isinstance(raw, Mapping):
        raw = [raw]
    return [dict(s) for s in raw if isinstance(s, Mapping)]


def statement_ids(policy: Mapping[str, Any]) -> set[str]:
    return {str(s["Sid"]) for s in _statements(policy) if "Sid" in s}


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | int | float | bool):
        return [str(value)]
    return [str(v) for v in value]


def _aws_principals(block: Mapping[str, Any]) -> list[str]:
    """The ``AWS`` principals of a block; a bare account id is its root, as AWS
    stores it."""
    return [
        f"arn:aws:iam::{p}:root" if len(p) == 12 and p.isdigit() else p
        for p in _as_list(block.get("AWS"))
    ]


def _is_root(arn: str) -> bool:
    parts = arn.split(":")
    return len(parts) == 6 and parts[2] == "iam" and parts[5] == "root"


def _principal_matches(block: Any, req: Request, effect: str) -> bool:
    if block == "*":
        return True
    if not isinstance(block, Mapping):
        return False
    aws = _aws_principals(block)
    if "*" in aws:
        return True
    if req.service is not None:
        return req.service in _as_list(block.get("Service"))
    if req.principal == "*":
        return False
    if req.principal in aws:
        return True
    if effect == "Deny":
        # A Deny naming an account applies to every principal in it.
        account = _account_of(req.principal)
        return bool(account) and any(p in (account, f"arn:aws:iam::{account}:root") for p in aws)
    return False


def _not_principal_exempts(block: Any, req: Request) -> bool | None:
    """Whether a ``NotPrincipal`` block leaves the requester out of its statement:
    True (exempt), False (the statement applies), None (cannot tell).

    AWS matches ``NotPrincipal`` exactly, never by account: an account ARN in it
    exempts that account's root user, not its roles, and a role's requests come
    from its sessions (``arn:aws:sts::<account>:assumed-role/<role>/<session>``),
    so a role is exempt where it is listed with a session ARN of it, as AWS documents.
    A role listed without its sessions is "cannot tell" (exempt or not depends on
    how AWS resolves its sessions): for a Deny, a possible denial."""
    if block == "*":
        return True
    if not isinstance(block, Mapping):
        return False
    if req.service is not None:
        return req.service in _as_list(block.get("Service"))
    aws = _as_list(block.get("AWS"))
    if "*" in aws:
        return True
    if req.principal == "*":
        return False
    parts = req.principal.split(":")
    role = parts[5].removeprefix("role/").rsplit("/", 1)[-1] if len(parts) > 5 else ""
    sessions = f"arn:aws:sts::{_account_of(req.principal)}:assumed-role/{role}/"
    named = req.principal in aws
    if not (parts[5:6] and parts[5].startswith("role/")):
        return named  # a user or root: matched exactly
    if not named:
        return False
    # the role and a session of it, as AWS documents for exempting a role
    return True if any(p.startswith(sessions) for p in aws) else None


def _account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 else ""


def _matches_any(patterns: Iterable[str], value: str, *, case: bool) -> bool:
    if not case:
        value = value.lower()
    return any(fnmatchcase(value, p if case else p.lower()) for p in patterns)


def _action_matches(stmt: Mapping[str, Any], action: str) -> bool:
    if "Action" in stmt:
        return _matches_any(_as_list(stmt["Action"]), action, case=False)
    if "NotAction" in stmt:
        return not _matches_any(_as_list(stmt["NotAction"]), action, case=False)
    return False


def _resource_matches(stmt: Mapping[str, Any], resource: str) -> bool:
    if "Resource" in stmt:
        return _matches_any(_as_list(stmt["Resource"]), resource, case=True)
    if "NotResource" in stmt:
        return not _matches_any(_as_list(stmt["NotResource"]), resource, case=True)
    return True  # key and queue policies may leave it out: the policy's own resource


_STRING_OPS = {
    "StringEquals": (lambda v, p: v == p, False),
    "StringNotEquals": (lambda v, p: v == p, True),
    "StringEqualsIgnoreCase": (lambda v, p: v.lower() == p.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda v, p: v.lower() == p.lower(), True),
    "StringLike": (fnmatchcase, False),
    "StringNotLike": (fnmatchcase, True),
    "ArnEquals": (lambda v, p: v == p, False),
    "ArnNotEquals": (lambda v, p: v == p, True),
    "ArnLike": (fnmatchcase, False),
    "ArnNotLike": (fnmatchcase, True),
    "Bool": (lambda v, p: v.lower() == p.lower(), False),
}


# Keys a signed request carries whatever it is (who signed it, in which account and
# organization, with which tags, on whose resource). Missing from a request's context
# they are unknown, not absent: read as absent, a negated operator on them would hold
# ("deny everyone but these roles" would deny the SAM's role although it is named) and
# a plain one would fail (a Deny of non-TLS requests that exempts one role would count
# as denying everyone).
_PRESENT_ON_SIGNED_REQUESTS = (
    "aws:principalarn",
    "aws:principalaccount",
    "aws:principaltype",
    "aws:principalorgid",
    "aws:principalorgpaths",
    "aws:principaltag/",
    "aws:principalisawsservice",
    "aws:userid",
    "aws:username",
    "aws:resourceaccount",
    "aws:resourceorgid",
    "aws:resourceorgpaths",
    "aws:resourcetag/",
)


def _unknown_when_missing(key: str) -> bool:
    return any(
        key == k or (k.endswith("/") and key.startswith(k)) for k in _PRESENT_ON_SIGNED_REQUESTS
    )


def _principal_context(req: Request) -> dict[str, str]:
    """The principal keys AWS sets for the requester, where the request names one:
    a role's sessions carry the role's ARN as ``aws:PrincipalArn``."""
    if req.service is not None or req.principal == "*":
        return {}
    account = _account_of(req.principal)
    if not account:
        return {}
    if _is_root(req.principal):  # any principal of the account: its ARN is unknown
        return {"aws:principalaccount": account}
    return {"aws:principalarn": req.principal, "aws:principalaccount": account}


_NUMERIC_OPS = {
    "NumericEquals": (lambda v, p: v == p, False),
    "NumericNotEquals": (lambda v, p: v == p, True),
    "NumericLessThan": (lambda v, p: v < p, False),
    "NumericLessThanEquals": (lambda v, p: v <= p, False),
    "NumericGreaterThan": (lambda v, p: v > p, False),
    "NumericGreaterThanEquals": (lambda v, p: v >= p, False),
}

_TLS_VERSIONS = ("1.2", "1.3")
"""What ``s3:TlsVersion`` can be on a request over TLS: AWS's endpoints refuse TLS
below 1.2. AWS's own recommended statement (deny ``NumericLessThan s3:TlsVersion
1.2``) therefore never denies the SAM's reads; one that denies below 1.3 might (the
SAM's client may speak 1.2), and counts as possibly denying."""


def _numeric(op: str, value: str, expected: Sequence[str]) -> bool | None:
    match, negated = _NUMERIC_OPS[op]
    try:
        v = float(value)
        hit = any(match(v, float(p)) for p in expected)
    except (TypeError, ValueError):
        return None
    return not hit if negated else hit


def _condition(op: str, key: str, expected: Sequence[str], ctx: Mapping[str, str]) -> bool | None:
    """True/False, or None when the operator, or the key's value, is unknown."""
    if (
        key.lower() == "s3:tlsversion"
        and key.lower() not in ctx
        and str(ctx.get("aws:securetransport", "")).lower() == "true"
    ):
        # over TLS the version is one of a few: the condition is known if it agrees
        # for all of them
        results = {
            _condition(op, key, expected, {**ctx, "s3:tlsversion": v}) for v in _TLS_VERSIONS
        }
        return results.pop() if len(results) == 1 else None
    for prefix in ("ForAnyValue:", "ForAllValues:"):
        if op.startswith(prefix):
            op = op[len(prefix) :]
    if_exists = op.endswith("IfExists")
    if if_exists:
        op = op[: -len("IfExists")]
    value = ctx.get(key.lower())
    if value is None and _unknown_when_missing(key.lower()):
        return None
    if op == "Null":
        present = value is not None
        return any((p.lower() == "true") != present for p in expected)
    if op in _NUMERIC_OPS:
        if value is None:
            return True if if_exists else _NUMERIC_OPS[op][1]
        return _numeric(op, value, expected)
    known = _STRING_OPS.get(op)
    if known is None:
        return None
    match, negated = known
    if value is None:
        return True if if_exists else negated
    hit = any(match(value, p) for p in expected)
    return not hit if negated else hit


def _conditions_hold(stmt: Mapping[str, Any], ctx: Mapping[str, str]) -> bool | None:
    block = stmt.get("Condition") or {}
    if not isinstance(block, Mapping):
        return None
    unknown = False
    for op, pairs in block.items():
        if not isinstance(pairs, Mapping):
            return None
        for key, expected in pairs.items():
            result = _condition(str(op), str(key), _as_list(expected), ctx)
            if result is False:
                return False
            if result is None:
                unknown = True
    return None if unknown else True


def evaluate(
    policy: Mapping[str, Any] | None, req: Request, *, identity: bool = False
) -> Evaluation:
    """Evaluate one policy for one request. ``identity`` marks an IAM identity
    policy, whose statements have no Principal and apply to the role itself."""
    if not policy:
        return Evaluation()
    ctx = {**_principal_context(req), **{k.lower(): v for k, v in req.context.items()}}
    allowed: list[str] = []
    denied: list[str] = []
    maybe: list[str] = []
    for n, stmt in enumerate(_statements(policy)):
        sid = str(stmt.get("Sid") or f"#{n + 1}")
        effect = stmt.get("Effect")
        if effect not in ("Allow", "Deny"):
            continue
        if not identity:
            if "Principal" in stmt:
                if not _principal_matches(stmt["Principal"], req, effect):
                    continue
            elif "NotPrincipal" in stmt:
                exempt = _not_principal_exempts(stmt["NotPrincipal"], req)
                if exempt is True:
                    continue
                if exempt is None:
                    # whether it leaves the role's sessions out depends on their
                    # names: never counted as a grant, a possible denial
                    if (
                        effect == "Deny"
                        and _action_matches(stmt, req.action)
                        and _resource_matches(stmt, req.resource)
                    ):
                        maybe.append(sid)
                    continue
            else:
                continue
        if not (_action_matches(stmt, req.action) and _resource_matches(stmt, req.resource)):
            continue
        holds = _conditions_hold(stmt, ctx)
        if effect == "Allow" and holds is True:
            allowed.append(sid)
        elif effect == "Deny" and holds is True:
            denied.append(sid)
        elif effect == "Deny" and holds is None:
            maybe.append(sid)
    return Evaluation(tuple(allowed), tuple(denied), tuple(maybe))
