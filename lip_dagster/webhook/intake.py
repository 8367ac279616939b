"""From authenticated events to a durable buffer, with group commit.

For each source, requests that arrive while a commit is in progress wait and are
committed together in the next one: one dedupe read and one buffer append for the
whole group, in a worker thread so the event loop keeps reading requests. A durable
commit costs a flush to disk (a third of a millisecond to several, depending on the
disk); paying it per request would cap the receiver at a few thousand requests per
second, paying it per group does not.

The flush is a stage of its own (``Buffer.append`` returns it): a flusher thread
flushes and answers while the committer already commits the next group, and one
flush covers every group committed before it. Nothing is answered before the flush
that covers it returned. A flush that fails means the disk cannot be trusted: the
receiver refuses every delivery from then on, for every source (they share the
buffer's file), and ``/healthz`` fails, so the platform replaces it (as PostgreSQL
stops after a failed fsync). That includes groups already committed behind the failed
flush: a second fsync after a failed one may report success for pages the kernel
dropped, so they are never flushed and called durable; and deliveries answered as
duplicates of ids whose flush failed.

Order of effects, per group:

1. read the dedupe state of every event id; ids already known (``accepted``,
   ``pending`` or ``landed`` in the store, or buffered by this process and not yet
   marked) are duplicates: acknowledged, not buffered again. A store that cannot
   be read recognises none: everything is buffered (the writer drops duplicates
   when they land), since a 503 loses the delivery of a vendor that never retries;
2. append the new events to the buffer, flush it to disk, then answer;
3. mark them ``accepted`` (insert-if-absent), coalesced over ``mark_delay``
   seconds for every group of the source, so marking costs one more transaction
   per interval instead of one per group (and one per ``mark_chunk`` ids, so no
   commit waits long behind a mark).

A crash or an error before step 2 completes leaves nothing the vendor was told about
(it gets a 503, or no answer, and retries; what was appended but not answered is at
worst buffered twice, and dropped on landing). Marks are not needed for durability,
only to recognise duplicates: a crash before step 3 leaves events buffered but
unmarked, so a redelivery is buffered a second time and the writer's commit log
drops the extra copy when it lands. Marking *before* buffering would be the
dangerous order: a crash in between would leave ids marked that were never buffered,
and the vendor's retry would be dropped as a duplicate. That would lose events.

Each source has one committer thread, which runs its commits and its marks one after
another. Two threads writing the same SQLite file would queue on its write lock, and
SQLite's busy handler waits by sleeping (1, 2, 5 ms ...): a mark that overlapped a
commit used to stall that commit's answers by milliseconds. Ids committed by this
process count as duplicates of later deliveries from the moment they are appended
(``unflushed``); they become due for marking only once flushed (``unmarked``), so no
id is ever marked before it is durable. The event loop does the per-request work
(parse, keys, JSON of the message) and puts the request on the source's waiting
list; the committer takes the whole list as its next group the moment a commit ends,
and the flusher hands the answers back to the loop in one call per flush: one thread
round trip per group, not per request, and never a committer waiting for the loop to
give it work.

Deliveries whose JSON is at most half the message limit (all but the largest) share
buffer messages per group and arrival hour (``message.merge``): a buffer row, with
its index entries, is what a commit pays for per message, and the drain files events
by arrival hour only. Larger deliveries keep their own messages, split to fit SQS.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lip_dagster.errors import LipError
from lip_dagster.state.base import Buffer, DedupeKey, DedupeStore
from lip_dagster.webhook.errors import WebhookRejected
from lip_dagster.webhook.message import MAX_MESSAGE_BYTES, finish, merge, pack

__all__ = ["Intake", "Outcome"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What happened to one delivery: events buffered, and duplicates acknowledged."""

    accepted: int
    duplicates: int


@dataclass
class _Submission:
    events: list[dict[str, Any]]
    keys: list[DedupeKey]
    arrival: float
    packed: bytes
    future: asyncio.Future[Outcome] = field(repr=False)


def _refused() -> WebhookRejected:
    """What a vendor is told when nothing of its delivery could be made durable."""
    return WebhookRejected(503, "the buffer is unavailable; try again later")


@dataclass
class _Flush:
    """A committed group waiting for the flush that makes it durable."""

    group: list[_Submission]
    results: list[Outcome | BaseException]
    keys: list[DedupeKey]
    flush: Callable[[], None] | None


