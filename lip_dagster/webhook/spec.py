"""A webhook source as declared in YAML, and the loader the receiver uses.

The same model is the schema of the ``WebhookSource`` component (which inherits it)
and what the receiver reads at start. The receiver does not import Dagster to find
its sources: behind API Gateway on Lambda every cold start would pay for loading
the whole definitions (seconds, against Okta's 3-second timeout). It reads the same
``defs/*/defs.yaml`` files and renders ``{{ env.NAME }}`` templates the way Dagster
does; a test holds the two readings equal.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lip_dagster.config import check_freshness_minutes
from lip_dagster.errors import ConfigError
from lip_dagster.lake.layout import PARTITION_KEY_RE, validate_source_name

__all__ = [
    "AUTH_OPTIONS",
    "AUTH_TYPES",
    "COMPONENT_TYPE",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_REQUEST_TIMEOUT",
    "VENDORS",
    "WebhookSourceSpec",
    "load_specs",
]

COMPONENT_TYPE = "lip_dagster.components.webhook.WebhookSource"
COMPONENT_TYPES = (COMPONENT_TYPE, "lip_dagster.components.WebhookSource")
DEFS_DIR = Path(__file__).resolve().parent.parent / "defs"

VENDORS = ("okta_event_hook", "github", "jamf", "generic")
AUTH_TYPES = ("okta_event_hook", "github", "header", "header_map", "basic", "hmac")
AUTH_OPTIONS: dict[str, tuple[str, ...]] = {
    "okta_event_hook": ("header",),
    "github": (),
    "header": ("header",),
    "header_map": (),
    "basic": (),
    "hmac": ("tolerance_seconds", "signature_header", "timestamp_header"),
}
"""What each ``auth.type`` reads from the block besides ``type`` and ``secret``
(``verifiers.build_verifier``). Anything else is refused at load: the verifier would
ignore it, so a misspelt ``tolerance_seconds`` kept the 300 s replay window and a
``header`` on a type that reads none was never checked."""

DEFAULT_MAX_BODY_BYTES = 1_048_576
"""1 MiB: an Okta Event Hook batch or a Jamf event is a few KB, a GitHub push a few
hundred KB at most; anything larger is refused before it is read."""
DEFAULT_REQUEST_TIMEOUT = 10.0
"""Seconds a client has to send a whole request, headers and body, from its first
byte (or, on a new connection, from connecting). GitHub gives up on a delivery after
10 s and Okta after 3 s, so no vendor's delivery takes longer; 1 MiB in 10 s is
100 KB/s."""


class WebhookSourceSpec(BaseModel):
    """One push source: its route, how deliveries are authenticated, how events are
    found in a delivery, and when the buffer is drained into the lake."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="source name: [a-z0-9][a-z0-9_-]{0,62}; the route is POST /webhooks/<name>"
    )
    vendor: str = Field(
        description="okta_event_hook | github | jamf | generic: where the "
        "events and their ids are in a delivery"
    )
    auth: dict[str, str | int] = Field(
        description="how deliveries prove who sent them: {type: okta_event_hook | github | "
        "header | header_map | basic | hmac, secret: <secret name>, ...}; see docs/webhooks.md"
    )
    description: str | None = None
    start_date: str = "2026-01-01-00:00"
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024, le=64 * 1_048_576)
    # generic vendor only (refused on the others): where events, ids and times are
    events_path: str | None = Field(
        default=None,
        description="generic: dotted path of the event list in the body; unset: the body "
        "is one event, or a JSON array of events",
    )
    id_fields: list[str] = Field(default_factory=list, description="generic: id field path(s)")
    time_field: str | None = Field(default=None, description="generic: timestamp field path")
    # arrival sensor: when to drain (like a delivery stream's buffering hints)
    sensor_interval_seconds: int = Field(default=30, ge=5, le=3600)
    flush_messages: int = Field(default=500, ge=1)
    flush_age_seconds: int = Field(default=60, ge=0)
    heartbeat_minutes: int = Field(
        default=30,
        ge=1,
        description="drain at least this often even when nothing arrives, so a broken "
        "drain shows up as a stale asset",
    )
    # drain run
    batch_messages: int = Field(default=100, ge=1, le=10_000)
    visibility_timeout_seconds: int = Field(default=300, ge=30, le=43_200)
    time_budget_seconds: int = Field(default=240, ge=10)
    step_retries: int = Field(
        default=0,
        ge=0,
        description="step retries of a failed drain; 0 by default because a failed batch "
        "stays hidden for the visibility timeout, so a retry would find nothing to land "
        "and hide the failure; the next sensor tick drains again",
    )
    step_retry_delay_seconds: int = Field(default=30, ge=0)
    freshness_fail_minutes: int = Field(default=60, ge=1)
    # null for no warning: 0 would read as none while the block says 0 minutes
    freshness_warn_minutes: int | None = Field(default=30, ge=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return validate_source_name(v)

    @field_validator("vendor")
    @classmethod
    def _vendor(cls, v: str) -> str:
        if v not in VENDORS:
            raise ValueError(f"vendor must be one of {', '.join(VENDORS)}, not {v!r}")
        return v

    @field_validator("start_date")
    @classmethod
    def _start(cls, v: str) -> str:
        if not PARTITION_KEY_RE.match(v):
            raise ValueError(f"start_date must be an hour key YYYY-MM-DD-HH:00, not {v!r}")
        return v

    @field_validator("auth")
    @classmethod
    def _auth(cls, v: dict[str, str | int]) -> dict[str, str | int]:
        kind = v.get("type")
        if kind not in AUTH_TYPES:
            raise ValueError(f"auth.type must be one of {', '.join(AUTH_TYPES)}, not {kind!r}")
        if not isinstance(v.get("secret"), str) or not v["secret"]:
            raise ValueError("auth.secret must name the secret holding the shared value")
        allowed = AUTH_OPTIONS[str(kind)]
        for key, value in v.items():
            if key in ("type", "secret"):
                continue
            if key not in allowed:
                takes = ", ".join(allowed) if allowed else "no option but secret"
                raise ValueError(f"auth.{key} is not read by auth.type {kind} (it takes {takes})")
            if key == "tolerance_seconds":
                # checked here, not first when the receiver starts: a value it refuses
                # there stops the receiver for every source, after this block loaded
                text = str(value)
                if (
                    isinstance(value, bool)
                    or not (text.isascii() and text.isdigit())
                    or int(text) < 1
                ):
                    raise ValueError(
                        f"auth.tolerance_seconds must be a whole number of seconds, at least "
                        f"1, not {value!r}"
                    )
            elif not isinstance(value, str) or not value.strip():
                raise ValueError(f"auth.{key} must name a header, not {value!r}")
        return v

    @model_validator(mode="after")
    def _generic_fields(self) -> WebhookSourceSpec:
        # the other vendors find events, ids and times in code (vendors.py): a value
        # here would be ignored while the block says events are identified by it
        if self.vendor != "generic":
            given = [
                name
                for name, value in (
                    ("events_path", self.events_path),
                    ("id_fields", self.id_fields),
                    ("time_field", self.time_field),
                )
                if value
            ]
            if given:
                raise ValueError(
                    f"{', '.join(given)} is read only by vendor generic; vendor "
                    f"{self.vendor} finds its events, ids and times itself and would "
                    "ignore it: drop it, or use vendor: generic"
                )
        return self

    @model_validator(mode="after")
    def _warns_before_failing(self) -> WebhookSourceSpec:
        check_freshness_minutes(self.freshness_warn_minutes, self.freshness_fail_minutes)
        return self

    @model_validator(mode="after")
    def _drain_fits(self) -> WebhookSourceSpec:
        if self.visibility_timeout_seconds < 2 * self.sensor_interval_seconds:
            raise ValueError(
                "visibility_timeout_seconds must be at least twice sensor_interval_seconds"
            )
        return self


class _EnvScope:
    """``env`` inside templates, as Dagster defines it: ``env.NAME`` is the variable or
    None, ``env('NAME', 'default')`` a variable with a default."""

    def __call__(self, key: str, default: Any = ...) -> Any:
        value = os.environ.get(key, default)
        if value is ...:
            raise ConfigError(f"environment variable {key} is not set and has no default")
        return value

    def __getattr__(self, key: str) -> str | None:
        if key.startswith(("jinja", "__")):
            raise AttributeError(key)
        return os.environ.get(key)


def _render(value: Any) -> Any:
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        from jinja2.nativetypes import NativeTemplate

        return NativeTemplate(value).render(env=_EnvScope())
    if isinstance(value, Mapping):
        return {k: _render(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v) for v in value]
    return value


def _documents(path: Path) -> Iterable[Mapping[str, Any]]:
    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the source declaration: {err}") from None
    return [d for d in docs if isinstance(d, Mapping)]


def load_specs(defs_dir: Path | None = None) -> dict[str, WebhookSourceSpec]:
    """Every webhook source declared under ``defs_dir`` (default: the package's
    ``defs/``), by name. Refuses duplicates and invalid blocks, naming the file."""
    root = Path(defs_dir) if defs_dir is not None else DEFS_DIR
    specs: dict[str, WebhookSourceSpec] = {}
    for path in sorted(root.rglob("defs.yaml")):
        for doc in _documents(path):
            if doc.get("type") not in COMPONENT_TYPES:
                continue
            try:
                spec = WebhookSourceSpec.model_validate(_render(doc.get("attributes") or {}))
            except ValidationError as err:
                raise ConfigError(f"{path}: invalid webhook source: {err}") from None
            if spec.name in specs:
                raise ConfigError(f"{path}: webhook source {spec.name!r} is declared twice")
            specs[spec.name] = spec
    return specs
