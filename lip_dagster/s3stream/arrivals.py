"""Finding new vendor objects: SQS notifications, or listing after a stored key.

**Notifications** (a queue is configured): messages are received with a visibility
timeout and acknowledged (deleted) only once the objects they announced landed (or
were set aside in quarantine): by the arrival sensor once the runs it requested
succeeded (``s3stream/pending.py``), or, in a run, after the objects landed. Until
then they stay hidden (their visibility is extended), so a failed run never lets a
message run into the queue's own redrive limit.

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
with compare-and-set, and never moves backwards. Only landed objects are committed
to it, and ``since`` is held back so an object not landed yet still counts as new:
a lost sensor cursor or a ``lip run`` finds it again.

Nothing here knows Dagster; ``components/s3.py`` turns plans into run requests and
runless materializations.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
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
MAX_HANDLED = 4_000
"""Key digests the listing state keeps at most (about 33 bytes each in its JSON: some
130 KB, well below DynamoDB's 400 KB item limit, which refused the state's commit and
stopped the source for good once more objects than that were written within one
settle window: a bulk copy into the prefix, a vendor catching up). Past it the oldest
digests give way to ``floor``: objects written at or before it count as handled, so
the settle window is shorter than ``settle_seconds`` until ``since`` moves on."""


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
    floor: float | None = None
    """Set once more than ``MAX_HANDLED`` keys were handled within the settle window:
    objects written at or before it count as handled (their digests were dropped)."""

    def fresh(self, listed: Iterable[ObjectInfo], listed_at: float) -> list[ObjectInfo]:
        """The listed objects not handled yet, oldest first (so ``since`` only ever
        passes objects that were handled)."""
        floor = None if self.since is None else self.since - self.settle_seconds
        handled = {d for d, _ in self.handled}
        out = [
            o
            for o in listed
            if (floor is None or _modified(o, listed_at) >= floor)
            and (self.floor is None or _modified(o, listed_at) > self.floor)
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
        floors = [f for f in (self.floor, other.floor) if f is not None]
        return self._settled(
            max(sinces) if sinces else None, handled, max(floors) if floors else None
        )

    def advance(self, objects: Iterable[ObjectInfo], listed_at: float) -> ListingState:
        return self.advance_keys((o.key, _modified(o, listed_at)) for o in objects)

    def advance_keys(
        self, keys: Iterable[tuple[str, float]], unfinished: Iterable[float] = ()
    ) -> ListingState:
        """Count ``(key, LastModified)`` as handled. ``unfinished``: times of objects
        found but not landed yet; ``since`` stays within ``settle_seconds`` of the
        oldest, so this state still lists them as new (it never moves backwards
        either: a ``since`` already past them stays)."""
        handled = dict(self.handled)
        since = self.since
        for key, t in keys:
            handled[key_digest(key)] = t
            since = t if since is None else max(since, t)
        hold = min(unfinished, default=None)
        if since is not None and hold is not None:
            capped = min(since, hold + self.settle_seconds)
            since = capped if self.since is None else max(self.since, capped)
        return self._settled(since, handled, self.floor, hold)

    def _settled(
        self,
        since: float | None,
        handled: dict[str, float],
        compacted: float | None = None,
        hold: float | None = None,
    ) -> ListingState:
        """The state keeping only what it must: digests within the settle window and
        after ``compacted``, at most ``MAX_HANDLED`` of them unless an object not
        landed yet (written at ``hold``) needs the older ones to stay new."""
        window = None if since is None else since - self.settle_seconds
        if compacted is not None and window is not None and compacted < window:
            compacted = None  # the settle window already covers it
        kept = sorted(
            (d, t)
            for d, t in handled.items()
            if (window is None or t >= window) and (compacted is None or t > compacted)
        )
        if len(kept) > MAX_HANDLED:
            # Never at or past ``since`` (objects of that second not taken yet sort
            # after it) nor an object not landed yet: those must stay new.
            limit = min((t for t in (since, hold) if t is not None), default=float("inf"))
            times = sorted(t for _, t in kept)
            below = [t for t in times[: len(times) - MAX_HANDLED] if t < limit]
            cut = below[-1] if below else None  # the newest time given up
            if cut is not None:
                log.warning(
                    "the S3 listing handled %d objects written within %.0f s; objects "
                    "written at or before %s count as handled from now on (an object "
                    "that shows up later with an older time is not seen)",
                    len(kept),
                    self.settle_seconds,
                    datetime.fromtimestamp(cut, UTC).isoformat(),
                )
                compacted = cut if compacted is None else max(compacted, cut)
                kept = [(d, t) for d, t in kept if t > compacted]
        return ListingState(since, tuple(kept), self.settle_seconds, compacted)

    def to_json(self) -> str:
        d: dict[str, object] = {"v": 2, "since": self.since, "handled": dict(self.handled)}
        if self.floor is not None:
            d["floor"] = self.floor
        return orjson.dumps(d).decode()

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
            floor = d.get("floor")
            state = cls(None if since is None else float(since), (), settle_seconds)
            return state._settled(state.since, handled, None if floor is None else float(floor))
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


@dataclass(frozen=True)
class Received:
    """One queue message: the keys it announced (for this source), to be deleted once
    none of them waits for a run."""

    message_id: str
    receipt: str
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class BadNotification:
    """A message that could not be used as it is: kept in quarantine with its body,
    which may be the only record of the object it named."""

    message_id: str
    body: bytes
    reason: str


@dataclass
class Discovery:
    """New objects, in the order found, and what to acknowledge once they are safe."""

    objects: list[ObjectInfo] = field(default_factory=list)
    state: ListingState | None = None  # listing: the state after these objects
    listed_at: float = 0.0
    messages: list[Received] = field(default_factory=list)  # notifications
    test_events: int = 0
    ignored: int = 0
    problems: list[BadNotification] = field(default_factory=list)

    def modified(self, info: ObjectInfo) -> float:
        """When an object was written (when it was listed, if unknown)."""
        return _modified(info, self.listed_at or time.time())


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
        return self._commit(lambda stored: stored.merge(state))

    def commit_landed(
        self, landed: Iterable[tuple[str, float]], unfinished: Iterable[float] = ()
    ) -> ListingState:
        """Record ``(key, LastModified)`` of landed objects in the stored state,
        keeping objects found but not landed yet (``unfinished``, their times) new."""
        landed, unfinished = list(landed), list(unfinished)
        return self._commit(lambda stored: stored.advance_keys(landed, unfinished))

    def _commit(self, change: Callable[[ListingState], ListingState]) -> ListingState:
        for _ in range(_COMMIT_ATTEMPTS):
            rec = self.cursors.get(self.source, LISTING_ENDPOINT)
            stored = self._state(rec.value if rec else None)
            merged = change(stored)
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
        return Discovery(objects=new, state=state.advance(new, listed_at), listed_at=listed_at)

    # ------------------------------------------------------------ notifications
    def _receive(self, limit: int) -> Discovery:
        assert self.queue is not None
        out = Discovery(listed_at=time.time())
        seen: set[str] = set()
        for msg in self.queue.receive(limit, self.visibility_timeout):
            note = parse_notification(msg.body)
            if note.test_event:
                out.test_events += 1
                out.messages.append(Received(msg.message_id, msg.receipt))
                continue
            out.ignored += note.other_events
            reasons = [note.problem] if note.problem else []
            keys: list[str] = []
            for a in note.arrivals:
                if self.bucket is not None and a.bucket != self.bucket:
                    out.ignored += 1
                    reasons.append(f"object in bucket {a.bucket!r}, not {self.bucket!r}; not read")
                    continue
                if not self.objects.owns(a.key):
                    out.ignored += 1
                    continue
                if a.key not in keys:
                    keys.append(a.key)
                if a.key in seen:
                    continue
                seen.add(a.key)
                out.objects.append(ObjectInfo(key=a.key, size=a.size, last_modified=a.event_time))
            if reasons:
                out.problems.append(
                    BadNotification(
                        msg.message_id,
                        msg.body,
                        f"notification {msg.message_id} on {self.queue.describe()}: "
                        + "; ".join(reasons),
                    )
                )
            out.messages.append(Received(msg.message_id, msg.receipt, tuple(keys)))
        return out

    def acknowledge(self, receipts: list[str]) -> int:
        """Delete handled notifications; returns how many the queue refused."""
        if not receipts or self.queue is None:
            return 0
        return self.queue.delete(receipts)

    def keep_hidden(self, receipts: list[str]) -> int:
        """Extend the visibility of notifications whose objects wait for a run;
        returns how many the queue refused."""
        if not receipts or self.queue is None:
            return 0
        return self.queue.extend(receipts, self.visibility_timeout)

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
