"""Vendor-written objects, as the vendors write them (VENDORS.md §5-§7): CloudTrail log
files and digests, GitHub audit-log streaming files, Cloudflare Logpush files and the
Logpush ownership challenge, for tests, the demo and benchmarks.

Keys follow the vendors' documented layouts, including the awkward parts an ingester
must survive: organization-trail keys with an extra ``o-<orgid>`` level, digest files
beside the logs, GitHub's day-less ``YYYY/MM/HH/MM/<uuid>.json.gz`` names and the
``ownership-challenge.txt`` object Cloudflare drops before the first upload.

``write_object`` puts one object into a local landing directory the way S3 does:
whole or not at all (a temporary file renamed into place). Nothing in the product
imports this module.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import random
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from isal import igzip

Event = dict[str, Any]

ACCOUNT = "111122223333"
ORG_ID = "o-aa111bb222"
REGIONS = ("us-east-1", "us-east-2", "eu-west-1")
GITHUB_ORG = "octo-corp"
_PEOPLE = (
    "ada",
    "grace",
    "alan",
    "barbara",
    "claude",
    "edsger",
    "frances",
    "hedy",
    "linus",
    "margaret",
    "radia",
    "shafi",
)
_IPS = ("89.160.20.156", "81.2.69.142", "175.16.199.1", "67.43.156.14", "216.160.83.57")
_AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "aws-cli/2.15.30 Python/3.11.8 Darwin/23.3.0 exe/x86_64 prompt/off command/s3.cp",
    "Boto3/1.34.60 md/Botocore#1.34.60 ua/2.0 os/linux#6.1 lang/python#3.11.8",
    "terraform-provider-aws/5.40.0 (+https://registry.terraform.io)",
)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _times(n: int, start: datetime, end: datetime, rng: random.Random) -> list[datetime]:
    span = (end - start).total_seconds()
    return sorted(start + timedelta(seconds=rng.random() * span) for _ in range(n))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# ------------------------------------------------------------------------- CloudTrail


def _ct_identity(rng: random.Random, account: str) -> dict[str, Any]:
    who = rng.choice(_PEOPLE)
    kind = rng.random()
    if kind < 0.45:
        return {
            "type": "IAMUser",
            "principalId": "AIDA" + hashlib.sha1(who.encode()).hexdigest()[:17].upper(),  # noqa: S324
            "arn": f"arn:aws:iam::{account}:user/{who}",
            "accountId": account,
            "accessKeyId": "AKIA" + hashlib.md5(who.encode()).hexdigest()[:16].upper(),  # noqa: S324
            "userName": who,
        }
    if kind < 0.9:
        role = rng.choice(("AdministratorAccess", "ReadOnly", "deploy-ci", "lambda-exec"))
        return {
            "type": "AssumedRole",
            "principalId": f"AROA{hashlib.sha1(role.encode()).hexdigest()[:17].upper()}:{who}",  # noqa: S324
            "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{who}",
            "accountId": account,
            "accessKeyId": "ASIA" + _uuid(rng).replace("-", "")[:16].upper(),
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": "AROA" + hashlib.sha1(role.encode()).hexdigest()[:17].upper(),  # noqa: S324
                    "arn": f"arn:aws:iam::{account}:role/{role}",
                    "accountId": account,
                    "userName": role,
                },
                "attributes": {
                    "creationDate": "2026-01-01T00:00:00Z",
                    "mfaAuthenticated": rng.choice(("true", "false")),
                },
            },
        }
    if kind < 0.97:
        return {"type": "AWSService", "invokedBy": rng.choice(("ec2.amazonaws.com", "config"))}
    return {
        "type": "Root",
        "principalId": account,
        "arn": f"arn:aws:iam::{account}:root",
        "accountId": account,
    }


def cloudtrail_record(rng: random.Random, t: datetime, account: str, region: str) -> Event:
    """One CloudTrail record in the documented shape; a spread of services and
    events, some with ``resources`` arrays, errors, and JSON policy documents inside
    strings (braces in strings are what streaming parsers trip on)."""
    ip = rng.choice(_IPS)
    rec: Event = {
        "eventVersion": "1.09",
        "userIdentity": _ct_identity(rng, account),
        "eventTime": _iso(t),
        "eventSource": "",
        "eventName": "",
        "awsRegion": region,
        "sourceIPAddress": ip,
        "userAgent": rng.choice(_AGENTS),
        "requestParameters": None,
        "responseElements": None,
        "requestID": _uuid(rng),
        "eventID": _uuid(rng),
        "readOnly": True,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
        "tlsDetails": {
            "tlsVersion": "TLSv1.3",
            "cipherSuite": "TLS_AES_128_GCM_SHA256",
            "clientProvidedHostHeader": f"s3.{region}.amazonaws.com",
        },
    }
    pick = rng.random()
    if pick < 0.15:
        rec.update(
            eventSource="signin.amazonaws.com",
            eventName="ConsoleLogin",
            eventType="AwsConsoleSignIn",
            readOnly=False,
            responseElements={"ConsoleLogin": rng.choice(("Success", "Success", "Failure"))},
            additionalEventData={
                "LoginTo": "https://console.aws.amazon.com/console/home",
                "MobileVersion": "No",
                "MFAUsed": rng.choice(("Yes", "No")),
            },
        )
        del rec["tlsDetails"]
    elif pick < 0.45:
        bucket = rng.choice(("acme-data", "acme-logs", "acme-artifacts"))
        key = f"reports/{t:%Y/%m/%d}/{rng.getrandbits(32):08x}.csv"
        name = rng.choice(("GetObject", "PutObject", "HeadObject"))
        rec.update(
            eventSource="s3.amazonaws.com",
            eventName=name,
            readOnly=name != "PutObject",
            eventCategory="Data",
            managementEvent=False,
            requestParameters={
                "bucketName": bucket,
                "key": key,
                "Host": f"{bucket}.s3.amazonaws.com",
            },
            resources=[
                {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"},
                {"accountId": account, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"},
            ],
            additionalEventData={
                "bytesTransferredIn": 0,
                "bytesTransferredOut": rng.randint(1, 10**7),
            },
        )
    elif pick < 0.65:
        role = rng.choice(("deploy-ci", "ReadOnly", "lambda-exec"))
        rec.update(
            eventSource="sts.amazonaws.com",
            eventName="AssumeRole",
            requestParameters={
                "roleArn": f"arn:aws:iam::{account}:role/{role}",
                "roleSessionName": rng.choice(_PEOPLE),
                "durationSeconds": 3600,
            },
            responseElements={
                "credentials": {
                    "accessKeyId": "ASIA" + _uuid(rng).replace("-", "")[:16].upper(),
                    "expiration": f"{t + timedelta(hours=1):%b %d, %Y, %I:%M:%S %p}",
                    "sessionToken": base64.b64encode(rng.randbytes(96)).decode(),
                },
                "assumedRoleUser": {
                    "assumedRoleId": "AROA" + _uuid(rng).replace("-", "")[:17].upper(),
                    "arn": f"arn:aws:sts::{account}:assumed-role/{role}/session",
                },
            },
            resources=[
                {
                    "accountId": account,
                    "type": "AWS::IAM::Role",
                    "ARN": f"arn:aws:iam::{account}:role/{role}",
                }
            ],
        )
    elif pick < 0.8:
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}],
        }
        rec.update(
            eventSource="iam.amazonaws.com",
            eventName=rng.choice(("PutRolePolicy", "CreatePolicyVersion")),
            readOnly=False,
            requestParameters={
                "roleName": rng.choice(("deploy-ci", "lambda-exec")),
                "policyName": "inline-read",
                "policyDocument": orjson.dumps(policy).decode(),
            },
        )
    elif pick < 0.95:
        rec.update(
            eventSource="ec2.amazonaws.com",
            eventName="DescribeInstances",
            requestParameters={
                "instancesSet": {},
                "filterSet": {
                    "items": [{"name": "tag:team", "valueSet": {"items": [{"value": "sec"}]}}]
                },
            },
        )
    else:
        rec.update(
            eventSource="kms.amazonaws.com",
            eventName="Decrypt",
            errorCode="AccessDenied",
            errorMessage=(
                f"User: arn:aws:iam::{account}:user/x is not authorized to perform: kms:Decrypt"
            ),
        )
    return rec


def cloudtrail_records(
    n: int,
    start: datetime,
    end: datetime,
    seed: int = 0,
    account: str = ACCOUNT,
    region: str = REGIONS[1],
) -> list[Event]:
    """``n`` records with ``eventTime`` in ``[start, end)``, in time order."""
    rng = random.Random(seed)
    return [cloudtrail_record(rng, t, account, region) for t in _times(n, start, end, rng)]


def _unique16(rng: random.Random) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(rng.choice(alphabet) for _ in range(16))


def cloudtrail_key(
    delivered: datetime,
    rng: random.Random,
    account: str = ACCOUNT,
    region: str = REGIONS[1],
    prefix: str = "",
    org_id: str | None = None,
) -> str:
    """``[prefix/]AWSLogs/[o-org/]<acct>/CloudTrail/<region>/YYYY/MM/DD/<acct>_CloudTrail_
    <region>_<YYYYMMDDTHHmmZ>_<16 chars>.json.gz`` (VENDORS.md §7)."""
    d = delivered.astimezone(UTC)
    org = f"{org_id}/" if org_id else ""
    return (
        f"{prefix}AWSLogs/{org}{account}/CloudTrail/{region}/{d:%Y/%m/%d}/"
        f"{account}_CloudTrail_{region}_{d:%Y%m%dT%H%MZ}_{_unique16(rng)}.json.gz"
    )


def cloudtrail_digest_key(
    delivered: datetime, account: str = ACCOUNT, region: str = REGIONS[1], prefix: str = ""
) -> str:
    d = delivered.astimezone(UTC)
    return (
        f"{prefix}AWSLogs/{account}/CloudTrail-Digest/{region}/{d:%Y/%m/%d}/"
        f"{account}_CloudTrail-Digest_{region}_management-trail_{region}_{d:%Y%m%dT%H%M%SZ}.json.gz"
    )


def cloudtrail_digest(delivered: datetime, log_keys: Iterable[str], bucket: str) -> Event:
    """A digest file: hashes of the hour's log files, signed (here: fake values)."""
    d = delivered.astimezone(UTC)
    return {
        "awsAccountId": ACCOUNT,
        "digestStartTime": _iso(d - timedelta(hours=1)),
        "digestEndTime": _iso(d),
        "digestS3Bucket": bucket,
        "digestSignatureAlgorithm": "SHA256withRSA",
        "digestPublicKeyFingerprint": hashlib.md5(b"lip").hexdigest(),  # noqa: S324
        "logFiles": [
            {
                "s3Bucket": bucket,
                "s3Object": k,
                "hashValue": hashlib.sha256(k.encode()).hexdigest(),
                "hashAlgorithm": "SHA-256",
            }
            for k in log_keys
        ],
    }


