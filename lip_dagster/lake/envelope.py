"""Event identity, event time and the ``_lip`` envelope.

Each source says where its id and timestamp live (an ``EventIdentity``); everything
else, including the fallback id (a stable hash of the canonical event) and the
arrival-hour fallback, is decided here once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

Pattern = Literal["polling", "webhook", "s3"]
PATTERNS: tuple[str, ...] = ("polling", "webhook", "s3")

# Epoch values above this are milliseconds (year 2286 in seconds); above the next,
# microseconds, then nanoseconds. Vendors mix all of them.
_EPOCH_MS = 10**10
_EPOCH_US = 10**13
_EPOCH_NS = 10**16


def parse_timestamp(value: Any) -> datetime | None:
    """Best-effort UTC datetime from the shapes vendors send; None if unusable.

    RFC 3339 with ``Z`` or an offset, with up to nanosecond fractions (1Password);
    epoch seconds (Slack), milliseconds (GitHub, Jamf) or nanoseconds, as numbers or
    numeric strings.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _from_epoch(float(value))
    if not isinstance(value, str) or not value:
        return None
    s = value.strip()
    if s.lstrip("-").replace(".", "", 1).isdigit():
        return _from_epoch(float(s))
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        dt = _parse_long_fraction(s)
        if dt is None:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _parse_long_fraction(s: str) -> datetime | None:
    """fromisoformat in 3.11 stops at microseconds; trim nanoseconds and retry."""
    dot = s.find(".")
    if dot < 0:
        return None
    end = dot + 1
    while end < len(s) and s[end].isdigit():
        end += 1
    if end - dot - 1 <= 6:
        return None
    try:
        return datetime.fromisoformat(s[: dot + 7] + s[end:])
    except ValueError:
        return None


def _from_epoch(x: float) -> datetime | None:
    ax = abs(x)
    if ax >= _EPOCH_NS:
        x /= 1e9
    elif ax >= _EPOCH_US:
        x /= 1e6
    elif ax >= _EPOCH_MS:
        x /= 1e3
    try:
        return datetime.fromtimestamp(x, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def stable_hash_id(event: Any) -> str:
    """Identity for events that carry none: sha256 of the canonical JSON (sorted keys),
    so the same event delivered twice gets the same id."""
    canon = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(canon).hexdigest()


def dig(event: Any, path: str) -> Any:
    """Value at a dotted path (``id.time``), or None."""
    cur = event
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


@dataclass(frozen=True)
class EventIdentity:
    """Where a source's events keep their id and their time.

    ``id_fields``: one dotted path (``uuid``) or several whose values are joined with
    ``|`` (Google's ``id.time``+``id.uniqueQualifier``+...). ``id_func`` overrides both
    for vendors that need code (Jamf). Missing id -> stable hash of the event.
    """

    id_fields: tuple[str, ...] = ()
    time_field: str | None = None
    id_func: Callable[[dict[str, Any]], str | None] | None = None

    def event_id(self, event: dict[str, Any]) -> str:
        if self.id_func is not None:
            got = self.id_func(event)
            if got:
                return got
        elif self.id_fields:
            if len(self.id_fields) == 1:
                v = dig(event, self.id_fields[0])
                if v is not None and v != "":
                    return str(v)
            else:
                parts = [dig(event, f) for f in self.id_fields]
                if all(p is not None and p != "" for p in parts):
                    return "|".join(str(p) for p in parts)
        return stable_hash_id(event)

    def event_time(self, event: dict[str, Any]) -> datetime | None:
        if self.time_field is None:
            return None
        return parse_timestamp(dig(event, self.time_field))


def envelope(
    source: str, event_id: str, ingested_at: str, pattern: str, hour_from: str
) -> dict[str, str]:
    """The ``_lip`` key. The first four keys never change meaning; ``hour_from`` says
    whether the partition hour came from the event (``event``) or its arrival
    (``arrival``: timestamp missing or unparseable)."""
    return {
        "source": source,
        "id": event_id,
        "ingested_at": ingested_at,
        "pattern": pattern,
        "hour_from": hour_from,
    }
