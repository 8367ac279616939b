"""Event identity, event time and the ``_lip`` envelope.

Each source says where its id and timestamp live (an ``EventIdentity``); everything
else, including the fallback id (a stable hash of the canonical event), which times
are plausible enough to file an event by, and the arrival-hour fallback, is decided
here once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any, Literal

import orjson

Pattern = Literal["polling", "webhook", "s3"]
PATTERNS: tuple[str, ...] = ("polling", "webhook", "s3")

# Epoch values above this are milliseconds (year 2286 in seconds); above the next,
# microseconds, then nanoseconds. Vendors mix all of them.
_EPOCH_MS = 10**10
_EPOCH_US = 10**13
_EPOCH_NS = 10**16

EPOCH_HOUR = "1970-01-01-00:00"
"""Event times in this hour or before are "unset" values, not times: Go's zero time
(``0001-01-01T00:00:00Z``), Unix time 0, negative epochs. No security log of a SaaS
platform is that old, and filing by them would put events in partitions no one
queries (and, below year 1000, in keys the layout cannot parse)."""

FUTURE_HOUR = "2100-01-01-00:00"
"""Event times in this hour or after are sentinels (``9999-12-31T23:59:59Z``), not
times. The bound is fixed, not relative to the arrival: an event's identity must be a
function of the event alone. A bound "a day past arrival" made an event stamped near it
keyed by its time on one try and by its arrival on a retry an hour later: two keys, two
copies in the lake. A clock running days ahead therefore files its events in their
(future) hours; coverage marks are capped at the time of the request, so such events
cannot call unread hours complete."""


def parse_timestamp(value: Any) -> datetime | None:
    """Best-effort UTC datetime from the shapes vendors send; None if unusable.

    RFC 3339 with ``Z`` or an offset, with up to nanosecond fractions (1Password);
    epoch seconds (Slack), milliseconds (GitHub, Jamf) or nanoseconds, as numbers or
    numeric strings.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _from_epoch(value)
    if not isinstance(value, str) or not value:
        return None
    s = value.strip()
    # ASCII only: str.isdigit() is also true of "²" or "①", which float() refuses
    if s.isascii() and s.lstrip("-").replace(".", "", 1).isdigit():
        return _from_epoch(int(s) if s.lstrip("-").isdigit() else Fraction(s))
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        dt = _parse_long_fraction(s)
        if dt is None:
            return None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        return None


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


_EPOCH_START = datetime(1970, 1, 1, tzinfo=UTC)


def _from_epoch(x: int | float | Fraction) -> datetime | None:
    """The epoch value ``x`` truncated to the microsecond, as RFC 3339 fractions are.
    Exact arithmetic, not ``float``: a nanosecond count (Cloudflare's ``unixnano``)
    has more digits than a float holds, and ``fromtimestamp`` rounds to the nearest
    microsecond, so a request at 23:59:59.9999996 was filed under the next hour (on
    31 December, the next year)."""
    try:
        exact = x if isinstance(x, int) else Fraction(x)  # a float's exact value
        ax = abs(exact)
        per_second = 10**9 if ax >= _EPOCH_NS else 10**6 if ax >= _EPOCH_US else 10**3
        if ax < _EPOCH_MS:
            per_second = 1
        micros = exact * 10**6 // per_second  # floor, exact for int and Fraction
        return _EPOCH_START + timedelta(microseconds=micros)
    except (OverflowError, ValueError):  # inf, nan, or beyond year 1..9999
        return None


def stable_hash_id(event: Any) -> str:
    """Identity for events that carry none: sha256 of the canonical JSON (sorted keys),
    so the same event delivered twice gets the same id."""
    canon = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(canon).hexdigest()


MAX_ID_BYTES = 512
"""Ids longer than this (UTF-8) are kept as ``sha256:<hex>`` of the id. A vendor field
that long is no id anyone looks up, a webhook body can carry any length, and stores
bound their keys (DynamoDB refuses a partition key over 2,048 bytes: the source would
stall on that page on AWS and land it locally)."""


def bounded_id(eid: str) -> str:
    """``eid``, or its sha256 if it is longer than ``MAX_ID_BYTES``: the same long id
    always gives the same short one, so dedupe still works."""
    if len(eid) <= MAX_ID_BYTES // 4:  # 4 bytes a character at most: short enough
        return eid
    raw = eid.encode("utf-8", "surrogatepass")
    return eid if len(raw) <= MAX_ID_BYTES else "sha256:" + hashlib.sha256(raw).hexdigest()


