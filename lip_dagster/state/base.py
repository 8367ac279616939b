"""The state interfaces: one small ABC per store, two implementations each
(SQLite for the embedded default, AWS for production).

Order of effects (DESIGN §4): land the object, mark ids landed, then commit the cursor
or delete from the buffer. These interfaces are what make that order enforceable.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

from lip_dagster.secrets import Secret

# ----------------------------------------------------------------------------- cursor


@dataclass(frozen=True)
class CursorRecord:
    """A cursor as stored.

    ``value`` is the vendor's opaque cursor (a next link, a 1Password cursor, a
    timestamp). ``version`` increases by one on every commit and is what
    compare-and-set compares. ``high_water`` is the newest event time (ISO 8601 UTC)
    the cursor has passed; it never moves backwards and feeds coverage.
    """

    value: str
    version: int
    high_water: str | None = None
    updated_at: float = 0.0


class CursorStore(ABC):
    """Per (source, endpoint) cursor with compare-and-set commit."""

    @abstractmethod
    def get(self, source: str, endpoint: str) -> CursorRecord | None:
        """The stored cursor, or None before the first commit."""

    @abstractmethod
    def commit(
        self,
        source: str,
        endpoint: str,
        value: str,
        expected_version: int | None,
        high_water: str | None = None,
    ) -> CursorRecord:
        """Store ``value`` if the stored version still equals ``expected_version``
        (None: only if no cursor exists yet). Raises ``CursorConflict`` otherwise.
        ``high_water`` is kept as the max of the stored and the given value.
        """

    def ensure(self, source: str) -> list[str]:
        """Create this source's backend resources if missing (never delete or
        replace); returns notes on drift. Nothing to do for SQLite."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


# ----------------------------------------------------------------------------- dedupe

IdStatus = Literal["accepted", "pending", "landed"]
MovableStatus = Literal["pending", "landed"]
"""The states ``DedupeStore.reclaim`` moves an id from."""


@dataclass(frozen=True)
class IdState:
    """Where one event id stands in the commit log."""

    status: IdStatus
    object_key: str | None = None


class DedupeKey(NamedTuple):
    """An event's identity within a source, led by the time of the event so inserts
    arrive in index order and old ids are pruned by time. ``bucket`` is the event's
    hour (``YYYY-MM-DD-HH:00``, the partition key) or, in a store whose
    ``key_resolution`` is ``"second"``, its second (``YYYY-MM-DD-HH:MM:SS``); see
    ``time_bucket``. A tuple, not a dataclass: one is made per event on the landing
    path, where a dataclass costs three times as much."""

    bucket: str
    event_id: str


KeyResolution = Literal["hour", "second"]


def time_bucket(hour: str, t: datetime, resolution: KeyResolution) -> str:
    """The ``DedupeKey.bucket`` of an event of time ``t`` (UTC) in partition ``hour``.

    Why seconds: in an ordered index, ids of one bucket sit together in random order
    (vendor ids are random). A page of 1,000 new ids of one hour lands on nearly
    every index page that hour already fills, and SQLite writes each of them whole:
    at 100,000 ids in the hour that is 4 KB written per id, and the claim is 6x
    slower than in an empty hour. Ids of one second fill few pages, and a page of
    time-ordered events adds to the newest ones only. DynamoDB hashes its keys and
    keeps ``hour``."""
    if resolution == "hour":
        return hour
    return hour[:14] + MINUTE_SECOND[t.minute * 60 + t.second]


MINUTE_SECOND = tuple(f"{m:02d}:{s:02d}" for m in range(60) for s in range(60))
"""``MM:SS`` of each second of an hour: a lookup per event, not two formatted numbers
(the writer inlines ``time_bucket`` on its per-event path)."""


