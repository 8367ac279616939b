"""The one landing path every pattern uses.

For a batch (a page) of events: give each its id and hour, add ``_lip``, group by
hour, cut objects at a bound, and for each object with key K (DESIGN §4):

1. claim each id as ``pending(K)`` in the dedupe store, dropping ids already landed
   in an object that is in the lake (or pending under an object that exists: an
   earlier crash landed them, so they are marked landed there); an id pending, or
   landed, under an object that does not exist moves to K only after that was
   checked (a landed object is gone only if someone removed it: its events land
   again);
2. put object K holding the ids kept;
3. mark them ``landed(K)``.

The caller commits its cursor (or deletes from its buffer) only after the page's
result is in (``write`` returns, or ``submit(...).result()`` does). K is a function
of the candidate ids, so a retry of the same events comes to the same key instead of
adding a second copy. Puts are create-only: an object already at K (put by a run that
died before step 3) is read and its ids marked, never rewritten; ids it lacks (their
earlier copies in other objects expired from the commit log) land beside it.

Pages are pipelined: ``submit`` runs ``write`` on one of ``pages_in_flight`` landing
threads and returns at once, so the caller fetches page N+1 while page N lands, and
page N+1 is prepared, compressed and claimed while page N's objects are put and
marked. Claims go one at a time, pages in the order they were submitted, and an
object that shares ids with one still in flight first waits for it, so a page
repeating ids of a page still landing finds them landed, exactly as if the pages had
been written one after the other.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import logging
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from isal import igzip

from lip_dagster import jsontext
from lip_dagster.errors import LakeReadError, LakeWriteError, LipError, UnwritableEvents
from lip_dagster.lake.backends import LakeBackend, Quarantine
from lip_dagster.lake.envelope import (
    EPOCH_HOUR,
    PATTERNS,
    EventIdentity,
    check_extra_envelope,
    envelope,
)
from lip_dagster.lake.layout import (
    hour_of,
    object_key,
    parse_object_key,
    partition_start,
    validate_source_name,
)
from lip_dagster.state.base import (
    MINUTE_SECOND,
    DedupeKey,
    DedupeStore,
    IdState,
    KeyResolution,
    MovableStatus,
)

log = logging.getLogger(__name__)

UNTIMED_HOUR = EPOCH_HOUR
"""Dedupe key time for events without a usable timestamp: their lake hour is the arrival
hour, which differs between retries, so their identity must not depend on it. The
epoch hour keeps the key a valid partition key; such ids expire by TTL like others.
No usable event time falls in it (``time_and_hour`` treats it as unset), so this key
always means "filed by arrival"."""

DEFAULT_MAX_OBJECT_BYTES = 5_000_000
DEFAULT_MAX_OBJECT_EVENTS = 100_000
DEFAULT_PAGES_IN_FLIGHT = 2
# Objects are cut on raw size before compressing; security logs compress 6-12x, so
# 8x the gzip bound rarely overshoots, and an object that does is split again.
_RAW_PER_GZ = 8


@dataclass
class HourStats:
    """What one run did to one hour partition: becomes materialization metadata."""

    events: int = 0
    duplicates: int = 0
    objects: int = 0
    bytes_raw: int = 0
    bytes_gz: int = 0
    newest_event: datetime | None = None
    keys: list[str] = field(default_factory=list)


@dataclass
class WriteResult:
    hours: dict[str, HourStats] = field(default_factory=dict)
    # events set aside in quarantine instead of landed (see ``LakeWriter.quarantine``)
    quarantined: int = 0

    @property
    def events(self) -> int:
        return sum(h.events for h in self.hours.values())

    @property
    def duplicates(self) -> int:
        return sum(h.duplicates for h in self.hours.values())

    @property
    def objects(self) -> int:
        return sum(h.objects for h in self.hours.values())

    @property
    def newest_event(self) -> datetime | None:
        times = [h.newest_event for h in self.hours.values() if h.newest_event]
        return max(times) if times else None

    def merge(self, other: WriteResult) -> None:
        self.quarantined += other.quarantined
        for hour, s in other.hours.items():
            mine = self.hours.setdefault(hour, HourStats())
            mine.events += s.events
            mine.duplicates += s.duplicates
            mine.objects += s.objects
            mine.bytes_raw += s.bytes_raw
            mine.bytes_gz += s.bytes_gz
            mine.keys.extend(s.keys)
            if s.newest_event and (mine.newest_event is None or s.newest_event > mine.newest_event):
                mine.newest_event = s.newest_event


class PendingWrite:
    """A page handed to ``LakeWriter.submit``.

    ``result()`` waits until every object of the page has landed and been marked,
    then returns the page's stats, or raises what made one fail (``LakeWriteError``,
    or the state store's error); ids of objects that did land are marked, the rest
    stay pending and a retry lands them. Commit a cursor or delete from a buffer only
    after ``result()`` returned."""

    __slots__ = ("_future",)

    def __init__(self, future: Future[WriteResult]) -> None:
        self._future = future

    def done(self) -> bool:
        return self._future.done()

    def result(self, timeout: float | None = None) -> WriteResult:
        return self._future.result(timeout)


class _FoundInPlace(NamedTuple):
    """An object found already in the lake without some of the events this run
    would have put in it: ``held`` of them were in it (duplicates), the others
    landed in ``objects`` (key, bytes raw, bytes gzipped) instead."""

    hour: str
    key: str
    planned: tuple[int, int]
    held: int
    objects: list[tuple[str, int, int]]

    def account(self, stats: HourStats) -> None:
        """Correct the hour's stats, which counted object ``key`` (``planned``: bytes
        raw and gzipped) as put whole."""
        stats.events -= self.held
        stats.duplicates += self.held
        stats.objects += len(self.objects) - 1
        stats.bytes_raw -= self.planned[0]
        stats.bytes_gz -= self.planned[1]
        stats.keys.remove(self.key)
        for key, raw, gz in self.objects:
            stats.keys.append(key)
            stats.bytes_raw += raw
            stats.bytes_gz += gz


class _Chunk(NamedTuple):
    """Events of one future object: parallel lists, one entry per event."""

    keys: list[DedupeKey]
    lines: list[bytes]
    times: list[datetime | None]


@dataclass
class _Group:
    """One hour's events of a page, while the page is prepared."""

    chunk: _Chunk
    seen: set[str]


