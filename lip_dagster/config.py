"""Settings read from the environment once, validated at load.

Every variable LIP reads is declared here (the README's configuration table mirrors
this file). A missing or malformed value fails at load with a message naming the
variable, never later inside a run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lip_dagster.errors import ConfigError

BACKENDS = ("embedded", "aws")

_ARN_RE = re.compile(
    r"arn:(?P<partition>[^:]+):(?P<service>[^:]+):(?P<region>[^:]*):"
    r"(?P<account>[^:]*):(?P<resource>.+)\Z"
)
# S3's rule for bucket names: lower-case letters, digits, '.' and '-', starting and
# ending with a letter or digit (their length, 3-63, depends on the source name:
# `lip provision` checks each source's)
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]+[a-z0-9]\Z")
# what DynamoDB table and SQS queue names both allow
_RESOURCE_PREFIX_RE = re.compile(r"[A-Za-z0-9_-]{0,40}\Z")


def parse_arn(arn: str) -> dict[str, str] | None:
    """An ARN's parts (partition, service, region, account, resource), or None."""
    m = _ARN_RE.match(arn or "")
    return m.groupdict() if m else None


def _arn(env: Mapping[str, str], name: str, service: str, resource: str) -> str | None:
    """An optional ARN of ``service`` whose resource starts with ``resource``."""
    raw = env.get(name) or None
    if raw is None:
        return None
    parts = parse_arn(raw)
    if parts is None or parts["service"] != service or not parts["resource"].startswith(resource):
        raise ConfigError(
            f"{name} must be an ARN such as arn:aws:{service}:...:{resource}..., got {raw!r}"
        )
    return raw


def _prefix(env: Mapping[str, str], name: str, default: str) -> str:
    """A key prefix in the lake bucket: a folder, so neither empty (the bucket root
    would be the lake, with quarantine in it) nor without its trailing ``/`` (the
    lake's ``source=`` keys would be glued to it and fall outside the layout)."""
    value = env.get(name, default)
    if not value or not value.endswith("/") or value.startswith("/") or "//" in value:
        raise ConfigError(
            f"{name} must be a folder such as {default!r}: not empty, ending in '/', "
            f"not starting with '/', got {value!r}"
        )
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _template(env: Mapping[str, str], name: str, default: str | None) -> str:
    raw = env.get(name) or default
    if not raw:
        raise ConfigError(f"{name} is required when LIP_BACKEND=aws")
    try:
        plain = raw.format(source="x") == raw.replace("{source}", "x")
    except (KeyError, IndexError, ValueError, AttributeError):
        plain = False
    if not plain:  # another placeholder, a format spec or an attribute of it
        raise ConfigError(f"{name} may only use the placeholder {{source}}: {raw!r}") from None
    if "{source}" not in raw:
        # DESIGN: each source's objects are encrypted with its own key, in a bucket
        # whose default encryption is that key; `lip provision` refuses a shared one,
        # and so does every run (a stack provisioned by other tools included)
        raise ConfigError(
            f"{name}={raw!r} has no {{source}}: sources would share one resource; "
            "give each source its own (e.g. 'acme-lip-{source}')"
        )
    return raw


def _bucket_template(env: Mapping[str, str]) -> str:
    raw = _template(env, "LIP_S3_BUCKET", None)
    sample = raw.format(source="okta")
    if not _BUCKET_RE.match(sample) or ".." in sample:
        raise ConfigError(
            f"LIP_S3_BUCKET={raw!r} does not give valid S3 bucket names (it gives "
            f"{sample!r} for okta): lower-case letters, digits, '.' and '-', starting "
            "and ending with a letter or digit, and no 's3://'"
        )
    return raw


@dataclass(frozen=True)
class AwsSettings:
    region: str
    endpoint_url: str | None
    bucket_template: str
    kms_key_template: str
    lake_prefix: str
    quarantine_prefix: str
    resource_prefix: str
    secrets_prefix: str

    def bucket(self, source: str) -> str:
        # S3 bucket names allow no '_' but source names do (google_workspace): the
        # bucket spells it '-'. `lip provision` refuses two sources that would share.
        return self.bucket_template.format(source=source.replace("_", "-"))

    def kms_key(self, source: str) -> str:
        return self.kms_key_template.format(source=source)


@dataclass(frozen=True)
class SamSettings:
    role_arn: str | None
    queue_arn: str | None
    index_bucket: str | None
    vpce_id: str | None
    lip_roles: tuple[tuple[str, str], ...] = ()
    """LIP's own deployed roles (``LIP_ROLE_ARNS``) as (process, role ARN) pairs, the
    processes named as in ``permissions.py``; empty when not set."""