def cloudtrail_file(records: list[Event]) -> bytes:
    """A CloudTrail log file body: gzip of ``{"Records":[...]}`` (compact, as AWS
    writes it)."""
    return gzip_bytes(orjson.dumps({"Records": records}))


# ---------------------------------------------------------------- GitHub streaming

_GH_ACTIONS = (
    ("git.clone", 30),
    ("repo.access", 6),
    ("org.add_member", 3),
    ("team.add_member", 4),
    ("repo.create", 3),
    ("protected_branch.update", 2),
    ("oauth_authorization.create", 2),
    ("personal_access_token.request_created", 2),
    ("repo.download_zip", 3),
    ("workflows.completed_workflow_run", 20),
    ("business.set_actions_retention_limit", 1),
)


def github_stream_events(n: int, start: datetime, end: datetime, seed: int = 0) -> list[Event]:
    """Audit-log streaming events: the REST shape (VENDORS.md §5), ``@timestamp`` and
    ``created_at`` in epoch milliseconds, ``_document_id`` as the id."""
    rng = random.Random(seed)
    names = [a for a, _ in _GH_ACTIONS]
    weights = [w for _, w in _GH_ACTIONS]
    out = []
    for t in _times(n, start, end, rng):
        ms = int(t.timestamp() * 1000)
        action = rng.choices(names, weights)[0]
        ev: Event = {
            "@timestamp": ms,
            "_document_id": base64.urlsafe_b64encode(rng.randbytes(16)).decode().rstrip("="),
            "action": action,
            "actor": rng.choice(_PEOPLE),
            "actor_location": {"country_code": rng.choice(("US", "GB", "DE", "IN"))},
            "business": "octo-business",
            "created_at": ms,
            "operation_type": "access" if action.startswith(("git.", "repo.access")) else "modify",
            "org": GITHUB_ORG,
            "user_agent": rng.choice(_AGENTS),
        }
        if action.startswith(("git.", "repo.", "protected_branch", "workflows")):
            ev["repo"] = f"{GITHUB_ORG}/{rng.choice(('api', 'web', 'infra', 'docs'))}"
        if action.startswith("git."):
            ev["transport_protocol_name"] = rng.choice(("http", "ssh"))
            ev["repository_public"] = False
        if action in ("org.add_member", "team.add_member"):
            ev["user"] = rng.choice(_PEOPLE)
            if action == "team.add_member":
                ev["team"] = f"{GITHUB_ORG}/security"
        out.append(ev)
    return out