def compress(data: bytes, level: int = 2) -> bytes:
    """gzip readable by stdlib ``gzip`` and ``zcat``; mtime 0 so bytes are repeatable."""
    return igzip.compress(data, compresslevel=level, mtime=0)


def batch_uuid(source: str, hour: str, ids: Iterable[str]) -> str:
    """The object's name: a function of the source, the hour and the *set* of ids."""
    ordered = sorted(ids)
    h = hashlib.sha256(f"{source}\n{hour}\n".encode())
    if ordered:  # one id per line, each ending in "\n"
        h.update(("\n".join(ordered) + "\n").encode())
    return str(uuid.UUID(bytes=h.digest()[:16], version=5))


_new_key = tuple.__new__  # DedupeKey(bucket, id) without the namedtuple's Python __new__


def _held(key: DedupeKey) -> tuple[bool, str]:
    """A dedupe key as ``LakeWriter._ids_in`` reports what an object holds."""
    return key.bucket == UNTIMED_HOUR, key.event_id


def _pick(chunk: _Chunk, index: Sequence[int]) -> _Chunk:
    return _Chunk(
        [chunk.keys[i] for i in index],
        [chunk.lines[i] for i in index],
        [chunk.times[i] for i in index],
    )


class LakeWriter:
    """Lands pages exactly once per id (see module docstring). Safe to share between
    threads: ``write`` may be called from several at once, alongside ``submit``."""

    def __init__(
        self,
        lake: LakeBackend,
        dedupe: DedupeStore,
        *,
        max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
        max_object_events: int = DEFAULT_MAX_OBJECT_EVENTS,
        compresslevel: int = 2,
        put_workers: int = 2,
        pages_in_flight: int = DEFAULT_PAGES_IN_FLIGHT,
        quarantine: Quarantine | None = None,
    ) -> None:
        """``quarantine``: where events no lake object can hold are set aside, so
        the rest of their page lands and its source moves on (a poller would
        otherwise fetch the same page and fail on it every run). Without one, or
        when a ``write`` asks to ``raise_unwritable``, such a page raises
        ``UnwritableEvents`` and nothing of it lands: the caller sets them aside its
        own way (S3 streaming keeps the vendor object instead)."""
        if max_object_bytes < 1024 or max_object_events < 1:
            raise ValueError("object bounds too small")
        if pages_in_flight < 1:
            raise ValueError("pages_in_flight must be at least 1")
        self.lake = lake
        self.dedupe = dedupe
        self.max_object_bytes = max_object_bytes
        self.max_object_events = max_object_events
        self.compresslevel = compresslevel
        self.quarantine = quarantine
        self._pool = ThreadPoolExecutor(max_workers=put_workers, thread_name_prefix="lip-put")
        self._landers = ThreadPoolExecutor(
            max_workers=pages_in_flight, thread_name_prefix="lip-land"
        )
        self._slots = threading.BoundedSemaphore(pages_in_flight)
        # the claims of the page submitted last: the next page claims after them
        self._turn_lock = threading.Lock()
        self._last_turn = threading.Event()
        self._last_turn.set()
        self._local = threading.local()
        # Objects claimed and not yet landed and marked, with their ids. Claims (and
        # this list) go one at a time, so an object sharing ids with one in flight
        # waits for it, whichever page or caller either belongs to.
        self._claiming = threading.Lock()
        self._in_flight: list[tuple[set[DedupeKey], Future[_FoundInPlace | None]]] = []

    def close(self) -> None:
        """Wait for submitted pages to land, then stop the threads."""
        self._landers.shutdown(wait=True)
        self._pool.shutdown(wait=True)

    # ------------------------------------------------------------------ public
    def write(
        self,
        source: str,
        events: Iterable[dict[str, Any]],
        identity: EventIdentity,
        pattern: str,
        arrival: datetime | None = None,
        *,
        extra_envelope: Mapping[str, str] | None = None,
        raise_unwritable: bool = False,
    ) -> WriteResult:
        """Land ``events`` and return per-hour stats. Raises ``LakeWriteError`` (or
        the state store's error) if any object could not be landed; ids of objects
        that did land are marked, the rest stay pending and a retry lands them.

        ``extra_envelope`` adds keys to every event's ``_lip`` (S3 streaming records
        the vendor object an event came from as ``origin``); it cannot replace the
        fixed keys."""
        # a page from ``submit`` claims after the page submitted before it
        turn: tuple[threading.Event, threading.Event] | None = getattr(self._local, "turn", None)
        result = WriteResult()
        pending: list[tuple[str, Future[_FoundInPlace | None]]] = []
        try:
            try:
                validate_source_name(source)
                if pattern not in PATTERNS:
                    raise ValueError(f"pattern must be one of {PATTERNS}, not {pattern!r}")
                extra = check_extra_envelope(extra_envelope)
                now = datetime.now(UTC)
                arrival = arrival or now
                page = events if isinstance(events, list | tuple) else list(events)
                prepare = functools.partial(
                    self._prepare,
                    source,
                    identity=identity,
                    pattern=pattern,
                    arrival=arrival,
                    now=now,
                    extra=extra,
                    resolution=self.dedupe.key_resolution,
                )
                try:
                    groups, dup_in_batch = prepare(page)
                except orjson.JSONEncodeError as exc:
                    kept = self._set_aside_unwritable(
                        source, page, identity, pattern, exc, raise_unwritable
                    )
                    result.quarantined += len(page) - len(kept)
                    groups, dup_in_batch = prepare(kept)
                for hour, dups in dup_in_batch.items():
                    result.hours.setdefault(hour, HourStats()).duplicates += dups
                if turn is not None:
                    turn[0].wait()
                for hour, items in groups.items():
                    for chunk in self._chunks(items):
                        key = self._key(source, hour, chunk)
                        # Compressed before the claim, outside the lock: almost always
                        # every id is kept and this is the object as put.
                        encoded = self._encode(chunk)
                        with self._claiming:
                            self._wait_for_overlap(chunk.keys)
                            self._land_chunk(source, hour, chunk, result, pending, key, encoded)
            finally:
                if turn is not None:
                    turn[1].set()  # also on error: the next page's claims go on
        finally:
            wait_futures([f for _, f in pending])
        return self._outcome(source, result, pending)

    def submit(
        self,
        source: str,
        events: Iterable[dict[str, Any]],
        identity: EventIdentity,
        pattern: str,
        arrival: datetime | None = None,
        *,
        extra_envelope: Mapping[str, str] | None = None,
    ) -> PendingWrite:
        """``write`` on a landing thread: returns at once (or, with
        ``pages_in_flight`` pages still landing, as soon as one has landed), so the
        caller can fetch the next page meanwhile. The events must not change until
        the page has landed. Pages claim their ids in the order they were submitted,
        so each id lands in the first page that holds it, as if the pages had been
        written one after the other. Resolve handles in the order they were
        submitted to commit cursors in order."""
        page = events if isinstance(events, list | tuple) else list(events)
        self._slots.acquire()
        with self._turn_lock:
            turn = (self._last_turn, threading.Event())
            self._last_turn = turn[1]
        try:
            future = self._landers.submit(
                self._write_in_turn,
                turn,
                source,
                page,
                identity,
                pattern,
                arrival,
                extra_envelope,
            )
        except BaseException:
            turn[1].set()
            self._slots.release()  # the writer is closed
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return PendingWrite(future)

    def _write_in_turn(
        self,
        turn: tuple[threading.Event, threading.Event],
        source: str,
        events: list[dict[str, Any]],
        identity: EventIdentity,
        pattern: str,
        arrival: datetime | None,
        extra_envelope: Mapping[str, str] | None,
    ) -> WriteResult:
        """``write`` on a landing thread, with the page's place in the claim order
        (previous page's claims done, this page's claims done)."""
        self._local.turn = turn
        try:
            return self.write(
                source, events, identity, pattern, arrival, extra_envelope=extra_envelope
            )
        finally:
            self._local.turn = None
            turn[1].set()  # however ``write`` ended, the next page's claims go on

    # ----------------------------------------------------------------- the page
    def _set_aside_unwritable(
        self,
        source: str,
        page: Sequence[dict[str, Any]],
        identity: EventIdentity,
        pattern: str,
        exc: orjson.JSONEncodeError,
        raise_unwritable: bool,
    ) -> list[dict[str, Any]]:
        """The events of ``page`` a lake object can hold, after those it cannot
        (nested deeper than orjson writes, though it read them) went to quarantine,
        each under an id from its content, so a page fetched again adds no copy.
        Looked for only after the serializer refused the page: a page pays nothing."""
        bad = [ev for ev in page if isinstance(ev, dict) and not jsontext.writable(ev)]
        if not bad:
            raise exc  # not the nesting: not ours to explain
        what = (
            f"{len(bad)} event(s) of source {source!r} are nested deeper than "
            f"{jsontext.MAX_WRITE_DEPTH} levels of arrays and objects, more than a lake "
            "object can hold"
        )
        if self.quarantine is None or raise_unwritable:
            raise UnwritableEvents(f"{what}; nothing of this page was landed", bad) from exc
        for ev in bad:
            data = jsontext.dumps_deep(ev)
            try:
                eid: str | None = identity.event_id(ev)
            except orjson.JSONEncodeError:  # no id field: the fallback id hashes the event
                eid = None
            reason = (
                f"source {source!r}: a {pattern} event (id {eid or 'none'}) is nested deeper "
                f"than {jsontext.MAX_WRITE_DEPTH} levels of arrays and objects, more than a "
                "lake object can hold. The rest of its page landed; this event is only here."
            )
            where = self.quarantine.put(
                source,
                f"{pattern}-event",
                data,
                reason,
                stable_id=hashlib.sha256(data).hexdigest()[:32],
            )
            log.error("%s: quarantined an event at %s: %s", source, where, reason)
        unwritable = {id(ev) for ev in bad}
        return [ev for ev in page if id(ev) not in unwritable]

    def _wait_for_overlap(self, keys: list[DedupeKey]) -> None:
        """Wait for objects in flight that hold any of ``keys`` (under
        ``_claiming``): a page repeating ids of a page still landing must find them
        landed, as if the pages had been written one after the other. Pages rarely
        overlap, so claims rarely wait for puts."""
        live = [(ids, fut) for ids, fut in self._in_flight if not fut.done()]
        self._in_flight = live
        for ids, fut in live:
            if not ids.isdisjoint(keys):
                wait_futures([fut])

    @staticmethod
    def _outcome(
        source: str, result: WriteResult, pending: list[tuple[str, Future[_FoundInPlace | None]]]
    ) -> WriteResult:
        errors: list[tuple[str, LipError]] = []
        for key, fut in pending:
            exc = fut.exception()
            if exc is None:
                found = fut.result()
                if found is not None:
                    found.account(result.hours[found.hour])
                continue
            if not isinstance(exc, LipError):
                raise exc  # not ours: let it surface unchanged
            errors.append((key, exc))
        if errors:
            key, first = errors[0]
            raise LakeWriteError(
                f"{len(errors)} object(s) of source {source!r} failed to land "
                f"(first: {key}: {first}); their events stay pending and the next run retries"
            ) from first
        return result

    # ----------------------------------------------------------------- helpers
    def _prepare(
        self,
        source: str,
        events: Iterable[dict[str, Any]],
        identity: EventIdentity,
        pattern: str,
        arrival: datetime,
        now: datetime,
        extra: Mapping[str, str] | None = None,
        resolution: KeyResolution = "hour",
    ) -> tuple[dict[str, _Chunk], dict[str, int]]:
        # zero-padded by hand: strftime('%Y') does not pad years below 1000
        ingested_at = (
            f"{now.year:04d}-{now.month:02d}-{now.day:02d}T{now.hour:02d}:{now.minute:02d}:"
            f"{now.second:02d}.{now.microsecond:06d}Z"
        )
        arrival_hour = hour_of(arrival)
        groups: dict[str, _Group] = {}
        dups: dict[str, int] = {}
        dumps = orjson.dumps
        new_key = _new_key
        # The envelope is spliced into the vendor's serialized event as bytes instead
        # of copying each event into a new dict: per-event allocations are what make
        # Python slow here (and the garbage collector scan a large heap).
        head = b',"_lip":{"source":' + dumps(source) + b',"id":'
        tail_event, tail_arrival = (
            b',"ingested_at":'
            + dumps(ingested_at)
            + b',"pattern":'
            + dumps(pattern)
            + b',"hour_from":"'
            + hf.encode()
            + b'"'
            + b"".join(b"," + dumps(k) + b":" + dumps(v) for k, v in (extra or {}).items())
            + b"}}\n"
            for hf in ("event", "arrival")
        )
        locate = identity.locate
        by_hour = resolution == "hour"
        minute_second = MINUTE_SECOND
        gc_was_on = gc.isenabled()
        gc.disable()  # nothing here makes reference cycles; refcounting frees it all
        try:
            for ev in events:
                if not isinstance(ev, dict):  # the envelope is spliced into an object
                    raise LakeWriteError(
                        f"source {source!r}: an event is a {type(ev).__name__}, not a JSON "
                        "object; nothing of this page was landed"
                    )
                eid, t, hour = locate(ev)
                if hour is not None:
                    if not by_hour:  # time_bucket(hour, t, "second"), without the call
                        bucket = hour[:14] + minute_second[t.minute * 60 + t.second]  # type: ignore[union-attr]
                        dkey = new_key(DedupeKey, (bucket, eid))
                    else:
                        dkey = new_key(DedupeKey, (hour, eid))
                    tail = tail_event
                else:
                    hour = arrival_hour
                    dkey = new_key(DedupeKey, (UNTIMED_HOUR, eid))
                    tail = tail_arrival
                g = groups.get(hour)
                if g is None:
                    g = groups[hour] = _Group(_Chunk([], [], []), set())
                if eid in g.seen:
                    dups[hour] = dups.get(hour, 0) + 1
                    continue
                g.seen.add(eid)
                if ev and "_lip" not in ev:
                    line = dumps(ev)[:-1] + (head + dumps(eid) + tail)
                else:  # empty, or the vendor sent its own _lip: ours wins
                    rec = dict(ev)
                    hour_from = "event" if tail is tail_event else "arrival"
                    rec["_lip"] = envelope(source, eid, ingested_at, pattern, hour_from, extra)
                    line = dumps(rec) + b"\n"
                chunk = g.chunk
                chunk.keys.append(dkey)
                chunk.lines.append(line)
                chunk.times.append(t)
        finally:
            if gc_was_on:
                gc.enable()
        return {hour: g.chunk for hour, g in groups.items()}, dups

    def _chunks(self, items: _Chunk) -> Iterable[_Chunk]:
        raw_cap = self.max_object_bytes * _RAW_PER_GZ
        max_events = self.max_object_events
        lines = items.lines
        n = len(lines)
        if n <= max_events and sum(map(len, lines)) <= raw_cap:
            yield items  # the usual case: the hour's events are one object
            return
        start = size = 0
        for i, line in enumerate(lines):
            if i > start and (i - start >= max_events or size + len(line) > raw_cap):
                yield _Chunk(items.keys[start:i], lines[start:i], items.times[start:i])
                start, size = i, 0
            size += len(line)
        if start < n:
            yield _Chunk(items.keys[start:], lines[start:], items.times[start:])

    @staticmethod
    def _key(source: str, hour: str, chunk: _Chunk) -> str:
        """Object key of ``chunk``, checked to parse as the backends will parse it, so
        a key they would refuse fails here, before any id is claimed under it, and as
        a ``LakeWriteError``: pollers and drains handle that (report, keep the batch,
        fail the run), where a bare ValueError would escape them."""
        times = [t for t in chunk.times if t is not None]
        earliest: datetime | None = min(times) if times else None
        try:
            ts = earliest or partition_start(hour)
            key = object_key(source, hour, ts, batch_uuid(source, hour, (k[1] for k in chunk.keys)))
            parse_object_key(key)
        except LipError:
            raise
        except (ValueError, OverflowError) as exc:
            when = earliest.isoformat() if earliest else "none, filed by arrival"
            raise LakeWriteError(
                f"source {source!r}: cannot build a lake object key for {len(chunk.keys)} "
                f"event(s) of hour {hour!r} (earliest event time: {when}): {exc}. They were "
                "not landed; the run fails before its cursor is committed (or its buffer "
                "deleted), so they are retried"
            ) from exc
        return key

    def _land_chunk(
        self,
        source: str,
        hour: str,
        chunk: _Chunk,
        result: WriteResult,
        pending: list[tuple[str, Future[_FoundInPlace | None]]],
        key: str,
        encoded: tuple[int, bytes] | None = None,
        absent_from: frozenset[str] = frozenset(),
    ) -> None:
        """Claim, then put (on the put pool) one object. ``encoded`` is the whole
        chunk already serialized and compressed; ``absent_from`` names objects this
        chunk's ids were just found not to be in."""
        prior = self.dedupe.claim(source, chunk.keys, key)
        stats = result.hours.setdefault(hour, HourStats())
        kept = chunk
        if prior:
            kept, moved = self._kept(source, chunk, key, prior, stats, absent_from)
            encoded = None
            if moved:
                # object ``key`` holds other events and is never rewritten: the rest
                # lands under a key of its own
                part_key = self._key(source, hour, kept)
                self._land_chunk(
                    source, hour, kept, result, pending, part_key, None, absent_from | {key}
                )
                return
        if not kept.keys:
            return
        raw_len, data = encoded or self._encode(kept)
        if len(data) > self.max_object_bytes and len(kept.keys) > 1:
            half = len(kept.keys) // 2
            for part in (
                _Chunk(kept.keys[:half], kept.lines[:half], kept.times[:half]),
                _Chunk(kept.keys[half:], kept.lines[half:], kept.times[half:]),
            ):
                sub_key = self._key(source, hour, part)
                self._land_chunk(source, hour, part, result, pending, sub_key, None, absent_from)
            return
        stats.events += len(kept.keys)
        stats.objects += 1
        stats.bytes_raw += raw_len
        stats.bytes_gz += len(data)
        stats.keys.append(key)
        kept_times = [t for t in kept.times if t is not None]
        if kept_times:
            newest = max(kept_times)
            if stats.newest_event is None or newest > stats.newest_event:
                stats.newest_event = newest
        fut = self._pool.submit(self._put_and_mark, source, hour, key, data, kept)
        pending.append((key, fut))
        self._in_flight.append((set(kept.keys), fut))

    def _encode(self, chunk: _Chunk) -> tuple[int, bytes]:
        """(uncompressed size, gzip bytes) of the object ``chunk`` makes."""
        raw = b"".join(chunk.lines)
        return len(raw), compress(raw, self.compresslevel)

    def _kept(
        self,
        source: str,
        chunk: _Chunk,
        key: str,
        prior: Mapping[DedupeKey, IdState],
        stats: HourStats,
        absent_from: frozenset[str],
    ) -> tuple[_Chunk, bool]:
        """The part of a claimed chunk still to land, given the ids' prior states,
        and whether it must land under another key than ``key``."""
        keep: list[int] = []
        landed_in: dict[str | None, list[int]] = {}
        landed_elsewhere: dict[str, list[DedupeKey]] = {}
        orphaned: dict[str | None, list[int]] = {}
        exists: dict[str, bool] = {}
        for i, k in enumerate(chunk.keys):
            st = prior.get(k)
            if st is None:
                keep.append(i)
            elif st.status == "landed":
                landed_in.setdefault(st.object_key, []).append(i)
            elif st.object_key == key:
                keep.append(i)  # pending here: this object is being retried
            elif (
                st.object_key
                and st.object_key not in absent_from
                and self._exists(st.object_key, exists)
            ):
                # an earlier run put that object and crashed before marking it
                landed_elsewhere.setdefault(st.object_key, []).append(k)
                stats.duplicates += 1
            else:
                # pending under an object that is not in the lake (or, as just
                # read, does not hold it): moved here only now that we looked
                orphaned.setdefault(st.object_key, []).append(i)
        # Landed ids are duplicates while the object holding them is in the lake,
        # this very object included: a page that overlaps the last one must not put
        # (and report) it again. One look per object, and only for pages that
        # repeat ids. An object that is gone (moved out of the lake by hand, say)
        # took its events with it: they land again, here. (An id landed under no
        # known object cannot be looked for, and stays a duplicate.)
        lost: dict[str, list[int]] = {}
        key_holds_landed = False
        for other, idxs in landed_in.items():
            if other is None or self._exists(other, exists):
                stats.duplicates += len(idxs)
                key_holds_landed = key_holds_landed or other == key
            else:
                lost[other] = idxs
        for other_key, keys in landed_elsewhere.items():
            self.dedupe.mark_landed(source, keys, other_key)
        for other, idxs in orphaned.items():
            keep += self._move(source, chunk, idxs, other, key, "pending")
        for gone, idxs in lost.items():
            log.warning(
                "source %r: %d event(s) marked landed in %s, which is no longer in the "
                "lake; landing them again in %s",
                source,
                len(idxs),
                gone,
                key,
            )
            keep += self._move(source, chunk, idxs, gone, key, "landed")
        keep.sort()
        kept = _pick(chunk, keep)
        if not key_holds_landed or not kept.keys or not self._exists(key, exists):
            return kept, False
        # Object ``key`` is in the lake and some of its ids are marked landed, others
        # not (a mark cut short: DynamoDB marks 25 ids per request; or ids marked one
        # by one as found elsewhere). Rewriting it with only the rest would delete
        # the marked ones from the lake, so it is read instead: ids in it are marked
        # landed, and ids not in it land under a key of their own.
        inside = self._ids_in(key)
        held = [_held(k) in inside for k in kept.keys]
        if any(held):
            self.dedupe.mark_landed(
                source, [k for k, h in zip(kept.keys, held, strict=True) if h], key
            )
            stats.duplicates += sum(held)
        rest = _pick(kept, [i for i, h in enumerate(held) if not h])
        return rest, bool(rest.keys)

    def _move(
        self,
        source: str,
        chunk: _Chunk,
        idxs: list[int],
        from_key: str | None,
        key: str,
        status: MovableStatus,
    ) -> list[int]:
        """Move the ids at ``idxs`` from ``status(from_key)`` to ``pending(key)``, all
        of them or fail the write: one that changed state since the claim read it
        was taken by someone else."""
        wanted = [chunk.keys[i] for i in idxs]
        moved = self.dedupe.reclaim(source, wanted, from_key, key, from_status=status)
        if len(moved) != len(wanted):
            raise LakeWriteError(
                f"source {source!r}: {len(wanted) - len(moved)} id(s) changed state while "
                f"this run claimed them for {key} (is another run landing this source?); "
                "nothing was put, and the next run retries them"
            )
        return idxs

    def _ids_in(self, key: str) -> set[tuple[bool, str]]:
        """What object ``key`` holds, as ``_held`` of each event's dedupe key: an
        object is one hour's events, so an id and whether its hour is the arrival
        hour name an event in it, whatever the store's key resolution."""
        try:
            lines = igzip.decompress(self.lake.get(key)).splitlines()
            envelopes = [orjson.loads(line)["_lip"] for line in lines if line]
            return {(e.get("hour_from") == "arrival", e["id"]) for e in envelopes}
        except (LakeReadError, OSError, ValueError, KeyError, TypeError) as exc:
            raise LakeWriteError(
                f"could not read lake object {key} to see which events it holds: {exc}"
            ) from exc

    def _exists(self, key: str, cache: dict[str, bool]) -> bool:
        """Whether object ``key`` is in the lake, asked once per ``cache``. A lake
        that cannot tell fails the write: taken as "absent", the events in that
        object would land a second time."""
        if key not in cache:
            try:
                cache[key] = self.lake.exists(key)
            except LakeWriteError:
                raise
            except (LakeReadError, OSError) as exc:
                raise LakeWriteError(
                    f"could not check whether lake object {key} exists: {exc}"
                ) from exc
        return cache[key]

    def _put_and_mark(
        self, source: str, hour: str, key: str, data: bytes, chunk: _Chunk
    ) -> _FoundInPlace | None:
        """Put object ``key`` holding ``chunk`` and mark its ids landed there. Returns
        None, or, when an object was already in place without some of them, what
        landed instead (``_FoundInPlace``)."""
        keys = chunk.keys
        if self.lake.put(key, data) is False:
            # An earlier run put this object and died before marking it (its name is
            # a function of these ids, so it holds them). Read, not rewritten: the
            # lake's objects are immutable, and S3 would notify the SAM again.
            inside = self._ids_in(key)
            held = [_held(k) in inside for k in keys]
            if not any(held):
                raise LakeWriteError(
                    f"lake object {key} is already in the lake without {len(keys)} of "
                    f"the {len(keys)} events this run would put in it; nothing was "
                    "overwritten, and its events stay pending. Look at who else writes "
                    "to this lake before re-running"
                )
            if not all(held):
                planned = (sum(map(len, chunk.lines)), len(data))
                return self._land_beside(source, hour, key, chunk, held, planned)
            log.info("%s was already in the lake (an earlier run died before marking it)", key)
        self.dedupe.mark_landed(source, keys, key)
        log.debug("landed %s (%d events, %d bytes)", key, len(keys), len(data))
        return None

    def _land_beside(
        self,
        source: str,
        hour: str,
        key: str,
        chunk: _Chunk,
        held: list[bool],
        planned: tuple[int, int],
    ) -> _FoundInPlace:
        """Object ``key`` is in the lake holding only the ids of ``chunk`` marked in
        ``held``: it was put from this same set of candidates when the others were
        known (landed in other objects), and they have since expired from the commit
        log (a backfill older than the TTL). Failing here would fail every re-run of
        that hour for good; the object is kept as it is, the ids it holds are marked
        landed there (they are in the lake once), and the others move to a key of
        their own before anything else is written, so none of them is ever left
        pending under an object that lacks it."""
        missing = [i for i, h in enumerate(held) if not h]
        rest = _pick(chunk, missing)
        rest_key = self._key(source, hour, rest)
        self._move(source, chunk, missing, key, rest_key, "pending")
        inside = [k for k, h in zip(chunk.keys, held, strict=True) if h]  # never empty
        self.dedupe.mark_landed(source, inside, key)
        log.warning(
            "source %r: %s is already in the lake with %d of the %d events this run "
            "would put in it (their ids had expired from the commit log); it is kept as "
            "it is and the other %d land in %s",
            source,
            key,
            len(inside),
            len(chunk.keys),
            len(rest.keys),
            rest_key,
        )
        raw_len, data = self._encode(rest)
        deeper = self._put_and_mark(source, hour, rest_key, data, rest)
        if deeper is None:
            return _FoundInPlace(hour, key, planned, len(inside), [(rest_key, raw_len, len(data))])
        return _FoundInPlace(hour, key, planned, len(inside) + deeper.held, deeper.objects)
