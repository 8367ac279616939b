"""The policy evaluation behind the grant checks, on policies as AWS documents them:
conservative where it cannot be sure, so "allowed" is something the SAM can rely on."""

from __future__ import annotations

import json

from lip_dagster.sam.policy import Request, evaluate, parse_policy
from lip_dagster_tests.sam.conftest import policy_file

ROLE = "arn:aws:iam::123456789012:role/sam-reader"
BUCKET = "acme-lip-okta"
OBJECT = f"arn:aws:s3:::{BUCKET}/lake/source=okta/x.ndjson.gz"


def test_the_vpc_endpoint_lockdown_denies_listing_from_outside_only() -> None:
    policy = policy_file("deny_outside_vpce.json", BUCKET=BUCKET, VPCE="vpce-1")
    outside = Request("s3:ListBucket", f"arn:aws:s3:::{BUCKET}", ROLE, context={})
    inside = Request(
        "s3:ListBucket", f"arn:aws:s3:::{BUCKET}", ROLE, context={"aws:SourceVpce": "vpce-1"}
    )
    assert evaluate(policy, outside).denied_by == ("Access-to-specific-VPCE-only",)
    assert not evaluate(policy, inside).denied


def test_an_account_root_principal_grants_the_role_nothing_by_itself() -> None:
    policy = policy_file("kms_default_key_policy.json", ACCOUNT="123456789012")
    ev = evaluate(policy, Request("kms:Decrypt", "arn:aws:kms:us-east-1:1:key/k", ROLE))
    assert not ev.allowed and ev.allowed_by == ()


def test_what_a_key_hands_the_accounts_iam_policies_is_asked_as_its_root() -> None:
    """AWS stores a bare account id as the account's root; which of the account's
    principals signs is unknown, so a Deny keyed on it is a possible denial only."""
    root = "arn:aws:iam::123456789012:root"
    key = "arn:aws:kms:us-east-1:123456789012:key/k"
    doc = policy_file("kms_default_key_policy.json", ACCOUNT="123456789012")
    doc["Statement"][0]["Principal"] = {"AWS": "123456789012"}
    assert evaluate(doc, Request("kms:GenerateDataKey", key, root)).allowed
    doc["Statement"].append(
        {
            "Sid": "OnlyBreakGlass",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "kms:*",
            "Resource": "*",
            "Condition": {"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/lip-*"}},
        }
    )
    ev = evaluate(doc, Request("kms:GenerateDataKey", key, root))
    assert ev.maybe_denied_by == ("OnlyBreakGlass",) and not ev.denied


def test_an_operator_it_does_not_know_makes_a_deny_count_as_possible() -> None:
    policy = policy_file("deny_outside_office_ips.json", BUCKET=BUCKET, ROLE=ROLE)
    ev = evaluate(policy, Request("s3:GetObject", OBJECT, ROLE, context={}))
    assert ev.allowed_by == ("SamRead",)
    assert ev.maybe_denied_by == ("DenyOutsideOfficeNetworks",)
    assert not ev.allowed  # cannot be sure: the SAM's read is not reported as granted
    assert not ev.denied  # nor is a non-TLS request reported as certainly denied


TLS = {"aws:SecureTransport": "true"}


def test_awss_recommended_tls_1_2_floor_does_not_deny_the_sams_reads() -> None:
    """AWS's endpoints refuse TLS below 1.2, so a bucket hardened with AWS's own
    statement still lets the SAM read: the blocking read check must pass."""
    policy = policy_file("deny_tls_below_1_2.json", BUCKET=BUCKET, ROLE=ROLE)
    ev = evaluate(policy, Request("s3:GetObject", OBJECT, ROLE, context=TLS))
    assert ev.allowed and ev.allowed_by == ("SamRead",)
    assert not ev.maybe_denied_by


