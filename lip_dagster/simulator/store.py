"""In-memory event streams, opaque cursors and RFC 3339 parsing shared by all vendors.

Each (vendor, endpoint) stream keeps events in *persistence order* (the order the vendor
stored them; what ``VendorSimulator.events`` returns as ground truth) plus a sort index on
each event's own timestamp, because the vendors page differently: Okta polling and
1Password cursors walk persistence order, while Okta bounded queries, Slack and Google
page by event time. Cursors hold a position or a last-seen ``(time, seq)`` key, never an
offset into a result set, so pages stay correct when events are added between requests.

Events are stored as their serialized JSON (one ``bytes`` per event), not as dicts:
pages are then a join instead of a re-serialization, memory is a fraction, and a few
hundred thousand stored events do not turn every garbage-collector pass of the host
process (tests and benchmarks run in it) into a walk over millions of containers.

All state is guarded by one lock: HTTP handlers run on the server thread while tests call
``add_events``/``events`` from theirs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import re
import secrets
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, overload

import orjson

from lip_dagster.simulator.generators import NS, VENDORS, gc_paused, generate

Key = tuple[int, int]  # (event time ns, persistence sequence number)
T = TypeVar("T")
Predicate = Callable[[int], bool]  # seq -> keep?

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)
_DAYS_BEFORE_MONTH = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)


def parse_rfc3339(text: str) -> int:
    """RFC 3339 (offset required, up to nanoseconds) to epoch ns. Strict on purpose: the
    real vendors reject sloppy timestamps, so the simulator must too."""
    m = _RFC3339.match(text.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hh, mm, ss = (int(m.group(i)) for i in range(1, 7))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hh < 24 and mm < 60 and ss < 61):
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    frac = m.group(7) or ""
    nanos = int(frac.ljust(9, "0")) if frac else 0
    # days since epoch (proleptic Gregorian), avoiding datetime's microsecond limit
    y = year - 1
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = (
        y * 365
        + y // 4
        - y // 100
        + y // 400
        + _DAYS_BEFORE_MONTH[month - 1]
        + (1 if leap and month > 2 else 0)
        + day
        - 1
        - 719_162
    )
    seconds = days * 86_400 + hh * 3600 + mm * 60 + ss
    if m.group(9):
        offset = int(m.group(10)) * 3600 + int(m.group(11)) * 60
        seconds -= offset if m.group(9) == "+" else -offset
    return seconds * NS + nanos


def now_ns() -> int:
    return time.time_ns()


class CursorCodec:
    """Opaque, tamper-evident cursors: JSON payload + truncated HMAC, base64url.

    Vendors tell clients never to build cursors; signing them makes a client that does
    fail loudly here instead of silently working against the simulator only.
    """

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def encode(self, kind: str, *payload: Any) -> str:
        raw = orjson.dumps([kind, *payload])
        mac = hmac.new(self._secret, raw, hashlib.sha256).digest()[:10]
        return base64.urlsafe_b64encode(raw + mac).decode().rstrip("=")

    def decode(self, kind: str, token: str) -> list[Any] | None:
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            return None
        raw, mac = blob[:-10], blob[-10:]
        good = hmac.new(self._secret, raw, hashlib.sha256).digest()[:10]
        if len(blob) <= 10 or not hmac.compare_digest(mac, good):
            return None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, list) or not data or data[0] != kind:
            return None
        return data[1:]


class SeqList(Generic[T]):
    """Items by absolute sequence number, whose oldest can be dropped (a stream under a
    retention window). ``len()`` is the next sequence number, so positions held in
    clients' cursors stay valid; an index below ``first`` has expired (IndexError)."""

    __slots__ = ("first", "items")

    def __init__(self) -> None:
        self.first = 0
        self.items: list[T] = []

    def __len__(self) -> int:
        return self.first + len(self.items)

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    @overload
    def __getitem__(self, i: int) -> T: ...
    @overload
    def __getitem__(self, i: slice) -> list[T]: ...
    def __getitem__(self, i: int | slice) -> T | list[T]:
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            return self.items[max(start - self.first, 0) : max(stop - self.first, 0) : step]
        if i < 0:
            i += len(self)
        if i < self.first:
            raise IndexError(f"sequence number {i} has expired (oldest kept: {self.first})")
        return self.items[i - self.first]

    def append(self, item: T) -> None:
        self.items.append(item)

    def drop(self, n: int) -> list[T]:
        """Forget the ``n`` oldest items; returns them."""
        gone = self.items[:n]
        del self.items[:n]
        self.first += len(gone)
        return gone