class DedupeStore(ABC):
    """The commit log: ``accepted`` -> ``pending(K)`` -> ``landed(K)``.

    Entries expire ``ttl_seconds`` after their last write (default 30 days).
    Every method is batched: one call per page, not per event.
    """

    ttl_seconds: int = 30 * 24 * 3600
    key_resolution: KeyResolution = "hour"
    """The time part of this store's keys (``time_bucket``). Fixed for the life of
    the store's data: every caller that names a key (the writer, the webhook
    receiver) takes it from here."""

    @abstractmethod
    def accept(self, source: str, keys: Sequence[DedupeKey]) -> list[bool]:
        """Insert-if-absent as ``accepted`` (webhook receiver). Returns, per key in
        order, True if it was new (buffer it) or False if already known (a duplicate
        delivery: acknowledge, do not buffer)."""

    @abstractmethod
    def claim(
        self, source: str, keys: Sequence[DedupeKey], object_key: str
    ) -> dict[DedupeKey, IdState]:
        """Make every key that is absent or ``accepted`` ``pending(object_key)``.

        Returns the state of the keys the caller must look at, which this call left
        as they were: those ``landed`` (drop them while their object is in the lake;
        if it is gone, ``reclaim`` them from ``landed``) and those ``pending`` under a
        different object key K' (if K' is in the lake, an earlier run landed them
        and crashed before marking: mark them ``landed(K')``; if not, ``reclaim``
        them). Keys absent from the result are now ``pending(object_key)``.

        A key pending elsewhere is never moved before the caller has looked for
        its object: moving it first, then crashing before the mark, would leave it
        in K' while it reads as pending under an object never written, and the
        next run would land it a second time."""

    @abstractmethod
    def reclaim(
        self,
        source: str,
        keys: Sequence[DedupeKey],
        from_key: str | None,
        object_key: str,
        *,
        from_status: MovableStatus = "pending",
    ) -> list[DedupeKey]:
        """Move keys still ``pending(from_key)`` to ``pending(object_key)``, once the
        caller has seen that object ``from_key`` is not in the lake (or does not
        hold them). Compare-and-set per key: returns the keys moved; a key that
        changed state meanwhile is left alone and not returned.

        With ``from_status="landed"`` the keys moved are those still
        ``landed(from_key)``, however the store recorded that (per id, or through a
        mark of the whole object): the caller saw that object ``from_key`` is no
        longer in the lake (removed by hand, say), so its events must land again.
        ``from_key`` may equal ``object_key``: the object is written again."""

    @abstractmethod
    def mark_landed(self, source: str, keys: Sequence[DedupeKey], object_key: str) -> None:
        """Record that ``object_key`` holding these ids is in the lake."""

    @abstractmethod
    def get(self, source: str, keys: Sequence[DedupeKey]) -> dict[DedupeKey, IdState]:
        """Current state of the keys that exist (absent keys are omitted)."""

    @abstractmethod
    def prune(self, now: float | None = None) -> int:
        """Delete expired entries; returns how many. (DynamoDB does this by TTL.)"""

    def ensure(self, source: str) -> list[str]:
        """Create this source's backend resources if missing (never delete or
        replace); returns notes on drift. Nothing to do for SQLite."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


# ----------------------------------------------------------------------------- buffer


@dataclass(frozen=True)
class BufferMessage:
    """One received message. ``receipt`` is what ``delete`` takes; it changes on every
    receive. SQLite refuses a stale receipt; SQS may accept one, which is harmless
    because a receipt is only used after its events have landed."""

    message_id: str
    receipt: str
    body: bytes
    receive_count: int
    sent_at: float


@dataclass(frozen=True)
class BufferDepth:
    """What the arrival sensor and backpressure look at."""

    messages: int
    oldest_age_seconds: float | None
    dead_letters: int
    in_flight: int = 0
    """Of ``messages``, those a drain has received and that stay hidden until their
    visibility timeout: no drain can receive them now. After a failed drain the
    whole batch is in flight; a drain requested then would find nothing, succeed,
    and make a failing source look healthy."""

    @property
    def ready(self) -> int:
        """Messages a drain could receive now."""
        return max(0, self.messages - self.in_flight)


def _already_durable() -> None:
    """What ``Buffer.append`` returns when the append was durable on its own."""


class Buffer(ABC):
    """At-least-once queue per source, with visibility timeout and a dead-letter
    queue after ``max_receives`` receives (SQS with a redrive policy on AWS)."""

    max_receives: int = 5
    retention_seconds: float | None = None
    """How long the queue keeps a message after it was first buffered, dead-lettered
    or not; None: until it is deleted. Past it the queue drops the message, and
    events never landed are lost: a dead-letter page says by when to replay."""

    @abstractmethod
    def send(self, source: str, bodies: Sequence[bytes]) -> list[str]:
        """Durably append; returns message ids. Durable before it returns."""

    def append(self, source: str, bodies: Sequence[bytes]) -> Callable[[], None]:
        """Append, and return the call that makes every append made so far durable.

        Two steps so that a caller committing one group after another (the webhook
        receiver) can append the next group while a single disk flush covers the
        ones before it. Nothing appended may be acknowledged to anyone before the
        returned call has returned. By default this is ``send``: already durable."""
        self.send(source, bodies)
        return _already_durable

    @abstractmethod
    def receive(
        self, source: str, max_messages: int, visibility_timeout: float
    ) -> list[BufferMessage]:
        """Up to ``max_messages`` visible messages, hidden for ``visibility_timeout``
        seconds. A message received more than ``max_receives`` times moves to the
        dead-letter queue instead of being returned. An empty list means no message
        was visible: a drain stops there."""

    @abstractmethod
    def delete(self, source: str, receipts: Sequence[str]) -> None:
        """Delete after the messages' events are landed."""

    @abstractmethod
    def depth(self, source: str) -> BufferDepth:
        """Visible + in-flight messages, age of the oldest, and DLQ depth."""

    @abstractmethod
    def dead_letters(self, source: str, max_messages: int = 10) -> list[BufferMessage]:
        """Peek at dead-lettered messages (for the DLQ check and the replay job)."""

    @abstractmethod
    def redrive(self, source: str) -> int:
        """Move every dead-lettered message back to the main queue; returns how many."""

    def ensure(self, source: str) -> list[str]:
        """Create this source's backend resources if missing (never delete or
        replace); returns notes on drift. Nothing to do for SQLite."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


# ---------------------------------------------------------------------------- secrets


class SecretStore(ABC):
    """Named secrets. Implementations never log or embed the value in errors."""

    @abstractmethod
    def _fetch(self, name: str) -> str:
        """The raw value, or raise ``SecretNotFound`` naming only ``name``."""

    def __init__(self, ttl_seconds: float = 300.0) -> None:
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[float, Secret]] = {}

    def get(self, name: str) -> Secret:
        """The secret, cached for ``ttl_seconds`` so rotation is picked up without a
        restart and the backend is not called on every page."""
        now = time.monotonic()
        hit = self._cache.get(name)
        if hit is not None and hit[0] > now:
            return hit[1]
        secret = Secret(self._fetch(name))
        self._cache[name] = (now + self._ttl, secret)
        return secret

    def invalidate(self, name: str | None = None) -> None:
        """Forget cached values (after a 401, the secret may have rotated)."""
        if name is None:
            self._cache.clear()
        else:
            self._cache.pop(name, None)