def test_a_tls_1_3_floor_might_deny_a_sam_speaking_tls_1_2() -> None:
    doc = policy_file("deny_tls_below_1_2.json", BUCKET=BUCKET, ROLE=ROLE)
    doc["Statement"][0]["Condition"] = {"NumericLessThan": {"s3:TlsVersion": 1.3}}
    ev = evaluate(doc, Request("s3:GetObject", OBJECT, ROLE, context=TLS))
    assert ev.maybe_denied_by == ("EnforceTLSv12orHigher",)
    assert not ev.allowed
    told = {**TLS, "s3:TlsVersion": "1.3"}  # a request whose version is known
    assert evaluate(doc, Request("s3:GetObject", OBJECT, ROLE, context=told)).allowed


def test_a_tls_floor_alone_does_not_deny_plain_http() -> None:
    """Without TLS there is no s3:TlsVersion, so the floor's condition does not hold:
    the TLS-only check still needs a SecureTransport deny."""
    policy = policy_file("deny_tls_below_1_2.json", BUCKET=BUCKET, ROLE=ROLE)
    plain = {"aws:SecureTransport": "false"}
    assert not evaluate(policy, Request("s3:GetObject", OBJECT, "*", context=plain)).denied


def test_service_principals_and_conditions_on_the_sams_queue_policy() -> None:
    queue = "arn:aws:sqs:us-east-1:123456789012:sam"
    policy = policy_file("sam_queue_policy.json", QUEUE=queue, ACCOUNT="123456789012")

    def send(account: str) -> Request:
        return Request(
            "sqs:SendMessage",
            queue,
            service="s3.amazonaws.com",
            context={"aws:SourceArn": f"arn:aws:s3:::{BUCKET}", "aws:SourceAccount": account},
        )

    assert evaluate(policy, send("123456789012")).allowed  # the action's case does not matter
    assert not evaluate(policy, send("999999999999")).allowed
    assert not evaluate(policy, Request("sqs:SendMessage", queue, ROLE)).allowed


def test_negated_operators_hold_when_the_key_is_absent_as_in_aws() -> None:
    doc = parse_policy(
        '{"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*", '
        '"Resource": "*", "Condition": {"StringNotEqualsIfExists": {"aws:SourceVpce": "v"}}}]}'
    )
    assert evaluate(doc, Request("s3:GetObject", OBJECT, ROLE)).denied
    assert not evaluate(
        doc, Request("s3:GetObject", OBJECT, ROLE, context={"aws:sourcevpce": "v"})
    ).denied


def test_identity_policies_apply_without_a_principal() -> None:
    policy = policy_file("sam_role_index_write.json", INDEX="sam-index")
    put = Request("s3:PutObject", "arn:aws:s3:::sam-index/state/1", ROLE)
    assert evaluate(policy, put, identity=True).allowed
    assert not evaluate(policy, put).allowed  # as a resource policy it names nobody
    other = Request("s3:PutObject", "arn:aws:s3:::other-bucket/x", ROLE)
    assert not evaluate(policy, other, identity=True).allowed


def _not_principal(*exempt: str) -> dict:
    return policy_file(
        "deny_all_but_not_principal.json", BUCKET=BUCKET, ROLE=ROLE, EXEMPT=json.dumps(exempt)
    )


def test_a_not_principal_deny_blocks_a_role_its_account_root_does_not_exempt() -> None:
    """As in AWS: an account ARN in NotPrincipal exempts that account's root user, not
    its roles, so "deny all but the account and LIP's runner" denies the SAM."""
    runner = "arn:aws:iam::123456789012:role/lip-runner"
    ev = evaluate(
        _not_principal("arn:aws:iam::123456789012:root", runner),
        Request("s3:GetObject", OBJECT, ROLE),
    )
    assert ev.denied_by == ("OnlyTheseMayTouchIt",) and not ev.allowed


def test_a_not_principal_deny_exempts_a_role_listed_with_its_sessions() -> None:
    session = "arn:aws:sts::123456789012:assumed-role/sam-reader/sam-indexer"
    ev = evaluate(_not_principal(ROLE, session), Request("s3:GetObject", OBJECT, ROLE))
    assert ev.allowed and ev.allowed_by == ("SamRead",)
    # the role alone: whether AWS leaves its sessions out cannot be told from here
    ev = evaluate(_not_principal(ROLE), Request("s3:GetObject", OBJECT, ROLE))
    assert ev.maybe_denied_by == ("OnlyTheseMayTouchIt",) and not ev.allowed