class Stream:
    """One vendor endpoint's events. Not locked itself: ``SimState`` holds the lock."""

    __slots__ = (
        "_sorted",
        "blobs",
        "endpoint",
        "gen_clock_ns",
        "keys",
        "persist",
        "times",
        "vendor",
    )

    def __init__(self, vendor: str, endpoint: str) -> None:
        self.vendor = vendor
        self.endpoint = endpoint
        self.blobs: SeqList[bytes] = SeqList()  # serialized events, persistence order
        self.times: SeqList[int] = SeqList()
        self.persist: SeqList[int] = SeqList()
        self.keys: list[Key] = []
        self._sorted = True
        self.gen_clock_ns = 0

    def __len__(self) -> int:
        return len(self.blobs)

    @property
    def first(self) -> int:
        """The oldest sequence number still kept."""
        return self.blobs.first

    def expire(self, persisted_before_ns: int) -> list[bytes]:
        """Forget the events persisted before the given time, oldest first, as a
        vendor's retention does; returns their blobs."""
        persist = self.persist.items
        n = 0
        while n < len(persist) and persist[n] < persisted_before_ns:
            n += 1
        if n == 0:
            return []
        self.times.drop(n)
        self.persist.drop(n)
        gone = self.blobs.drop(n)
        first = self.first
        self.keys = [k for k in self.keys if k[1] >= first]
        return gone

    def event(self, seq: int) -> dict[str, Any]:
        """A fresh dict of one event (for filters that look inside)."""
        return orjson.loads(self.blobs[seq])  # type: ignore[no-any-return]

    def page_json(self, seqs: list[int]) -> bytes:
        """The JSON array of these events, without re-serializing them."""
        blobs = self.blobs
        return b"[" + b",".join([blobs[s] for s in seqs]) + b"]"

    def extend(self, batch: list[tuple[int, int, bytes]]) -> None:
        base = len(self.blobs)
        last = self.keys[-1][0] if self.keys else -1
        for i, (t, p, blob) in enumerate(batch):
            self.blobs.append(blob)
            self.times.append(t)
            self.persist.append(p)
            self.keys.append((t, base + i))
            if t < last:
                self._sorted = False
            last = t

    def sorted_keys(self) -> list[Key]:
        if not self._sorted:
            self.keys.sort()
            self._sorted = True
        return self.keys

    # ---- time-ordered paging (Okta bounded, Slack, Google)

    def page_asc(
        self, lo: int, hi: int, after: Key | None, limit: int, pred: Predicate | None
    ) -> tuple[list[int], bool]:
        """Seqs with ``lo <= time < hi`` after key ``after``, oldest first; and whether
        more remain after the page."""
        keys = self.sorted_keys()
        start = bisect_left(keys, (lo, -1))
        if after is not None:
            start = max(start, bisect_left(keys, (after[0], after[1] + 1)))
        end = bisect_left(keys, (hi, -1))
        if pred is None:
            stop = min(end, start + limit)
            return [k[1] for k in keys[start:stop]], stop < end
        out: list[int] = []
        i = start
        while i < end:
            seq = keys[i][1]
            if pred(seq):
                if len(out) == limit:
                    return out, True
                out.append(seq)
            i += 1
        return out, False

    def page_desc(
        self, lo: int, hi: int, before: Key | None, limit: int, pred: Predicate | None
    ) -> tuple[list[int], bool]:
        """Seqs with ``lo <= time < hi`` before key ``before``, newest first; and
        whether more remain after the page."""
        keys = self.sorted_keys()
        start = bisect_left(keys, (lo, -1))
        end = bisect_left(keys, (hi, -1))
        if before is not None:
            end = min(end, bisect_left(keys, before))
        if pred is None:
            stop = max(start, end - limit)
            return [k[1] for k in reversed(keys[stop:end])], stop > start
        out: list[int] = []
        i = end - 1
        while i >= start:
            seq = keys[i][1]
            if pred(seq):
                if len(out) == limit:
                    return out, True
                out.append(seq)
            i -= 1
        return out, False

    # ---- persistence-ordered paging (Okta polling, 1Password)

    def page_persisted(self, pos: int, limit: int, pred: Predicate | None) -> tuple[list[int], int]:
        """Up to ``limit`` seqs from position ``pos`` in persistence order; returns them
        and the position to resume from (just after the last one, or the end of the
        stream when the page is not full)."""
        n = len(self.blobs)
        pos = max(pos, self.first)  # a cursor older than the retention window
        if limit <= 0:
            return [], pos
        if pred is None:
            stop = min(n, pos + limit)
            return list(range(pos, stop)), stop
        out: list[int] = []
        i = pos
        while i < n:
            if pred(i):
                out.append(i)
                if len(out) == limit:
                    return out, i + 1
            i += 1
        return out, n


def _event_id(vendor: str, event: dict[str, Any]) -> str:
    if vendor == "okta":
        return str(event["uuid"])
    if vendor == "slack":
        return str(event["id"])
    if vendor == "onepassword":
        return str(event["uuid"])
    return str(event["id"]["uniqueQualifier"])


def _reid(vendor: str, event: dict[str, Any]) -> None:
    """Replace a colliding id; astronomically rare, but ``events()`` promises unique
    ids across the whole run, so the promise is enforced rather than assumed."""
    rng = random.SystemRandom()
    if vendor == "okta":
        h = f"{rng.getrandbits(128):032x}"
        event["uuid"] = f"{h[:8]}-{h[8:12]}-1{h[13:16]}-a{h[17:20]}-{h[20:]}"
    elif vendor == "slack":
        h = f"{rng.getrandbits(128):032x}"
        event["id"] = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
    elif vendor == "onepassword":
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
        event["uuid"] = "".join(rng.choice(alphabet) for _ in range(26))
    else:
        event["id"]["uniqueQualifier"] = str(rng.getrandbits(64) - (1 << 63))


