"""Finding new vendor objects: SQS notifications, or listing after a stored key.

**Notifications** (a queue is configured): messages are received with a visibility
timeout and acknowledged (deleted) only once the work they announced is safe: by the
next sensor tick (Dagster stores a tick's cursor only after its run requests are
reserved, so seeing that cursor proves it) or, in a run, after the objects landed.

**Listing** (no queue): ``ListObjectsV2`` with ``StartAfter``. Vendors do not always
write keys in increasing order (GitHub's ``<uuid>`` names within a minute, Logpush's
random suffix), so the state keeps the last ``lookback_keys`` keys handled and lists
from the oldest of them: a late key that sorts among them is still found, and a key
seen again is not handled again. The state lives in the cursor store under
``(source, "s3-listing")`` with compare-and-set, and never moves backwards.

Nothing here knows Dagster; ``components/s3.py`` turns plans into run requests and
runless materializations.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from lip_dagster.errors import CursorConflict, StateError
from lip_dagster.lake.layout import parse_object_key
from lip_dagster.s3stream.formats import VendorFormat
from lip_dagster.s3stream.notifications import parse_notification
from lip_dagster.s3stream.objects import ArrivalQueue, ObjectInfo, ObjectSource
from lip_dagster.state.base import CursorStore

log = logging.getLogger(__name__)

LISTING_ENDPOINT = "s3-listing"
DEFAULT_LOOKBACK_KEYS = 200
VISIBILITY_TIMEOUT = 900
_COMMIT_ATTEMPTS = 5


@dataclass(frozen=True)
class ListingState:
    """``after``: the greatest key handled; ``recent``: the greatest keys handled,
    sorted, at most ``lookback_keys`` of them (listing starts after the first)."""

    after: str | None = None
    recent: tuple[str, ...] = ()

    @property
    def start_after(self) -> str | None:
        return self.recent[0] if self.recent else self.after

    def merge(self, other: ListingState | None, lookback_keys: int) -> ListingState:
        if other is None:
            return self
        afters = [a for a in (self.after, other.after) if a is not None]
        recent = sorted(set(self.recent) | set(other.recent))[-lookback_keys:]
        return ListingState(max(afters) if afters else None, tuple(recent))

    def advance(self, keys: Iterable[str], lookback_keys: int) -> ListingState:
        keys = list(keys)
        if not keys:
            return self
        return self.merge(ListingState(max(keys), tuple(keys)), lookback_keys)

    def to_json(self) -> str:
        return orjson.dumps({"after": self.after, "recent": list(self.recent)}).decode()

    @classmethod
    def from_json(cls, raw: str | None) -> ListingState | None:
        if not raw:
            return None
        try:
            d = orjson.loads(raw)
            return cls(d.get("after"), tuple(d.get("recent") or ()))
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            # a cursor that is not ours (hand-edited): start over from the store;
            # the writer's dedupe keeps re-read objects from landing twice
            log.warning("ignoring an unreadable S3 listing state: %.80r", raw)
            return None


@dataclass
class Discovery:
    """New objects, in the order found, and what to acknowledge once they are safe."""

    objects: list[ObjectInfo] = field(default_factory=list)
    state: ListingState | None = None  # listing: the state after these objects
    receipts: list[str] = field(default_factory=list)  # notifications: to delete
    test_events: int = 0
    ignored: int = 0
    problems: list[str] = field(default_factory=list)


class ArrivalFinder:
    """Discovery and acknowledgement for one source."""

    def __init__(
        self,
        source: str,
        objects: ObjectSource,
        queue: ArrivalQueue | None,
        cursors: CursorStore,
        *,
        bucket: str | None = None,
        lookback_keys: int = DEFAULT_LOOKBACK_KEYS,
        visibility_timeout: int = VISIBILITY_TIMEOUT,
    ) -> None:
        self.source = source
        self.objects = objects
        self.queue = queue
        self.cursors = cursors
        self.bucket = bucket if bucket is not None else objects.bucket
        self.lookback_keys = lookback_keys
        self.visibility_timeout = visibility_timeout

    @property
    def mode(self) -> str:
        return "notifications" if self.queue is not None else "listing"

    # ----------------------------------------------------------------- listing
    def stored_state(self) -> ListingState:
        rec = self.cursors.get(self.source, LISTING_ENDPOINT)
        return (ListingState.from_json(rec.value) if rec else None) or ListingState()

    def commit(self, state: ListingState) -> ListingState:
        """Merge ``state`` into the stored one with compare-and-set; a concurrent
        commit is re-read and merged, never overwritten."""
        for _ in range(_COMMIT_ATTEMPTS):
            rec = self.cursors.get(self.source, LISTING_ENDPOINT)
            stored = (ListingState.from_json(rec.value) if rec else None) or ListingState()
            merged = stored.merge(state, self.lookback_keys)
            if rec is not None and merged == stored:
                return stored
            try:
                self.cursors.commit(
                    self.source,
                    LISTING_ENDPOINT,
                    merged.to_json(),
                    expected_version=rec.version if rec else None,
                )
            except CursorConflict:
                continue
            return merged
        raise StateError(
            f"source {self.source!r}: the S3 listing cursor kept changing under "
            f"{_COMMIT_ATTEMPTS} commits; another process is writing it"
        )

    def _list(self, state: ListingState, limit: int) -> Discovery:
        seen = set(state.recent)
        found = self.objects.list_after(state.start_after, limit + len(seen))
        new = [o for o in found if o.key not in seen and self.objects.owns(o.key)]
        new = new[:limit]
        return Discovery(objects=new, state=state.advance((o.key for o in new), self.lookback_keys))

    # ------------------------------------------------------------ notifications
    def _receive(self, limit: int) -> Discovery:
        assert self.queue is not None
        out = Discovery()
        seen: set[str] = set()
        for msg in self.queue.receive(limit, self.visibility_timeout):
            out.receipts.append(msg.receipt)
            note = parse_notification(msg.body)
            if note.test_event:
                out.test_events += 1
                continue
            out.ignored += note.other_events
            if note.problem:
                out.problems.append(f"message {msg.message_id}: {note.problem}")
            for a in note.arrivals:
                if self.bucket is not None and a.bucket != self.bucket:
                    out.ignored += 1
                    out.problems.append(
                        f"message {msg.message_id}: object in bucket {a.bucket!r}, not "
                        f"{self.bucket!r}; not read"
                    )
                    continue
                if not self.objects.owns(a.key):
                    out.ignored += 1
                    continue
                if a.key in seen:
                    continue
                seen.add(a.key)
                out.objects.append(ObjectInfo(key=a.key, size=a.size, last_modified=a.event_time))
        return out

    def acknowledge(self, receipts: list[str]) -> int:
        """Delete handled notifications; returns how many the queue refused."""
        if not receipts or self.queue is None:
            return 0
        return self.queue.delete(receipts)

    # ------------------------------------------------------------------ common
    def discover(self, state: ListingState | None, limit: int) -> Discovery:
        """New objects: up to ``limit`` notifications, or keys listed after ``state``
        (merged with the stored state)."""
        if self.queue is not None:
            return self._receive(limit)
        merged = self.stored_state().merge(state, self.lookback_keys)
        return self._list(merged, limit)


# ---------------------------------------------------------------------- planning


@dataclass
class Plan:
    """What to do with discovered objects."""

    transcode: list[ObjectInfo] = field(default_factory=list)
    register: list[tuple[ObjectInfo, str]] = field(default_factory=list)  # (object, hour)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key, why)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (key, why)


def plan_objects(
    source: str,
    found: Iterable[ObjectInfo],
    objects: ObjectSource,
    fmt: VendorFormat | None,
) -> Plan:
    """Sort objects into: transcode (vendor layout), register without a run (already
    in the lake layout: ``fmt`` is None), skip (vendor housekeeping) or reject (claims
    the lake layout but is not a lake object of this source)."""
    plan = Plan()
    for info in found:
        if fmt is not None:
            why = fmt.housekeeping(info.key)
            if why:
                plan.skipped.append((info.key, why))
            else:
                plan.transcode.append(info)
            continue
        rel = info.key[len(objects.prefix) :]
        try:
            owner, hour = parse_object_key(rel)
        except ValueError:
            plan.rejected.append((info.key, "not in the lake layout"))
            continue
        if owner != source:
            plan.rejected.append((info.key, f"a lake object of source {owner!r}, not {source!r}"))
            continue
        plan.register.append((info, hour))
    return plan


def batches(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