def github_stream_key(t: datetime, rng: random.Random, prefix: str = "") -> str:
    """GitHub documents ``YYYY/MM/HH/MM/<uuid>.json.gz`` (no day segment)."""
    d = t.astimezone(UTC)
    return f"{prefix}{d:%Y/%m/%H/%M}/{_uuid(rng)}.json.gz"


def github_stream_file(events: list[Event]) -> bytes:
    return gzip_bytes(ndjson(events))


# ---------------------------------------------------------------- Cloudflare Logpush

_CF_ACTIONS = ("login", "token_create", "token_roll", "rec_add", "rec_set", "zone_setting_set")


def cloudflare_audit_events(n: int, start: datetime, end: datetime, seed: int = 0) -> list[Event]:
    """Logpush ``audit_logs`` records (VENDORS.md §6): ``ID`` and ``When``."""
    rng = random.Random(seed)
    owner = hashlib.md5(b"acct").hexdigest()  # noqa: S324
    out = []
    for t in _times(n, start, end, rng):
        action = rng.choice(_CF_ACTIONS)
        who = rng.choice(_PEOPLE)
        out.append(
            {
                "ActionResult": rng.random() > 0.05,
                "ActionType": action,
                "ActorEmail": f"{who}@example.com",
                "ActorID": hashlib.md5(who.encode()).hexdigest(),  # noqa: S324
                "ActorIP": rng.choice(_IPS),
                "ActorType": "user",
                "ID": _uuid(rng),
                "Interface": rng.choice(("UI", "API")),
                "Metadata": {"token_name": "ci"} if action.startswith("token") else {},
                "NewValue": {"value": rng.choice(("on", "off"))}
                if action.endswith("_set")
                else None,
                "OldValue": None,
                "OwnerID": owner,
                "ResourceID": hashlib.md5(action.encode()).hexdigest(),  # noqa: S324
                "ResourceType": "account" if action.startswith(("login", "token")) else "zone",
                "When": _iso(t),
            }
        )
    return out


