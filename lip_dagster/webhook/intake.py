"""From authenticated events to a durable buffer, with group commit.

For each source, requests that arrive while a commit is in progress wait and are
committed together in the next one: one dedupe read and one buffer append for the
whole group, in a worker thread so the event loop keeps reading requests. On
SQLite with ``synchronous=FULL`` every write transaction costs an fsync (half a
millisecond to several, depending on the disk); paying it per request would cap
the receiver at a few hundred requests per second, paying it per group does not.

Order of effects, per group:

1. read the dedupe state of every event id; ids already known (``accepted``,
   ``pending`` or ``landed`` in the store, or buffered by this process and not yet
   marked) are duplicates: acknowledged, not buffered again;
2. append the new events to the buffer (durable when it returns), then answer;
3. mark them ``accepted`` (insert-if-absent), coalesced over ``mark_delay``
   seconds for every group of the source, so marking costs one more transaction
   per interval instead of one per group.

A crash or an error before step 2 completes stores nothing the vendor was told
about (it gets a 503 and retries). Marks are not needed for durability, only to
recognise duplicates: a crash before step 3 leaves events buffered but unmarked,
so a redelivery is buffered a second time and the writer's commit log drops the
extra copy when it lands. Marking *before* buffering would be the dangerous order:
a crash in between would leave ids marked that were never buffered, and the
vendor's retry would be dropped as a duplicate. That would lose events.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lip_dagster.errors import LipError
from lip_dagster.state.base import Buffer, DedupeKey, DedupeStore
from lip_dagster.webhook.errors import WebhookRejected
from lip_dagster.webhook.message import MAX_MESSAGE_BYTES, encode

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
    messages: list[bytes]
    future: asyncio.Future[Outcome] = field(repr=False)


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
        max_unmarked: int = 1_000_000,
        workers: int = 4,
    ) -> None:
        self.buffer = buffer
        self.dedupe = dedupe
        self.max_group = max_group
        self.max_waiting = max_waiting
        self.max_message_bytes = max_message_bytes
        self.mark_delay = mark_delay
        self.max_unmarked = max_unmarked
        self._waiting: dict[str, list[_Submission]] = {}
        self._unmarked: dict[str, set[DedupeKey]] = {}
        self._pumps: dict[str, asyncio.Task[None]] = {}
        self._markers: dict[str, asyncio.Task[None]] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lip-intake")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

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
        waiting = self._waiting.setdefault(source, [])
        if len(waiting) >= self.max_waiting:
            raise WebhookRejected(503, "the receiver is overloaded; try again later")
        # Encoded here, on the assumption that nothing is a duplicate (the common
        # case), so the group commit is mostly I/O and does not wait for the GIL
        # while the event loop parses the next requests; a submission that turns out
        # to hold duplicates is encoded again, without them, in the commit.
        messages = encode(source, arrival, events, self.max_message_bytes)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Outcome] = loop.create_future()
        waiting.append(_Submission(events, keys, arrival, messages, fut))
        if source not in self._pumps:
            self._pumps[source] = loop.create_task(self._pump(source))
        # If the sender hangs up, the commit still runs: the events stay buffered.
        return await fut

    async def flush_marks(self) -> None:
        """Wait until every buffered id has been marked (or its marking failed)."""
        while self._markers:
            await asyncio.gather(*self._markers.values(), return_exceptions=True)

    # ------------------------------------------------------------------ buffering

    async def _pump(self, source: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            while waiting := self._waiting.get(source):
                group = waiting[: self.max_group]
                del waiting[: self.max_group]
                try:
                    results, fresh = await loop.run_in_executor(
                        self._pool, self.commit, source, group
                    )
                except LipError as err:
                    log.warning(
                        "webhook %s: buffering failed, %d request(s) refused: %s",
                        source,
                        len(group),
                        err,
                    )
                    failure = WebhookRejected(503, "the buffer is unavailable; try again later")
                    for sub in group:
                        if not sub.future.done():
                            sub.future.set_exception(failure)
                    continue
                except BaseException as err:
                    for sub in group:
                        if not sub.future.done():
                            sub.future.set_exception(err)
                    raise
                if fresh:
                    self._note_buffered(source, fresh)
                for sub, result in zip(group, results, strict=True):
                    if sub.future.done():
                        continue
                    if isinstance(result, Outcome):
                        sub.future.set_result(result)
                    else:
                        sub.future.set_exception(result)
        finally:
            self._pumps.pop(source, None)

    def commit(
        self, source: str, group: list[_Submission]
    ) -> tuple[list[Outcome | WebhookRejected], list[DedupeKey]]:
        """Steps 1-2 of the module docstring for one group; runs in a worker thread.
        Returns each submission's outcome and the keys now buffered. Raises
        ``LipError`` if nothing could be buffered."""
        keys = [k for sub in group for k in sub.keys]
        known = set(self.dedupe.get(source, keys))
        unmarked = self._unmarked.get(source)
        if unmarked:
            known.update(k for k in keys if k in unmarked)
        results: list[Outcome | WebhookRejected] = []
        bodies: list[bytes] = []
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
            if len(events) == len(sub.events):
                messages = sub.messages
            else:
                try:
                    messages = encode(source, sub.arrival, events, self.max_message_bytes)
                except WebhookRejected as rejected:
                    known.difference_update(new)
                    results.append(rejected)
                    continue
            bodies += messages
            fresh_keys += new
            results.append(Outcome(len(events), len(sub.events) - len(events)))
        if bodies:
            self.buffer.send(source, bodies)
        return results, fresh_keys

    # ------------------------------------------------------------------- marking

    def _note_buffered(self, source: str, keys: list[DedupeKey]) -> None:
        unmarked = self._unmarked.setdefault(source, set())
        if len(unmarked) + len(keys) > self.max_unmarked:
            # marking has fallen far behind (the store is failing): forget the oldest
            # notes rather than grow without bound; at worst a redelivery is buffered
            # twice and dropped when it lands
            log.warning("webhook %s: %d unmarked ids dropped", source, len(unmarked))
            unmarked.clear()
        unmarked.update(keys)
        if source not in self._markers:
            self._markers[source] = asyncio.get_running_loop().create_task(self._mark(source))

    async def _mark(self, source: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._unmarked.get(source):
                await asyncio.sleep(self.mark_delay)
                batch = list(self._unmarked[source])
                try:
                    await loop.run_in_executor(self._pool, self.dedupe.accept, source, batch)
                except LipError as err:
                    log.warning(
                        "webhook %s: %d ids buffered but not marked accepted: %s",
                        source,
                        len(batch),
                        err,
                    )
                self._unmarked[source].difference_update(batch)
        finally:
            self._markers.pop(source, None)
