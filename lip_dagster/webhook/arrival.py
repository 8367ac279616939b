"""When to drain: the arrival sensor's decision, without Dagster in it.

Like a delivery stream's buffering hints, a drain is requested when the buffer holds
``flush_messages`` messages or its oldest message is ``flush_age_seconds`` old,
whichever comes first, and at least every ``heartbeat_seconds`` even when nothing
arrived (so a drain that stopped working shows as a stale asset). Never while a
drain of the source is queued or running.

SQS does not report the age of its oldest message (``oldest_age_seconds`` is
None), so the sensor keeps in its cursor when it first saw the buffer non-empty
and uses that as the age; after requesting a drain it restarts that clock from the
request, because whatever arrived before the drain started is that drain's work.

Only messages a drain could receive now count (``BufferDepth.ready``): a failed
drain's batch stays hidden for its visibility timeout, and the drain that follows
it once visible is the retry.

A buffer that cannot be measured is treated as due (fail open on monitoring): a
drain is requested at most once per ``flush_age_seconds`` until it can be measured
again.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from lip_dagster.state.base import BufferDepth

__all__ = ["ArrivalState", "Thresholds", "decide"]


@dataclass(frozen=True)
class Thresholds:
    flush_messages: int = 500
    flush_age_seconds: float = 60.0
    heartbeat_seconds: float = 1800.0


@dataclass(frozen=True)
class ArrivalState:
    """The sensor cursor: unix times, None when not applicable."""

    nonempty_since: float | None = None
    last_request: float | None = None

    def to_cursor(self) -> str:
        return orjson.dumps(
            {"nonempty_since": self.nonempty_since, "last_request": self.last_request}
        ).decode()

    @classmethod
    def from_cursor(cls, cursor: str | None) -> ArrivalState:
        """A missing or unreadable cursor starts fresh: the worst case is one drain
        requested a little late or a little early."""
        if not cursor:
            return cls()
        try:
            doc = orjson.loads(cursor)
        except orjson.JSONDecodeError:
            return cls()
        if not isinstance(doc, dict):
            return cls()

        def num(key: str) -> float | None:
            v = doc.get(key)
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

        return cls(num("nonempty_since"), num("last_request"))


def decide(
    depth: BufferDepth | None,
    state: ArrivalState,
    now: float,
    thresholds: Thresholds,
    *,
    drain_active: bool,
) -> tuple[str | None, ArrivalState]:
    """``(reason, new_state)``: reason is ``size``, ``age``, ``heartbeat`` or
    ``unmeasured`` when a drain should be requested now, else None."""
    since = state.nonempty_since
    heartbeat_due = (
        state.last_request is None or now - state.last_request >= thresholds.heartbeat_seconds
    )
    reason: str | None = None
    if depth is None:
        recent = (
            state.last_request is not None
            and now - state.last_request < thresholds.flush_age_seconds
        )
        reason = None if recent else "unmeasured"
    elif depth.ready <= 0:
        # Empty, or only messages a drain holds (a failed drain's batch until its
        # visibility timeout): a drain now would receive nothing and succeed, and
        # its success would read as a recovery while the source still fails.
        since = None
        reason = "heartbeat" if heartbeat_due and depth.in_flight == 0 else None
    else:
        if since is None:
            since = now
        age = depth.oldest_age_seconds if depth.oldest_age_seconds is not None else now - since
        if depth.ready >= thresholds.flush_messages:
            reason = "size"
        elif age >= thresholds.flush_age_seconds:
            reason = "age"
        elif heartbeat_due:
            reason = "heartbeat"
    if reason is None or drain_active:
        return None, ArrivalState(since, state.last_request)
    return reason, ArrivalState(now if since is not None else None, now)
