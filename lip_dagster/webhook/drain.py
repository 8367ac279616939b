"""The drain run: buffer -> lake, in batches, exactly once.

For each batch (DESIGN §4, order of effects):

1. receive up to ``batch_messages`` messages, hidden from other readers for
   ``visibility_timeout_seconds``;
2. a message that cannot be decoded is poison: it goes to quarantine with its
   reason, then leaves the buffer (no retry could ever land it);
3. hand the events to ``LakeWriter.write(..., pattern="webhook", arrival=...)``,
   one call per arrival hour, so an event without a timestamp is filed under the
   hour the receiver accepted it (the writer claims the receiver's ``accepted``
   ids as pending, puts the object, marks them landed);
4. only then delete the batch from the buffer.

A crash or an error anywhere leaves the batch in the buffer; it becomes visible
again when its visibility timeout ends and the next drain lands it, the writer
dropping whatever an earlier attempt already landed. A batch whose landing keeps
failing is received ``max_receives`` times and then moved to the dead-letter queue
by the buffer itself; ``replay`` moves dead letters back once the cause is fixed.

The visibility timeout must exceed the time one batch takes, or a slow batch
becomes visible to the next drain while this one still lands it (no loss, but
wasted work): a batch that takes more than half of it is logged.

Backpressure (DESIGN §3) is the polling pattern's: before draining, the count of
this source's queued runs decides skip, a quarter of the time budget, or normal;
a probe that fails means normal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from lip_dagster.errors import LipError, StateError, attach_report, attached_report
from lip_dagster.lake.backends import Quarantine
from lip_dagster.lake.envelope import EventIdentity
from lip_dagster.lake.layout import hour_of
from lip_dagster.lake.writer import LakeWriter, WriteResult
from lip_dagster.polling.base import Backpressure, BackpressurePolicy
from lip_dagster.state.base import Buffer, BufferMessage
from lip_dagster.webhook.errors import PoisonMessage
from lip_dagster.webhook.message import decode
from lip_dagster.webhook.spec import WebhookSourceSpec
from lip_dagster.webhook.vendors import build_extractor

__all__ = ["DrainConfig", "DrainReport", "Drainer", "replay"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrainConfig:
    source: str
    identity: EventIdentity
    batch_messages: int = 100
    visibility_timeout_seconds: float = 300.0
    time_budget_seconds: float = 240.0

    @classmethod
    def from_spec(cls, spec: WebhookSourceSpec) -> DrainConfig:
        return cls(
            source=spec.name,
            identity=build_extractor(spec).identity,
            batch_messages=spec.batch_messages,
            visibility_timeout_seconds=spec.visibility_timeout_seconds,
            time_budget_seconds=spec.time_budget_seconds,
        )


@dataclass
class DrainReport:
    """What one drain did; the asset turns it into materializations and metadata."""

    source: str
    backpressure: str = Backpressure.NORMAL.value
    result: WriteResult = field(default_factory=WriteResult)
    messages: int = 0
    batches: int = 0
    quarantined: int = 0
    seconds: float = 0.0
    stopped: str = ""
    error: LipError | None = None


class Drainer:
    """Lands one source's buffer (see module docstring)."""

    def __init__(
        self,
        config: DrainConfig,
        *,
        buffer: Buffer,
        writer: LakeWriter,
        quarantine: Quarantine,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.buffer = buffer
        self.writer = writer
        self.quarantine = quarantine
        self.clock = clock

    def run(
        self,
        *,
        depth_probe: Callable[[], int] | None = None,
        backpressure: BackpressurePolicy | None = None,
    ) -> DrainReport:
        """Drain until the buffer is empty or the time budget is spent. A landing
        error ends the drain with ``report.error`` set and the batch left in the
        buffer; the caller decides to fail the run."""
        cfg = self.config
        started = self.clock()
        policy = backpressure or BackpressurePolicy()
        decision = policy.decide(depth_probe)
        report = DrainReport(cfg.source, decision.value)
        if decision is Backpressure.SKIP:
            log.warning("%s: drain runs are queued up; skipping this drain", cfg.source)
            report.stopped = "backpressure"
            return report
        budget = cfg.time_budget_seconds
        if decision is Backpressure.REDUCED:
            budget *= policy.reduced_share
        deadline = started + budget
        report.stopped = "budget"
        try:
            while self.clock() < deadline:
                try:
                    batch = self.buffer.receive(
                        cfg.source, cfg.batch_messages, cfg.visibility_timeout_seconds
                    )
                    if not batch:
                        report.stopped = "empty"
                        break
                    self._land(batch, report)
                except LipError as err:
                    log.error("%s: drain stopped, the batch stays buffered: %s", cfg.source, err)
                    report.error = err
                    report.stopped = "error"
                    break
        except BaseException as stop:
            # The run is being stopped (Dagster interrupts a terminated run with a
            # BaseException) or failed outside LIP: batches landed before it are
            # deleted from the buffer, so no later drain reports their hours. The
            # report travels with the error for the caller to record them.
            report.seconds = self.clock() - started
            report.stopped = "interrupted"
            attach_report(stop, report)
            raise
        report.seconds = self.clock() - started
        return report

    def _land(self, batch: list[BufferMessage], report: DrainReport) -> None:
        cfg = self.config
        t0 = self.clock()
        by_hour: dict[str, tuple[datetime, list[dict]]] = {}
        poison: set[str] = set()
        for message in batch:
            try:
                delivery = decode(message.body, cfg.source)
            except PoisonMessage as err:
                where = self.quarantine.put(
                    cfg.source, f"buffer-{message.message_id}", message.body, str(err)
                )
                log.warning(
                    "%s: message %s quarantined at %s: %s",
                    cfg.source,
                    message.message_id,
                    where,
                    err,
                )
                poison.add(message.receipt)
                continue
            hour = hour_of(delivery.arrival)
            arrival, events = by_hour.setdefault(hour, (delivery.arrival, []))
            events.extend(delivery.events)
        if poison:
            self.buffer.delete(cfg.source, sorted(poison))
            report.quarantined += len(poison)
        for _, (arrival, events) in sorted(by_hour.items()):
            if events:
                report.result.merge(
                    self.writer.write(cfg.source, events, cfg.identity, "webhook", arrival=arrival)
                )
        self.buffer.delete(cfg.source, [m.receipt for m in batch if m.receipt not in poison])
        report.messages += len(batch) - len(poison)
        report.batches += 1
        took = self.clock() - t0
        if took > cfg.visibility_timeout_seconds / 2:
            log.warning(
                "%s: a batch of %d messages took %.0fs, over half the visibility timeout "
                "(%ss): raise visibility_timeout_seconds or lower batch_messages",
                cfg.source,
                len(batch),
                took,
                cfg.visibility_timeout_seconds,
            )


def interrupted_report(exc: BaseException) -> DrainReport | None:
    """What a drain stopped by ``exc`` (not a ``LipError``, which ends a drain with
    ``report.error``) had landed, or None if ``exc`` did not come from a drain."""
    return attached_report(exc, DrainReport)


def replay(buffer: Buffer, source: str) -> int:
    """Move every dead-lettered message of ``source`` back to its buffer (after the
    cause of the failures is fixed); returns how many. Landing them again is safe:
    the writer drops any event an earlier attempt did land.

    Raises ``StateError`` when dead letters remain afterwards: on SQS a replay cannot
    see those a replay killed part way, or a look at them, still hides (up to a
    minute), and a drain still failing adds new ones. Reporting success then would
    tell on-call the deliveries are on their way to the lake while they sit in the
    dead-letter queue, counting towards its retention."""
    moved = buffer.redrive(source)
    log.info("%s: %d dead-lettered messages moved back to the buffer", source, moved)
    left = buffer.depth(source).dead_letters
    if left:
        raise StateError(
            f"{source}: {moved} dead-lettered messages moved back to the buffer, {left} "
            "still in the dead-letter queue (hidden for up to a minute by a replay that "
            "was stopped or a look at them, or dead-lettered since by a drain still "
            "failing): run the replay again in a minute"
        )
    return moved
