"""An event's identity as the commit log sees it, for callers that must name an id
before the writer does.

The webhook receiver marks ids ``accepted`` long before a drain run hands the same
events to ``LakeWriter``; both must derive the same ``DedupeKey`` or the receiver's
mark would not stop a duplicate delivery. This is the rule ``LakeWriter`` applies
when it prepares a batch: the time of the event's own timestamp, to the hour or
the second as the store keys it (``time_bucket``), or ``UNTIMED_HOUR`` for an event
without a usable one (its lake hour is its arrival hour, which differs between a
delivery and its retry, so its identity must not depend on it). "Usable" includes
"plausible" (``time_and_hour``): not an unset value such as Go's zero time or a
sentinel such as 9999-12-31. Both bounds are fixed, so a key is a function of the
event alone, never of when it arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lip_dagster.lake.envelope import EventIdentity
from lip_dagster.lake.writer import UNTIMED_HOUR
from lip_dagster.state.base import DedupeKey, KeyResolution, time_bucket

__all__ = ["UNTIMED_HOUR", "EventKey", "dedupe_keys", "event_key"]


@dataclass(frozen=True)
class EventKey:
    """One event's id, its time (None: filed under its arrival hour) and the key the
    dedupe store knows it by."""

    event_id: str
    time: datetime | None
    dedupe_key: DedupeKey


def event_key(
    event: dict[str, Any], identity: EventIdentity, resolution: KeyResolution
) -> EventKey:
    """The id, time and dedupe key ``LakeWriter`` will give ``event`` in a store of
    this ``key_resolution``."""
    eid, t, hour = identity.locate(event)
    key = _dedupe_key(eid, t, hour, resolution)
    return EventKey(eid, None if key.bucket == UNTIMED_HOUR else t, key)


def dedupe_keys(
    events: list[dict[str, Any]], identity: EventIdentity, resolution: KeyResolution
) -> list[DedupeKey]:
    """``event_key(...).dedupe_key`` of each event, without an ``EventKey`` per event:
    the webhook receiver derives one per accepted event on its hot path."""
    locate = identity.locate
    return [_dedupe_key(*locate(event), resolution) for event in events]


def _dedupe_key(
    eid: str, t: datetime | None, hour: str | None, resolution: KeyResolution
) -> DedupeKey:
    if hour is None or t is None:
        return DedupeKey(UNTIMED_HOUR, eid)
    return DedupeKey(time_bucket(hour, t, resolution), eid)