def dig(event: Any, path: str) -> Any:
    """Value at a dotted path (``id.time``), or None."""
    cur = event
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def time_and_hour(value: Any) -> tuple[datetime | None, str | None]:
    """The event time and its hour partition key, or (None, None) if ``value`` is no
    usable time: unparseable, or implausible (in ``EPOCH_HOUR`` or before, or in
    ``FUTURE_HOUR`` or after). Canonical RFC 3339 UTC strings
    (``2020-02-14T22:18:51.843Z``, what most vendors send) take a fast path that reads
    the hour off the string; everything else goes through ``parse_timestamp``."""
    if (
        type(value) is str
        and len(value) >= 20
        and value[-1] == "Z"
        and value[4] == "-"
        and value[7] == "-"
        and value[10] in "Tt "
        and value[13] == ":"
    ):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            hour = f"{value[:10]}-{value[11:13]}:00"
            # hour keys have four-digit years, so they compare as strings
            return (dt, hour) if EPOCH_HOUR < hour < FUTURE_HOUR else (None, None)
    dt = parse_timestamp(value)
    if dt is None:
        return None, None
    hour = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}-{dt.hour:02d}:00"
    return (dt, hour) if EPOCH_HOUR < hour < FUTURE_HOUR else (None, None)


def _getter(path: str) -> Callable[[Any], Any]:
    """A compiled lookup for a dotted path: one ``dict.get`` for the common flat
    field, so the per-event cost does not include splitting the path again."""
    parts = tuple(path.split("."))
    if len(parts) == 1:
        key = parts[0]
        return lambda ev: ev.get(key) if isinstance(ev, dict) else None
    return lambda ev: dig(ev, path)


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "_id_getters", tuple(_getter(f) for f in self.id_fields))
        object.__setattr__(
            self, "_time_getter", _getter(self.time_field) if self.time_field else None
        )
        # The common shape (one top-level id field, a top-level time field), read
        # by ``locate`` with a plain ``dict.get`` instead of a call per lookup.
        flat_id = self.id_fields[0] if self.id_func is None and len(self.id_fields) == 1 else None
        object.__setattr__(self, "_flat_id", flat_id if flat_id and "." not in flat_id else None)
        flat_time = self.time_field if self.time_field and "." not in self.time_field else None
        object.__setattr__(self, "_flat_time", flat_time)

    def locate(self, event: dict[str, Any]) -> tuple[str, datetime | None, str | None]:
        """``(event_id(event), *locate_time(event))`` in one call: the writer and the
        webhook receiver ask it once per event, so it reads the common shape of event
        directly."""
        id_key: str | None = self._flat_id  # type: ignore[attr-defined]
        if id_key is not None:
            v = event.get(id_key)
            eid = bounded_id(v) if type(v) is str and v else self.event_id(event)
        else:
            eid = self.event_id(event)
        time_key: str | None = self._flat_time  # type: ignore[attr-defined]
        if time_key is not None:
            return (eid, *time_and_hour(event.get(time_key)))
        return (eid, *self.locate_time(event))

    def event_id(self, event: dict[str, Any]) -> str:
        if self.id_func is not None:
            got = self.id_func(event)
            if got:
                return bounded_id(got)
        else:
            getters = self._id_getters  # type: ignore[attr-defined]
            if len(getters) == 1:
                v = getters[0](event)
                if v is not None and v != "":
                    return bounded_id(v if type(v) is str else str(v))
            elif getters:
                parts = [g(event) for g in getters]
                if all(p is not None and p != "" for p in parts):
                    return bounded_id("|".join(str(p) for p in parts))
        return stable_hash_id(event)

    def event_time(self, event: dict[str, Any]) -> datetime | None:
        return self.locate_time(event)[0]

    def locate_time(self, event: dict[str, Any]) -> tuple[datetime | None, str | None]:
        """(event time, its hour partition key), or (None, None) without a usable
        timestamp (see ``time_and_hour``)."""
        getter = self._time_getter  # type: ignore[attr-defined]
        if getter is None:
            return None, None
        return time_and_hour(getter(event))


RESERVED_ENVELOPE_KEYS = frozenset({"source", "id", "ingested_at", "pattern", "hour_from"})


def check_extra_envelope(extra: Mapping[str, str] | None) -> dict[str, str]:
    """Extra ``_lip`` keys a pattern adds (S3 streaming records ``origin``): they may
    never shadow the fixed keys, whose meaning the SAM relies on."""
    if not extra:
        return {}
    clash = RESERVED_ENVELOPE_KEYS.intersection(extra)
    if clash:
        raise ValueError(f"extra _lip keys may not replace {sorted(clash)}")
    bad = [k for k, v in extra.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise ValueError(f"extra _lip keys and values must be strings: {bad!r}")
    return dict(extra)


def envelope(
    source: str,
    event_id: str,
    ingested_at: str,
    pattern: str,
    hour_from: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The ``_lip`` key. The first four keys never change meaning; ``hour_from`` says
    whether the partition hour came from the event (``event``) or its arrival
    (``arrival``: timestamp missing, unparseable or implausible, see
    ``time_and_hour``). ``extra`` adds keys (checked by
    ``check_extra_envelope``) after the fixed ones."""
    env = {
        "source": source,
        "id": event_id,
        "ingested_at": ingested_at,
        "pattern": pattern,
        "hour_from": hour_from,
    }
    if extra:
        env.update(extra)
    return env