ROLE_PROCESSES = ("run", "sensors", "receiver", "serve")
"""The deployed processes that use a source's key (``permissions.py``; provisioning is
an administrator's, never a deployed role)."""


def _lip_roles(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """``LIP_ROLE_ARNS``: ``process=role ARN`` pairs, comma-separated. Which process
    runs as a role decides what the key check asks of it (the receiver never writes
    the lake), so a bare ARN is refused. One role may run several processes (one
    Kubernetes service account for runs and sensors); the roles are one deployment's,
    so they share one account."""
    name = "LIP_ROLE_ARNS"
    raw = env.get(name) or ""
    pairs: list[tuple[str, str]] = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        process, sep, arn = (part.strip() for part in entry.partition("="))
        if not sep or process not in ROLE_PROCESSES or not arn:
            raise ConfigError(
                f"{name} must list process=role ARN pairs, the process one of "
                f"{', '.join(ROLE_PROCESSES)} (e.g. run=arn:aws:iam::123456789012:role/"
                f"lip-run), got {entry!r}"
            )
        if any(process == p for p, _ in pairs):
            raise ConfigError(f"{name} names the {process} role twice: {raw!r}")
        _arn({name: arn}, name, "iam", "role/")
        pairs.append((process, arn))
    accounts = {(parse_arn(arn) or {}).get("account") for _, arn in pairs}
    if len(accounts) > 1:
        raise ConfigError(
            f"{name} names roles of several accounts ({', '.join(sorted(map(str, accounts)))}):"
            " LIP's roles are one deployment's, in one account"
        )
    return tuple(pairs)


@dataclass(frozen=True)
class AlertSettings:
    notifiers: tuple[str, ...]
    webhook_secret: str
    slack_secret: str
    github_token_secret: str
    github_repo: str | None
    github_api_url: str | None


def check_freshness_minutes(warn: int | None, fail: int) -> None:
    """Every source's freshness windows (a ``ValueError`` for its YAML's validator):
    the warning must come before the failure, or it never shows."""
    if warn is not None and warn >= fail:
        raise ValueError(
            f"freshness_warn_minutes ({warn}) must be less than freshness_fail_minutes "
            f"({fail}): the warning comes before the failure"
        )


NOTIFIERS = ("webhook", "slack", "github")
ALERT_SECRETS_PREFIX = "alerts/"
"""Where notifier secrets live, under the secrets prefix: the deployed sensors may read
``<LIP_SECRETS_PREFIX>alerts/*`` and no other secret (deploy/ecs/lip-dagster.cfn.yaml)."""


def _alert_secret(env: Mapping[str, str], name: str, default: str) -> str:
    """A notifier's secret name, refused at load outside ``alerts/``: on AWS the
    alert sensor could not read it, and every alert would fail with AccessDenied.
    The rule holds on every backend, so a setting tried locally works when deployed."""
    value = env.get(name) or default
    if not value.startswith(ALERT_SECRETS_PREFIX) or value == ALERT_SECRETS_PREFIX:
        raise ConfigError(
            f"{name}={value!r}: notifier secrets must be named under "
            f"{ALERT_SECRETS_PREFIX!r} (e.g. {default!r}), the only secrets the deployed "
            "alert sensor may read"
        )
    return value


def _alerts(env: Mapping[str, str]) -> AlertSettings:
    names = tuple(n.strip() for n in env.get("LIP_ALERT_NOTIFIERS", "").split(",") if n.strip())
    unknown = [n for n in names if n not in NOTIFIERS]
    if unknown:
        raise ConfigError(
            f"LIP_ALERT_NOTIFIERS: unknown notifier(s) {unknown}; use {', '.join(NOTIFIERS)}"
        )
    repo = env.get("LIP_ALERT_GITHUB_REPO") or None
    if "github" in names and not repo:
        raise ConfigError("LIP_ALERT_GITHUB_REPO (OWNER/REPO) is required for the github notifier")
    return AlertSettings(
        notifiers=names,
        webhook_secret=_alert_secret(env, "LIP_ALERT_WEBHOOK_SECRET", "alerts/webhook-url"),
        slack_secret=_alert_secret(env, "LIP_ALERT_SLACK_SECRET", "alerts/slack-webhook-url"),
        github_token_secret=_alert_secret(
            env, "LIP_ALERT_GITHUB_TOKEN_SECRET", "alerts/github-token"
        ),
        github_repo=repo,
        github_api_url=env.get("LIP_GITHUB_API_URL") or None,
    )


@dataclass(frozen=True)
class Settings:
    backend: str
    home: Path
    max_object_bytes: int
    max_object_events: int
    dedupe_ttl_days: int
    run_log_days: int
    buffer_max_receives: int
    secret_ttl_seconds: int
    aws: AwsSettings | None
    sam: SamSettings
    alerts: AlertSettings

    @property
    def lake_dir(self) -> Path:
        return self.home / "lake"

    @property
    def tmp_dir(self) -> Path:
        return self.home / "tmp"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def state_db(self) -> Path:
        return self.home / "state.db"

    @property
    def secrets_file(self) -> Path:
        return self.home / "secrets.json"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        backend = env.get("LIP_BACKEND", "embedded") or "embedded"
        if backend not in BACKENDS:
            raise ConfigError(f"LIP_BACKEND must be one of {', '.join(BACKENDS)}, got {backend!r}")
        home = Path(env.get("LIP_HOME") or ".lip").expanduser().absolute()
        if home.exists() and not home.is_dir():
            raise ConfigError(f"LIP_HOME={home} exists and is not a directory")
        aws = None
        if backend == "aws":
            region = env.get("LIP_AWS_REGION") or env.get("AWS_DEFAULT_REGION") or ""
            if not region:
                raise ConfigError("LIP_AWS_REGION (or AWS_DEFAULT_REGION) is required")
            endpoint = env.get("LIP_AWS_ENDPOINT_URL") or None
            if endpoint and not endpoint.startswith(("http://", "https://")):
                raise ConfigError(f"LIP_AWS_ENDPOINT_URL must be an http(s) URL: {endpoint!r}")
            lake_prefix = _prefix(env, "LIP_S3_LAKE_PREFIX", "lake/")
            quarantine_prefix = _prefix(env, "LIP_S3_QUARANTINE_PREFIX", "quarantine/")
            if quarantine_prefix.startswith(lake_prefix) or lake_prefix.startswith(
                quarantine_prefix
            ):
                raise ConfigError(
                    f"LIP_S3_QUARANTINE_PREFIX ({quarantine_prefix!r}) and LIP_S3_LAKE_PREFIX "
                    f"({lake_prefix!r}) overlap: the SAM reads everything under the lake "
                    "prefix, and quarantine must not be in it"
                )
            resource_prefix = env.get("LIP_AWS_RESOURCE_PREFIX", "lip-")
            if not _RESOURCE_PREFIX_RE.match(resource_prefix):
                raise ConfigError(
                    "LIP_AWS_RESOURCE_PREFIX begins every table and queue name, and may "
                    "hold only letters, digits, '_' and '-' (40 at most), got "
                    f"{resource_prefix!r}"
                )
            aws = AwsSettings(
                region=region,
                endpoint_url=endpoint,
                bucket_template=_bucket_template(env),
                kms_key_template=_template(env, "LIP_KMS_KEY", "alias/lip-{source}"),
                lake_prefix=lake_prefix,
                quarantine_prefix=quarantine_prefix,
                resource_prefix=resource_prefix,
                secrets_prefix=env.get("LIP_SECRETS_PREFIX", "lip/"),
            )
        return cls(
            backend=backend,
            home=home,
            max_object_bytes=_int(env, "LIP_MAX_OBJECT_BYTES", 5_000_000, minimum=1024),
            max_object_events=_int(env, "LIP_MAX_OBJECT_EVENTS", 100_000),
            dedupe_ttl_days=_int(env, "LIP_DEDUPE_TTL_DAYS", 30),
            run_log_days=_int(env, "LIP_RUN_LOG_DAYS", 30),
            buffer_max_receives=_int(env, "LIP_BUFFER_MAX_RECEIVES", 5),
            secret_ttl_seconds=_int(env, "LIP_SECRET_TTL_SECONDS", 300, minimum=0),
            aws=aws,
            sam=SamSettings(
                role_arn=_arn(env, "LIP_SAM_ROLE_ARN", "iam", "role/"),
                queue_arn=_arn(env, "LIP_SAM_QUEUE_ARN", "sqs", ""),
                index_bucket=env.get("LIP_SAM_INDEX_BUCKET") or None,
                vpce_id=env.get("LIP_SAM_VPCE_ID") or None,
                lip_roles=_lip_roles(env),
            ),
            alerts=_alerts(env),
        )