class _Source:
    """One source's committer and flusher threads, what they share with the event
    loop (the waiting lists, under ``lock``) and with each other (``unflushed`` and
    ``unmarked``, also under ``lock``)."""

    def __init__(self, name: str) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lip-intake-{name}")
        self.flusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lip-flush-{name}")
        self.lock = threading.Lock()
        self.waiting: list[_Submission] = []
        self.committing = False
        self.flushing: list[_Flush] = []
        self.flush_running = False
        # ids buffered by this process: committed, flush pending / durable, not marked
        self.unflushed: set[DedupeKey] = set()
        self.unmarked: set[DedupeKey] = set()
        self.marked_at = time.monotonic()


class Intake:
    """Group commit of deliveries into each source's buffer (see module docstring)."""

    def __init__(
        self,
        buffer: Buffer,
        dedupe: DedupeStore,
        *,
        max_group: int = 256,
        max_waiting: int = 10_000,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        mark_delay: float = 0.1,
        mark_chunk: int = 2_500,
        max_unmarked: int = 1_000_000,
    ) -> None:
        self.buffer = buffer
        self.dedupe = dedupe
        self.max_group = max_group
        self.max_waiting = max_waiting
        self.max_message_bytes = max_message_bytes
        self.mark_delay = mark_delay
        self.mark_chunk = mark_chunk
        self.max_unmarked = max_unmarked
        self._sources: dict[str, _Source] = {}
        self._markers: dict[str, asyncio.Task[None]] = {}
        # a flush failed: the disk cannot be trusted, nothing more is accepted
        self._failed: tuple[str, LipError] | None = None

    @property
    def failed(self) -> str | None:
        """Why this receiver refuses every delivery (a flush to disk failed), or None."""
        if self._failed is None:
            return None
        name, err = self._failed
        return f"source {name}: {err}"

    def close(self) -> None:
        for state in self._sources.values():
            state.pool.shutdown(wait=True)
            state.flusher.shutdown(wait=True)

    async def submit(
        self,
        source: str,
        events: list[dict[str, Any]],
        keys: list[DedupeKey],
        arrival: float,
    ) -> Outcome:
        """Buffer ``events`` (``keys`` are their dedupe keys, in order); returns once
        they are durable. Raises ``WebhookRejected`` (503: nothing of it stored; 413:
        an event too large to buffer)."""
        state = self._state(source)
        if len(state.waiting) >= self.max_waiting:
            raise WebhookRejected(503, "the receiver is overloaded; try again later")
        # Serialized here, on the assumption that nothing is a duplicate (the common
        # case): JSON holds the GIL wherever it runs, while compressing (in the
        # committer) does not, so the committer mostly waits on I/O and zlib with the
        # GIL free for the event loop. A submission that turns out to hold
        # duplicates is encoded again, without them, in the commit.
        packed = pack(source, arrival, events)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Outcome] = loop.create_future()
        with state.lock:
            state.waiting.append(_Submission(events, keys, arrival, packed, fut))
            start = not state.committing
            state.committing = True
        if start:
            state.pool.submit(self._commit_all, source, loop)
        # If the sender hangs up, the commit still runs: the events stay buffered.
        return await fut

    async def flush_marks(self) -> None:
        """Wait until every buffered id has been marked (or its marking failed)."""
        while self._markers:
            await asyncio.gather(*self._markers.values(), return_exceptions=True)

    def _state(self, source: str) -> _Source:
        state = self._sources.get(source)
        if state is None:
            state = self._sources[source] = _Source(source)
        return state

    # ------------------------------------------------------------------ buffering

    def _commit_all(self, source: str, loop: asyncio.AbstractEventLoop) -> None:
        """The committer: groups of whatever is waiting, one commit after another,
        until nothing is. It takes the next group itself the moment a commit ends,
        instead of waiting for the event loop (busy answering the last group) to hand
        it one: that wait used to leave the committer idle 40% of the time under load."""
        state = self._state(source)
        try:
            self._commit_groups(source, state, loop)
        finally:
            with state.lock:  # also after an error, so the next submit starts anew
                state.committing = False

    def _commit_groups(self, source: str, state: _Source, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            with state.lock:
                group = state.waiting[: self.max_group]
                del state.waiting[: self.max_group]
                if not group:
                    state.committing = False
                    return
            results: list[Outcome | BaseException]
            keys: list[DedupeKey] = []
            flush: Callable[[], None] | None = None
            try:
                if self._failed is not None:  # logged once, when the flush failed
                    results = [_refused()] * len(group)
                else:
                    results, keys, flush = self.commit(source, group)  # type: ignore[assignment]
            except LipError as err:
                log.warning(
                    "webhook %s: buffering failed, %d request(s) refused: %s",
                    source,
                    len(group),
                    err,
                )
                results = [_refused()] * len(group)
            except BaseException as err:
                # a bug, not the buffer: these requests fail (500), the next group
                # is still committed, and the error is in the log
                log.exception("webhook %s: committing %d request(s) failed", source, len(group))
                results = [err] * len(group)
            self._to_flusher(source, state, loop, _Flush(group, results, keys, flush))
            # Under steady traffic this loop may not end for a long time, and a mark
            # queued behind it would wait as long: mark from here when one is due.
            if state.unmarked and (
                len(state.unmarked) >= self.mark_chunk
                or time.monotonic() - state.marked_at >= self.mark_delay
            ):
                try:
                    self.mark(source)
                except Exception:  # a bug: the marks wait, the commits must not
                    log.exception("webhook %s: marking failed", source)

    # ------------------------------------------------------------------ flushing

    def _to_flusher(
        self, source: str, state: _Source, loop: asyncio.AbstractEventLoop, item: _Flush
    ) -> None:
        with state.lock:
            state.flushing.append(item)
            start = not state.flush_running
            state.flush_running = True
        if start:
            state.flusher.submit(self._flush_all, source, state, loop)

    def _flush_all(self, source: str, state: _Source, loop: asyncio.AbstractEventLoop) -> None:
        """The flusher: makes every group committed so far durable with one flush per
        buffer file, then answers them all, until nothing is waiting. While it
        flushes, the committer commits the next group: that overlap, not the flush
        itself, is what lets one disk flush answer many requests."""
        try:
            while True:
                with state.lock:
                    items, state.flushing = state.flushing, []
                    if not items:
                        state.flush_running = False
                        return
                self._flush_items(source, state, loop, items)
        except BaseException:
            with state.lock:
                state.flush_running = False
            raise

    def _flush_items(
        self,
        source: str,
        state: _Source,
        loop: asyncio.AbstractEventLoop,
        items: list[_Flush],
    ) -> None:
        error: Exception | None = None
        try:
            if self._failed is not None:
                # committed behind a flush that failed: flushing again may "succeed"
                # for pages the kernel already dropped, so these are refused unflushed
                raise self._failed[1]
            for flush in dict.fromkeys(i.flush for i in items if i.flush is not None):
                flush()
            if self._failed is not None:
                # another source's flush of the same file failed meanwhile: this one
                # may have been told of success for pages that flush lost
                raise self._failed[1]
        except LipError as err:
            error = err
            if self._failed is None:
                # After a failed fsync the kernel may have dropped the pages it could
                # not write: nothing committed can be called durable, so this process
                # stops accepting (503: a vendor that retries sends it again) until it is restarted.
                self._failed = (source, err)
                log.error(
                    "webhook %s: the buffer could not be flushed to disk; refusing every "
                    "delivery until the receiver is restarted: %s",
                    source,
                    err,
                )
        except Exception as err:
            # a bug, not the disk: these requests fail (500) and the error is in the
            # log; their events may be buffered, so a retry is at worst a duplicate
            error = err
            log.exception("webhook %s: flushing %d group(s) failed", source, len(items))
        fresh = False
        with state.lock:
            for item in items:
                state.unflushed.difference_update(item.keys)
                if error is None and item.keys:
                    fresh = True
                    if len(state.unmarked) + len(item.keys) > self.max_unmarked:
                        # marking has fallen far behind (the store is failing): forget
                        # the oldest notes rather than grow without bound; at worst a
                        # redelivery is buffered twice and dropped when it lands
                        log.warning(
                            "webhook %s: %d unmarked ids dropped", source, len(state.unmarked)
                        )
                        state.unmarked.clear()
                    state.unmarked.update(item.keys)
        if error is not None:
            # Every answer of these groups waited on this flush, those that buffered
            # nothing included: their duplicates may be of ids it failed to make durable.
            refused: Exception = _refused() if isinstance(error, LipError) else error
            for item in items:
                item.results = [refused] * len(item.group)
        loop.call_soon_threadsafe(self._answer, source, items, fresh)

    def _answer(self, source: str, items: list[_Flush], fresh: bool) -> None:
        if fresh and source not in self._markers:
            self._markers[source] = asyncio.get_running_loop().create_task(self._mark(source))
        for item in items:
            for sub, result in zip(item.group, item.results, strict=True):
                if sub.future.done():
                    continue
                if isinstance(result, Outcome):
                    sub.future.set_result(result)
                else:
                    sub.future.set_exception(result)

    def commit(
        self, source: str, group: list[_Submission]
    ) -> tuple[list[Outcome | WebhookRejected], list[DedupeKey], Callable[[], None] | None]:
        """Steps 1-2 of the module docstring for one group; runs in the source's
        committer thread. Returns each submission's outcome, the ids it buffered,
        and the call that makes them durable (None if nothing was buffered): no
        answer goes out before that call returned. Raises ``LipError`` if nothing
        could be buffered."""
        state = self._state(source)
        keys = [k for sub in group for k in sub.keys]
        try:
            known = set(self.dedupe.get(source, keys))
        except LipError as err:
            # Recognising duplicates here only saves buffer space: the writer's commit
            # log drops a duplicate when it lands. Refusing instead would lose the
            # delivery of every vendor that does not retry (GitHub, Jamf Pro).
            log.warning(
                "webhook %s: the dedupe store could not be read, %d event(s) buffered "
                "without checking for duplicates: %s",
                source,
                len(keys),
                err,
            )
            known = set()
        with state.lock:
            if state.unmarked or state.unflushed:
                known.update(k for k in keys if k in state.unmarked or k in state.unflushed)
        limit = self.max_message_bytes
        # JSON of at most half the limit fits once compressed: such a delivery can
        # neither be split nor refused, so it may share a message
        small = limit // 2
        results: list[Outcome | WebhookRejected] = []
        bodies: list[bytes] = []
        merged: dict[int, list[bytes]] = {}
        fresh_keys: list[DedupeKey] = []
        for sub in group:
            events: list[dict[str, Any]] = []
            new: list[DedupeKey] = []
            for event, key in zip(sub.events, sub.keys, strict=True):
                if key in known:
                    continue
                known.add(key)
                events.append(event)
                new.append(key)
            if not events:
                results.append(Outcome(0, len(sub.events)))
                continue
            packed = sub.packed
            if len(events) != len(sub.events):  # without the duplicates
                packed = pack(source, sub.arrival, events)
            if len(packed) <= small:
                merged.setdefault(int(sub.arrival // 3600), []).append(packed)
            else:
                try:
                    bodies += finish(packed, source, sub.arrival, events, limit)
                except WebhookRejected as rejected:
                    known.difference_update(new)
                    results.append(rejected)
                    continue
            fresh_keys += new
            results.append(Outcome(len(events), len(sub.events) - len(events)))
        for parts in merged.values():
            bodies += merge(parts, limit)
        flush = self.buffer.append(source, bodies) if bodies else None
        if fresh_keys:
            with state.lock:
                state.unflushed.update(fresh_keys)
        return results, fresh_keys, flush

    # ------------------------------------------------------------------- marking

    async def _mark(self, source: str) -> None:
        loop = asyncio.get_running_loop()
        state = self._state(source)
        try:
            while True:
                await asyncio.sleep(self.mark_delay)
                await loop.run_in_executor(state.pool, self._mark_if_due, source)
                # Checked and given up with no await in between: a commit that adds
                # ids after this check finds no marker and starts one.
                if not state.unmarked:
                    break
        finally:
            self._markers.pop(source, None)

    def _mark_if_due(self, source: str) -> None:
        # under traffic the committer marks between commits (``_commit_groups``);
        # this timer only covers the ids of the last commits before a lull
        state = self._state(source)
        if time.monotonic() - state.marked_at < self.mark_delay / 2:
            return
        while state.unmarked:
            self.mark(source)
            if state.waiting:  # deliveries came in: their commit goes first
                return

    def mark(self, source: str) -> None:
        """Step 3 for every id of the source buffered so far; runs in the committer
        thread, between two commits."""
        state = self._state(source)
        state.marked_at = time.monotonic()
        # at most mark_chunk ids at a time: the commits waiting behind a mark wait
        # for a few milliseconds, not for a tenth of a second of 100-event deliveries
        with state.lock:
            batch = list(itertools.islice(state.unmarked, self.mark_chunk))
        if not batch:
            return
        try:
            self.dedupe.accept(source, batch)
        except LipError as err:
            log.warning(
                "webhook %s: %d ids buffered but not marked accepted: %s", source, len(batch), err
            )
        with state.lock:
            state.unmarked.difference_update(batch)
