"""Finding new vendor objects: SQS notifications, or listing after a stored key.

**Notifications** (a queue is configured): messages are received with a visibility
timeout and acknowledged (deleted) only once the work they announced is safe: by the
next sensor tick (Dagster stores a tick's cursor only after its run requests are
reserved, so seeing that cursor proves it) or, in a run, after the objects landed.

**Listing** (no queue): ``ListObjectsV2`` over the whole prefix, new objects told by
their ``LastModified``. A key cursor (``StartAfter``) would lose objects: vendors do
not write keys in increasing order (GitHub's ``<uuid>`` names within a minute,
Logpush's random suffix), and a CloudTrail organization trail writes under one folder
per account and region, so a new object of the first region sorts before everything
handled in the last. The state keeps ``since``, the newest ``LastModified`` handled,
and the keys handled within ``settle_seconds`` of it (an object can show up in a
listing after a newer one: a multipart upload is dated when it starts); anything
older counts as handled. A key seen again is not handled again. Listing costs one
request per 1,000 objects under the prefix on every tick: large buckets should send
notifications. The state lives in the cursor store under ``(source, "s3-listing")``
with compare-and-set, and never moves backwards.

Nothing here knows Dagster; ``components/s3.py`` turns plans into run requests and
runless materializations.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from lip_dagster.errors import CursorConflict, StateError
from lip_dagster.lake.layout import parse_object_key
from lip_dagster.s3stream.formats import VendorFormat
from lip_dagster.s3stream.notifications import parse_notification
from lip_dagster.s3stream.objects import ArrivalQueue, ObjectInfo, ObjectSource
from lip_dagster.state.base import CursorStore

log = logging.getLogger(__name__)

LISTING_ENDPOINT = "s3-listing"
DEFAULT_SETTLE_SECONDS = 900.0
VISIBILITY_TIMEOUT = 900
_COMMIT_ATTEMPTS = 5


def key_digest(key: str) -> str:
    """A short stable name for a handled key: the state holds thousands of them and
    must fit a DynamoDB item (400 KB) and a Dagster sensor cursor."""
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class ListingState:
    """``since``: the newest ``LastModified`` (epoch seconds) among handled objects;
    ``handled``: digests of the handled keys whose ``LastModified`` is within
    ``settle_seconds`` of ``since``, with that time. An object older than
    ``since - settle_seconds`` counts as handled without being remembered."""

    since: float | None = None
    handled: tuple[tuple[str, float], ...] = ()
    settle_seconds: float = DEFAULT_SETTLE_SECONDS

    def fresh(self, listed: Iterable[ObjectInfo], listed_at: float) -> list[ObjectInfo]:
        """The listed objects not handled yet, oldest first (so ``since`` only ever
        passes objects that were handled)."""
        floor = None if self.since is None else self.since - self.settle_seconds
        handled = {d for d, _ in self.handled}
        out = [
            o
            for o in listed
            if (floor is None or _modified(o, listed_at) >= floor)
            and key_digest(o.key) not in handled
        ]
        out.sort(key=lambda o: (_modified(o, listed_at), o.key))
        return out

    @property
    def through(self) -> str:
        """``since`` for people: run metadata and logs."""
        if self.since is None:
            return "none"
        return datetime.fromtimestamp(self.since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def merge(self, other: ListingState | None) -> ListingState:
        if other is None:
            return self
        sinces = [t for t in (self.since, other.since) if t is not None]
        handled = dict(self.handled)
        for digest, t in other.handled:
            handled[digest] = max(t, handled.get(digest, t))
        return self._settled(max(sinces) if sinces else None, handled)

    def advance(self, objects: Iterable[ObjectInfo], listed_at: float) -> ListingState:
        handled = dict(self.handled)
        since = self.since
        for info in objects:
            t = _modified(info, listed_at)
            handled[key_digest(info.key)] = t
            since = t if since is None else max(since, t)
        return self._settled(since, handled)

    def _settled(self, since: float | None, handled: dict[str, float]) -> ListingState:
        floor = None if since is None else since - self.settle_seconds
        kept = sorted((d, t) for d, t in handled.items() if floor is None or t >= floor)
        return ListingState(since, tuple(kept), self.settle_seconds)

    def to_json(self) -> str:
        return orjson.dumps({"v": 2, "since": self.since, "handled": dict(self.handled)}).decode()

    @classmethod
    def from_json(
        cls, raw: str | None, settle_seconds: float = DEFAULT_SETTLE_SECONDS
    ) -> ListingState | None:
        if not raw:
            return None
        try:
            d = orjson.loads(raw)
            if d.get("v") != 2:
                raise TypeError("not a version 2 listing state")
            since = d.get("since")
            handled = {str(k): float(v) for k, v in (d.get("handled") or {}).items()}
            state = cls(None if since is None else float(since), (), settle_seconds)
            return state._settled(state.since, handled)
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            # a cursor that is not ours (hand-edited, or an older layout): start over
            # from the bucket; the writer's dedupe keeps re-read objects from landing
            # twice
            log.warning("ignoring an unreadable S3 listing state: %.80r", raw)
            return None


def _modified(info: ObjectInfo, listed_at: float) -> float:
    """When the object was written; an object without a time (never from S3 or a
    directory) counts as written when it was listed, so it is never skipped."""
    return info.last_modified.timestamp() if info.last_modified is not None else listed_at


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
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
        visibility_timeout: int = VISIBILITY_TIMEOUT,
    ) -> None:
        self.source = source
        self.objects = objects
        self.queue = queue
        self.cursors = cursors
        self.bucket = bucket if bucket is not None else objects.bucket
        self.settle_seconds = settle_seconds
        self.visibility_timeout = visibility_timeout

    @property
    def mode(self) -> str:
        return "notifications" if self.queue is not None else "listing"

    # ----------------------------------------------------------------- listing
    def stored_state(self) -> ListingState:
        rec = self.cursors.get(self.source, LISTING_ENDPOINT)
        return self._state(rec.value if rec else None)

    def _state(self, raw: str | None) -> ListingState:
        return ListingState.from_json(raw, self.settle_seconds) or ListingState(
            settle_seconds=self.settle_seconds
        )

    def commit(self, state: ListingState) -> ListingState:
        """Merge ``state`` into the stored one with compare-and-set; a concurrent
        commit is re-read and merged, never overwritten."""
        for _ in range(_COMMIT_ATTEMPTS):
            rec = self.cursors.get(self.source, LISTING_ENDPOINT)
            stored = self._state(rec.value if rec else None)
            merged = stored.merge(state)
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
        listed_at = time.time()
        owned = (o for o in self.objects.list_all() if self.objects.owns(o.key))
        new = state.fresh(owned, listed_at)[:limit]
        return Discovery(objects=new, state=state.advance(new, listed_at))

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
        merged = self.stored_state().merge(state)
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
