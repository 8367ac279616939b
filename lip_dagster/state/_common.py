"""Helpers both backends share, so a cursor conflict or a high-water mark behaves and
reads the same on SQLite and DynamoDB."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from lip_dagster.errors import CursorConflict, StateError

_FRACTION_RE = re.compile(r"(\.\d{6})\d+")
T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``: a store's batch limit
    (DynamoDB 25 writes, SQS 10 entries, SQLite's bound parameters)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _instant(ts: str) -> datetime | None:
    """An ISO-8601 timestamp as an aware UTC datetime (naive means UTC), or None."""
    try:
        dt = datetime.fromisoformat(_FRACTION_RE.sub(r"\1", ts.strip()))
    except (ValueError, AttributeError):
        return None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def later_high_water(stored: str | None, given: str | None, *, where: str) -> str | None:
    """The later of two high-water marks, each kept exactly as it was given.

    Compared as instants, not as strings, so ``...+02:00`` and ``...Z`` forms and
    different fraction lengths cannot move the mark backwards. A given mark that is not
    ISO 8601 is refused (``StateError`` naming ``where``) rather than guessed at, since
    a wrong guess could move coverage backwards or forwards silently.
    """
    if given is None:
        return stored
    given_at = _instant(given)
    if given_at is None:
        raise StateError(f"{where}: high_water {given!r} is not an ISO-8601 timestamp")
    if stored is None:
        return given
    stored_at = _instant(stored)
    if stored_at is None or given_at > stored_at:
        return given
    return stored


def cursor_conflict(
    source: str, endpoint: str, expected: int | None, stored: int | None
) -> CursorConflict:
    """The same words on every backend, so a runbook can quote them."""
    expected_txt = "no cursor yet" if expected is None else f"version {expected}"
    stored_txt = "no cursor" if stored is None else f"version {stored}"
    return CursorConflict(
        f"cursor of source {source!r} endpoint {endpoint!r} was changed by another writer: "
        f"this run expected {expected_txt} but the store holds {stored_txt}; the run must "
        "not overwrite it (another run of this source is active, or this one is stale)"
    )