def cloudflare_http_requests(n: int, start: datetime, end: datetime, seed: int = 0) -> list[Event]:
    """Logpush ``http_requests`` records: ``RayID`` and ``EdgeStartTimestamp`` (unix
    nanoseconds, one of Logpush's timestamp formats)."""
    rng = random.Random(seed)
    out = []
    for t in _times(n, start, end, rng):
        ns = int(t.timestamp() * 1e9)
        out.append(
            {
                "RayID": f"{rng.getrandbits(64):016x}",
                "EdgeStartTimestamp": ns,
                "EdgeEndTimestamp": ns + rng.randint(10**6, 10**8),
                "ClientIP": rng.choice(_IPS),
                "ClientRequestHost": "www.example.com",
                "ClientRequestMethod": rng.choice(("GET", "GET", "POST")),
                "ClientRequestURI": rng.choice(("/", "/login", "/api/v1/items", "/static/app.js")),
                "EdgeResponseStatus": rng.choice((200, 200, 200, 301, 403, 404, 500)),
                "ClientCountry": rng.choice(("us", "gb", "de")),
                "SecurityAction": rng.choice(("", "", "block", "managed_challenge")),
            }
        )
    return out


def logpush_key(start: datetime, end: datetime, rng: random.Random, prefix: str = "") -> str:
    """``<dir>/<YYYYMMDD>/<start>_<end>_<8 hex>.log.gz``: the ``{DATE}`` folder is
    documented; the file name is the commonly cited one (unverified, VENDORS.md §6)."""
    s, e = start.astimezone(UTC), end.astimezone(UTC)
    return (
        f"{prefix}{s:%Y%m%d}/{s:%Y%m%dT%H%M%SZ}_{e:%Y%m%dT%H%M%SZ}_{rng.getrandbits(32):08x}.log.gz"
    )