class SimState:
    """Every stream of every vendor, with lazy live generation and id bookkeeping."""

    def __init__(
        self, seed: int, live_rate_per_s: float, retention_hours: float | None = None
    ) -> None:
        self.lock = threading.RLock()
        self.seed = seed
        self.live_rate_per_s = live_rate_per_s
        self.retention_ns = None if retention_hours is None else int(retention_hours * 3600 * NS)
        self.streams: dict[tuple[str, str], Stream] = {
            (v, e): Stream(v, e) for v, eps in VENDORS.items() for e in eps
        }
        self._ids: dict[str, set[str]] = {v: set() for v in VENDORS}
        self._batches = 0

    def stream(self, vendor: str, endpoint: str) -> Stream:
        try:
            return self.streams[(vendor, endpoint)]
        except KeyError:
            raise ValueError(f"unknown vendor/endpoint {vendor!r}/{endpoint!r}") from None

    def _rng(self, vendor: str, endpoint: str) -> random.Random:
        """A distinct, reproducible random stream per batch: same seed, same data."""
        self._batches += 1
        digest = hashlib.sha256(
            f"{self.seed}/{vendor}/{endpoint}/{self._batches}".encode()
        ).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def add(
        self,
        vendor: str,
        endpoint: str,
        n: int,
        start_ns: int,
        end_ns: int,
        clamp_start: bool = True,
    ) -> list[bytes]:
        """Generate and persist ``n`` events with times in ``[start_ns, end_ns)``;
        returns their serialized form."""
        with self.lock:
            stream = self.stream(vendor, endpoint)
            if n <= 0:
                return []
            # one GC pause over generation and indexing: with the collector running,
            # every young-generation pass would walk all the just-built events again
            with gc_paused():
                batch = generate(
                    vendor,
                    endpoint,
                    n,
                    start_ns,
                    end_ns,
                    self._rng(vendor, endpoint),
                    clamp=clamp_start,
                )
                ids = self._ids[vendor]
                stored: list[tuple[int, int, bytes]] = []
                for t, p, ev in batch:
                    eid = _event_id(vendor, ev)
                    while eid in ids:
                        _reid(vendor, ev)
                        eid = _event_id(vendor, ev)
                    ids.add(eid)
                    stored.append((t, p, orjson.dumps(ev)))
                del batch
                stream.extend(stored)
            return [blob for _, _, blob in stored]

    def advance(self, vendor: str, endpoint: str, now: int | None = None) -> Stream:
        """Bring a stream up to wall-clock time: ``live_rate_per_s`` events per elapsed
        second, generated only when someone looks (no background thread)."""
        with self.lock:
            stream = self.stream(vendor, endpoint)
            rate = self.live_rate_per_s
            if rate <= 0 or stream.gen_clock_ns == 0:
                return stream
            now = now_ns() if now is None else now
            elapsed = now - stream.gen_clock_ns
            n = int(elapsed * rate / NS)
            if n > 0:
                span = int(n * NS / rate)
                start = stream.gen_clock_ns
                self.add(vendor, endpoint, n, start, start + span, clamp_start=False)
                stream.gen_clock_ns = start + span
            if self.retention_ns is not None:
                self._expire(stream, now - self.retention_ns)
            return stream

    def _expire(self, stream: Stream, before_ns: int) -> None:
        """Drop what the retention window no longer covers, in chunks of at least a
        tenth of the stream (each drop copies what is kept), and forget the dropped
        ids, so a long-running demo holds a window of events, not its whole history."""
        persist = stream.persist.items
        due = 0
        limit = max(1000, len(persist) // 10)
        while due < len(persist) and persist[due] < before_ns and due < limit:
            due += 1
        if due < limit and not (due and due == len(persist)):
            return
        ids = self._ids[stream.vendor]
        for blob in stream.expire(before_ns):
            ids.discard(_event_id(stream.vendor, orjson.loads(blob)))

    def set_live_rate(self, rate: float) -> None:
        """Pausing stops arrivals; resuming starts from now (no burst for the pause)."""
        with self.lock:
            if self.live_rate_per_s <= 0 < rate:
                now = now_ns()
                for stream in self.streams.values():
                    if stream.gen_clock_ns:
                        stream.gen_clock_ns = now
            self.live_rate_per_s = rate

    def start_clock(self, now: int) -> None:
        with self.lock:
            for stream in self.streams.values():
                stream.gen_clock_ns = now

    def snapshot(self, vendor: str, endpoint: str) -> list[dict[str, Any]]:
        """Fresh dicts in persistence order, decoded from exactly the bytes clients get."""
        with self.lock:
            blobs = list(self.stream(vendor, endpoint).blobs)
        return decode_many(blobs)


def decode_many(blobs: list[bytes]) -> list[dict[str, Any]]:
    """Decode serialized events in one go, with the collector paused (see module doc)."""
    loads = orjson.loads
    with gc_paused():  # one blob at a time is ~3x faster than one huge array
        return [loads(b) for b in blobs]
