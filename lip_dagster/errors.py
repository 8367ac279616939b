"""One exception root for LIP, so callers can catch precisely.

    LipError
     ├── ConfigError          a setting is missing or malformed (names the variable)
     ├── InvalidSourceName    a source name cannot become an S3 key / asset key
     ├── SecretNotFound       a named secret is absent from the store
     ├── CursorConflict       a stale writer lost the compare-and-set on a cursor
     ├── StateError           a state backend failed (SQLite, DynamoDB, SQS)
     ├── LakeWriteError       an object could not be landed
     ├── VendorError          a vendor call failed after bounded retries
     │    ├── VendorAuthError the vendor refused our credentials
     │    └── GitHubError     (github.py) the GitHub API refused or failed
     └── (per package)        ProvisionError, AwsCallError (sam/), NotifierError
                              (alerts/), BadObjectError (s3stream/)

Messages never carry secret values: callers pass names, URLs go through
``redact_url`` first.
"""

from __future__ import annotations

from typing import Any, TypeVar

_R = TypeVar("_R")
_REPORT_ATTR = "lip_partial_report"


def attach_report(exc: BaseException, report: object) -> None:
    """Hang what a failing run had done (its partial report: the pages, batches or
    objects that landed) on the error it fails with, so the asset can record those
    hours before re-raising. Any error counts, a ``BaseException`` too: Dagster
    interrupts a run terminated from the UI with one. The first report wins: an
    error re-raised through nested runs keeps the one of where it started."""
    if getattr(exc, _REPORT_ATTR, None) is None:
        setattr(exc, _REPORT_ATTR, report)


def attached_report(exc: BaseException, kind: type[_R]) -> _R | None:
    """The report ``attach_report`` hung on ``exc``, if it is a ``kind``."""
    report = getattr(exc, _REPORT_ATTR, None)
    return report if isinstance(report, kind) else None


class LipError(Exception):
    """Root of every error LIP raises on purpose."""


class ConfigError(LipError):
    """A configuration value is missing or malformed."""


class InvalidSourceName(LipError, ValueError):
    """A source name does not match ``[a-z0-9][a-z0-9_-]{0,62}``."""


class SecretNotFound(LipError):
    """A secret was asked for by name and no backend holds it."""


class CursorConflict(LipError):
    """Another writer committed the cursor first; this run must not overwrite it."""


class StateError(LipError):
    """A state backend (SQLite, DynamoDB, SQS) failed."""


class LakeWriteError(LipError):
    """An object could not be written to the lake."""


class UnwritableEvents(LakeWriteError):
    """Events of a page that no lake object can hold (nested deeper than the
    serializer writes). Raised only by a writer without a quarantine, before any of
    the page landed; ``events`` are the offending events, for the caller to set
    aside."""

    def __init__(self, message: str, events: list[Any]) -> None:
        super().__init__(message)
        self.events = events


class LakeReadError(LipError):
    """A lake object, its metadata or a listing could not be read."""


class ServerStartError(LipError):
    """A local HTTP server (the receiver of `lip webhook serve` or of the demo, the
    vendor simulator) did not start serving."""


class VendorError(LipError):
    """A vendor API call failed after its bounded retries.

    The message names source, endpoint and HTTP status so an on-call engineer knows
    where to look without reading a traceback.
    """

    def __init__(self, source: str, endpoint: str, status: int | None, detail: str) -> None:
        self.source = source
        self.endpoint = endpoint
        self.status = status
        self.detail = detail
        status_txt = f"HTTP {status}" if status is not None else "no HTTP response"
        super().__init__(f"source {source!r} endpoint {endpoint!r}: {status_txt}: {detail}")


class VendorAuthError(VendorError):
    """The vendor refused the credentials (401/403 or a token-endpoint error)."""