def logpush_file(records: list[Event]) -> bytes:
    return gzip_bytes(ndjson(records))


def ownership_challenge(rng: random.Random) -> bytes:
    """The challenge file holds a JWT (here: a well-formed fake one)."""

    def seg(obj: Any) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(obj)).decode().rstrip("=")

    claims = {"dest": "s3://landing/logs", "exp": 1_900_000_000, "nonce": rng.getrandbits(64)}
    sig = base64.urlsafe_b64encode(rng.randbytes(64)).decode().rstrip("=")
    return f"{seg({'alg': 'ES256', 'typ': 'JWT'})}.{seg(claims)}.{sig}".encode()


# ------------------------------------------------------------------------- writing


def ndjson(events: Iterable[Event]) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def gzip_bytes(data: bytes) -> bytes:
    return igzip.compress(data, compresslevel=1)


def write_object(root: Path, key: str, data: bytes) -> Path:
    """Put ``data`` at ``root/key`` whole or not at all, as an S3 PUT appears."""
    dest = root / key
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".put-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def stream_cloudtrail_file(
    path: Path, n_records: int, start: datetime, end: datetime, seed: int = 0, pad_bytes: int = 0
) -> int:
    """Write one large CloudTrail file to disk without holding it in memory (the
    bounded-memory test and benchmarks); ``pad_bytes`` of random base64 per record
    keep it from compressing. Returns the compressed size."""
    rng = random.Random(seed)
    times = _time_stream(n_records, start, end)
    with igzip.open(path, "wb", compresslevel=1) as gz:
        gz.write(b'{"Records":[')
        for i, t in enumerate(times):
            rec = cloudtrail_record(rng, t, ACCOUNT, REGIONS[1])
            if pad_bytes:
                rec["additionalEventData"] = {
                    "x-amz-id-2": base64.b64encode(os.urandom(pad_bytes * 3 // 4)).decode()
                }
            if i:
                gz.write(b",")
            gz.write(orjson.dumps(rec))
        gz.write(b"]}")
    return path.stat().st_size


def _time_stream(n: int, start: datetime, end: datetime) -> Iterator[datetime]:
    step = (end - start) / max(n, 1)
    for i in range(n):
        yield start + step * i


def read_gzip(data: bytes) -> bytes:
    """For assertions: stdlib gzip, the reader the SAM uses."""
    return gzip.decompress(data)
