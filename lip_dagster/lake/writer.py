"""The one landing path every pattern uses.

For a batch of events: give each its id and hour, add ``_lip``, group by hour, cut
objects at a bound, and for each object with key K (DESIGN §4):

1. claim each id as ``pending(K)`` in the dedupe store, dropping ids already landed
   elsewhere (or pending under an object that exists: an earlier crash landed them);
2. put object K holding the ids kept;
3. mark them ``landed(K)``.

The caller commits its cursor (or deletes from its buffer) only after ``write``
returns. K is a function of the candidate ids, so a retry of the same events
rewrites the same key instead of adding a second copy. Puts overlap with
serializing and compressing the next object.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from isal import igzip

from lip_dagster.errors import LakeWriteError, LipError
from lip_dagster.lake.backends import LakeBackend
from lip_dagster.lake.envelope import PATTERNS, EventIdentity, check_extra_envelope, envelope
from lip_dagster.lake.layout import hour_of, object_key, partition_start, validate_source_name
from lip_dagster.state.base import DedupeKey, DedupeStore

log = logging.getLogger(__name__)

UNTIMED_HOUR = "1970-01-01-00:00"
"""Dedupe hour for events without a usable timestamp: their lake hour is the arrival
hour, which differs between retries, so their identity must not depend on it. The
epoch hour keeps the key a valid partition key; such ids expire by TTL like others."""

DEFAULT_MAX_OBJECT_BYTES = 5_000_000
DEFAULT_MAX_OBJECT_EVENTS = 100_000
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


class _Item(NamedTuple):
    key: DedupeKey
    line: bytes
    time: datetime | None


def compress(data: bytes, level: int = 2) -> bytes:
    """gzip readable by stdlib ``gzip`` and ``zcat``; mtime 0 so bytes are repeatable."""
    return igzip.compress(data, compresslevel=level, mtime=0)


def batch_uuid(source: str, hour: str, ids: Iterable[str]) -> str:
    h = hashlib.sha256(f"{source}\n{hour}\n".encode())
    for i in sorted(ids):
        h.update(i.encode())
        h.update(b"\n")
    return str(uuid.UUID(bytes=h.digest()[:16], version=5))


class LakeWriter:
    """Lands batches exactly once per id (see module docstring)."""

    def __init__(
        self,
        lake: LakeBackend,
        dedupe: DedupeStore,
        *,
        max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
        max_object_events: int = DEFAULT_MAX_OBJECT_EVENTS,
        compresslevel: int = 2,
        put_workers: int = 2,
    ) -> None:
        if max_object_bytes < 1024 or max_object_events < 1:
            raise ValueError("object bounds too small")
        self.lake = lake
        self.dedupe = dedupe
        self.max_object_bytes = max_object_bytes
        self.max_object_events = max_object_events
        self.compresslevel = compresslevel
        self._pool = ThreadPoolExecutor(max_workers=put_workers, thread_name_prefix="lip-put")

    def close(self) -> None:
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
    ) -> WriteResult:
        """Land ``events`` and return per-hour stats. Raises ``LakeWriteError`` (or
        the state store's error) if any object could not be landed; ids of objects
        that did land are marked, the rest stay pending and a retry lands them.

        ``extra_envelope`` adds keys to every event's ``_lip`` (S3 streaming records
        the vendor object an event came from as ``origin``); it cannot replace the
        fixed keys."""
        validate_source_name(source)
        if pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {PATTERNS}, not {pattern!r}")
        extra = check_extra_envelope(extra_envelope)
        now = datetime.now(UTC)
        arrival = arrival or now
        groups, dup_in_batch = self._prepare(source, events, identity, pattern, arrival, now, extra)
        result = WriteResult()
        for hour, dups in dup_in_batch.items():
            result.hours.setdefault(hour, HourStats()).duplicates += dups
        pending: list[tuple[str, Future[None]]] = []
        try:
            for hour, items in groups.items():
                for chunk in self._chunks(items):
                    self._land_chunk(source, hour, chunk, result, pending)
        finally:
            errors = []
            for key, fut in pending:
                try:
                    fut.result()
                except LipError as exc:
                    errors.append((key, exc))
        if errors:
            key, exc = errors[0]
            raise LakeWriteError(
                f"{len(errors)} object(s) of source {source!r} failed to land "
                f"(first: {key}: {exc}); their events stay pending and the next run retries"
            ) from exc
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
    ) -> tuple[dict[str, list[_Item]], dict[str, int]]:
        ingested_at = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        arrival_hour = hour_of(arrival)
        groups: dict[str, list[_Item]] = {}
        seen: dict[str, set[str]] = {}
        dups: dict[str, int] = {}
        dumps = orjson.dumps
        # The envelope is spliced into the vendor's serialized event as bytes instead
        # of copying each event into a new dict: per-event allocations are what make
        # Python slow here (and the garbage collector scan a large heap).
        head = b',"_lip":{"source":' + dumps(source) + b',"id":'
        tails = {
            hf: b',"ingested_at":'
            + dumps(ingested_at)
            + b',"pattern":'
            + dumps(pattern)
            + b',"hour_from":"'
            + hf.encode()
            + b'"'
            + b"".join(b"," + dumps(k) + b":" + dumps(v) for k, v in (extra or {}).items())
            + b"}}\n"
            for hf in ("event", "arrival")
        }
        locate_time = identity.locate_time
        event_id = identity.event_id
        gc_was_on = gc.isenabled()
        gc.disable()  # nothing here makes reference cycles; refcounting frees it all
        try:
            for ev in events:
                eid = event_id(ev)
                t, hour = locate_time(ev)
                if hour is not None:
                    dkey = DedupeKey(hour, eid)
                    hour_from = "event"
                else:
                    hour = arrival_hour
                    dkey = DedupeKey(UNTIMED_HOUR, eid)
                    hour_from = "arrival"
                s = seen.get(hour)
                if s is None:
                    s = seen[hour] = set()
                    groups[hour] = []
                if eid in s:
                    dups[hour] = dups.get(hour, 0) + 1
                    continue
                s.add(eid)
                if ev and "_lip" not in ev:
                    body = dumps(ev)
                    line = body[:-1] + head + dumps(eid) + tails[hour_from]
                else:  # empty, or the vendor sent its own _lip: ours wins
                    rec = dict(ev)
                    rec["_lip"] = envelope(source, eid, ingested_at, pattern, hour_from, extra)
                    line = dumps(rec) + b"\n"
                groups[hour].append(_Item(dkey, line, t))
        finally:
            if gc_was_on:
                gc.enable()
        return groups, dups

    def _chunks(self, items: list[_Item]) -> Iterable[list[_Item]]:
        raw_cap = self.max_object_bytes * _RAW_PER_GZ
        chunk: list[_Item] = []
        size = 0
        for it in items:
            if chunk and (len(chunk) >= self.max_object_events or size + len(it.line) > raw_cap):
                yield chunk
                chunk, size = [], 0
            chunk.append(it)
            size += len(it.line)
        if chunk:
            yield chunk

    def _land_chunk(
        self,
        source: str,
        hour: str,
        chunk: list[_Item],
        result: WriteResult,
        pending: list[tuple[str, Future[None]]],
    ) -> None:
        times = [it.time for it in chunk if it.time is not None]
        ts = min(times) if times else partition_start(hour)
        uid = batch_uuid(source, hour, (it.key.event_id for it in chunk))
        key = object_key(source, hour, ts, uid)
        prior = self.dedupe.claim(source, [it.key for it in chunk], key)
        stats = result.hours.setdefault(hour, HourStats())
        kept = chunk
        if prior:
            kept = []
            landed_elsewhere: dict[str, list[DedupeKey]] = {}
            exists: dict[str, bool] = {}
            for it in chunk:
                st = prior.get(it.key)
                if st is None:
                    kept.append(it)
                elif st.status == "landed":
                    # in the lake already, this very object included: a page that
                    # overlaps the last one must not put (and report) it again
                    stats.duplicates += 1
                elif st.object_key == key:
                    kept.append(it)  # pending here: this object is being retried
                elif st.object_key and self._exists(st.object_key, exists):
                    # an earlier run put that object and crashed before marking it
                    landed_elsewhere.setdefault(st.object_key, []).append(it.key)
                    stats.duplicates += 1
                else:
                    kept.append(it)
            for other_key, keys in landed_elsewhere.items():
                self.dedupe.mark_landed(source, keys, other_key)
        if not kept:
            return
        raw = b"".join(it.line for it in kept)
        data = compress(raw, self.compresslevel)
        if len(data) > self.max_object_bytes and len(kept) > 1:
            half = len(kept) // 2
            self._land_chunk(source, hour, kept[:half], result, pending)
            self._land_chunk(source, hour, kept[half:], result, pending)
            return
        stats.events += len(kept)
        stats.objects += 1
        stats.bytes_raw += len(raw)
        stats.bytes_gz += len(data)
        stats.keys.append(key)
        kept_times = [it.time for it in kept if it.time is not None]
        if kept_times:
            newest = max(kept_times)
            if stats.newest_event is None or newest > stats.newest_event:
                stats.newest_event = newest
        keys = [it.key for it in kept]
        pending.append((key, self._pool.submit(self._put_and_mark, source, key, data, keys)))

    def _exists(self, key: str, cache: dict[str, bool]) -> bool:
        if key not in cache:
            cache[key] = self.lake.exists(key)
        return cache[key]

    def _put_and_mark(self, source: str, key: str, data: bytes, keys: list[DedupeKey]) -> None:
        self.lake.put(key, data)
        self.dedupe.mark_landed(source, keys, key)
        log.debug("landed %s (%d events, %d bytes)", key, len(keys), len(data))
