"""One source's health, read only from state (Dagster's event log and run storage,
and LIP's stores), never from a vendor. The alert sensor and ``lip status`` share it.

Freshness here is measured on *data*: the time since the source last landed events
newer than any it had landed before. Dagster's own freshness policy (evaluated by its
daemon, shown in the UI) counts any materialization, and a collector whose landing
step is broken can still materialize an empty partition; the alert must not be fooled
by that, nor by a backfill that lands last week's events into a source whose live
collection is dead.

Nothing here may depend on a fixed window of recent records: a dead source keeps
materializing empty partitions (one per poll) and a check keeps passing on new hours,
so anything only found in the last N records eventually scrolls out and an incident
would resolve while the fault remains. What must not be forgotten is either found
without a record cap (``lip status``) or remembered between ticks (``SourceMemory``,
kept in the alert sensor's cursor), which keeps each tick's reads small.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

# Neither is re-exported by dagster (1.13): the execution status of an asset check
# row, and the partition filter of the check-history query.
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

from lip_dagster.components.common import SOURCE_TAG
from lip_dagster.errors import LipError
from lip_dagster.resources import Backend
from lip_dagster.sam.checks import CONTENT_CHECKS

log = logging.getLogger(__name__)

SCAN_PAGE = 500  # materializations per storage read
SCAN_BUDGET = 5_000  # materializations the sensor reads per source per tick (~1 s on SQLite)
FAILURE_WINDOW = 50  # newest failed executions of a content check read for new failures
MAX_FAILING_PARTITIONS = 200  # failing hours remembered per content check

# Checks about one partition's objects: a failure stays until that partition passes.
# Every other check is about the source as a whole, so its newest result stands.
CONTENT_CHECK_NAMES = frozenset(c.name for c in CONTENT_CHECKS)

_FAILED = AssetCheckExecutionRecordStatus.FAILED
# PLANNED is not a result: the run is still going, or failed before the check ran
_FINISHED_CHECK = frozenset({AssetCheckExecutionRecordStatus.SUCCEEDED, _FAILED})


@dataclass(frozen=True)
class SourceSpec:
    """What the definitions say about a source."""

    name: str
    pattern: str
    asset_key: dg.AssetKey
    check_keys: tuple[dg.AssetCheckKey, ...]
    fail_window: timedelta | None
    warn_window: timedelta | None


@dataclass
class SourceHealth:
    source: str
    pattern: str
    freshness: str = "unknown"  # pass | warn | fail | unknown (never landed)
    last_landed_at: float | None = None  # when the newest data landed
    newest_event: str | None = None
    fail_window_s: float | None = None
    warn_window_s: float | None = None
    last_run_status: str | None = None
    last_run_id: str | None = None
    last_run_at: float | None = None
    failing_checks: list[str] = field(default_factory=list)
    # content checks only: the hours whose latest finished execution failed
    failing_partitions: dict[str, list[str | None]] = field(default_factory=dict)
    buffer_depth: int | None = None
    dlq_depth: int | None = None
    problems_reading: list[str] = field(default_factory=list)

    def lag_seconds(self, now: float) -> float | None:
        return None if self.last_landed_at is None else now - self.last_landed_at

    def as_dict(self, now: float) -> dict[str, Any]:
        d = asdict(self)
        d["lag_seconds"] = self.lag_seconds(now)
        return d


@dataclass
class SourceMemory:
    """What the alert sensor carries from one tick to the next for a source, so a tick
    reads only what is new and nothing it has seen can scroll out of a query window.

    ``lip status`` starts from an empty memory and reads without a record cap.
    """

    after: int | None = None  # storage id of the newest materialization read (None: not yet)
    scan: str | None = None  # cursor of a first read (newest to oldest) not finished yet
    scan_top: int | None = None  # newest storage id when that first read started
    fresh_at: float | None = None  # when the newest data landed
    newest_ts: float | None = None  # newest event time landed (never later than its landing)
    newest_event: str | None = None  # that event time as the materialization reported it
    # content check -> {"failing": [partition...], "seen": [failed execution ids]}
    checks: dict[str, dict[str, list[Any]]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> SourceMemory:
        """A cursor written by an older version, or damaged, starts over (a first
        read), never fails the tick."""
        if not raw:
            return cls()
        try:
            return cls(**raw)
        except TypeError:
            log.warning("alert sensor: unreadable source memory in the cursor; reading anew")
            return cls()


def _window(value: Any) -> timedelta | None:
    """Dagster stores policy windows as its own serializable timedelta."""
    if value is None or isinstance(value, timedelta):
        return value
    return value.to_timedelta()


def declared_sources(repo: Any) -> list[SourceSpec]:
    """Every asset tagged with a LIP pattern, from a repository or its asset graph."""
    graph = repo.asset_graph
    specs = []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        pattern = node.tags.get("lip/pattern")
        if not pattern:
            continue
        policy = node.freshness_policy
        specs.append(
            SourceSpec(
                name=key.path[-1],
                pattern=pattern,
                asset_key=key,
                check_keys=tuple(sorted(node.check_keys, key=lambda c: c.name)),
                fail_window=_window(getattr(policy, "fail_window", None)),
                warn_window=_window(getattr(policy, "warn_window", None)),
            )
        )
    return specs


def _time(text: str) -> float | None:
    """An ISO 8601 time as written in materialization metadata (UTC if no zone)."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def _landed(record: dg.EventLogRecord) -> tuple[float, str] | None:
    """For a materialization that landed events: the newest event time it landed and
    that time as reported. The time is never later than the landing itself, so one
    event dated in the future cannot make every later landing look old; a landing
    without event times counts at its landing time. None if it landed nothing."""
    mat = record.asset_materialization
    if mat is None:
        return None
    events = mat.metadata.get("events")
    try:
        landed = int(events.value) if events is not None else 0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        landed = 0
    if landed <= 0:
        return None
    newest = mat.metadata.get("newest_event")
    text = str(newest.value) if newest is not None else ""
    at = _time(text)
    return (record.timestamp if at is None else min(at, record.timestamp)), text


def _read_forward(
    instance: dg.DagsterInstance, key: dg.AssetKey, mem: SourceMemory, budget: int | None
) -> bool:
    """Materializations after ``mem.after``, oldest first: the newest data's landing
    time moves only when a landing brings an event newer than all before it (a
    backfill of past hours does not). False if the budget ran out first."""
    read = 0
    while True:
        res = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=mem.after),
            limit=SCAN_PAGE,
            ascending=True,
        )
        for record in res.records:
            mem.after = record.storage_id
            landed = _landed(record)
            if landed is not None and (mem.newest_ts is None or landed[0] > mem.newest_ts):
                mem.newest_ts, mem.newest_event = landed
                mem.fresh_at = record.timestamp
        read += len(res.records)
        if not res.has_more:
            return True
        if budget is not None and read >= budget:
            return False


def _read_backward(
    instance: dg.DagsterInstance, key: dg.AssetKey, mem: SourceMemory, budget: int | None
) -> bool:
    """The first read, newest first, until the answer cannot change: an older
    materialization cannot hold an event newer than its own landing, so the read stops
    at the first one that landed before the newest event time found. A healthy source
    costs a few records; a source dead for a month, its month of empty polls, once.
    Resumable across ticks (``mem.scan``); False if the budget ran out first."""
    read = 0
    cursor, top = mem.scan, mem.scan_top
    while True:
        res = instance.fetch_materializations(key, limit=SCAN_PAGE, cursor=cursor, ascending=False)
        done = not res.has_more
        for record in res.records:
            if top is None:
                top = record.storage_id
            if mem.newest_ts is not None and record.timestamp < mem.newest_ts:
                done = True
                break
            landed = _landed(record)
            if landed is not None and (mem.newest_ts is None or landed[0] >= mem.newest_ts):
                if mem.newest_ts is None or landed[0] > mem.newest_ts:
                    mem.newest_ts, mem.newest_event = landed
                mem.fresh_at = record.timestamp  # the first landing that brought it
        read += len(res.records)
        cursor = res.cursor
        if done:
            mem.after, mem.scan, mem.scan_top = (top if top is not None else 0), None, None
            return True
        if budget is not None and read >= budget:
            mem.scan, mem.scan_top = cursor, top
            return False


def _read_landings(
    instance: dg.DagsterInstance, key: dg.AssetKey, mem: SourceMemory, budget: int | None
) -> bool:
    """Bring ``mem`` up to date; False if the budget ran out (the next tick goes on)."""
    if mem.after is None and not _read_backward(instance, key, mem, budget):
        return False
    return _read_forward(instance, key, mem, budget)


_FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)


def _finished_at(rec: dg.RunRecord) -> float:
    return rec.end_time or rec.update_timestamp.timestamp()


def _last_finished_run(instance: dg.DagsterInstance, spec: SourceSpec) -> dg.RunRecord | None:
    """The newest finished run of the source: its own jobs carry the source tag, but a
    backfill or a "Materialize" launched from the asset graph runs an implicit job
    without it, so the asset's last run is looked at too."""
    found = list(
        instance.get_run_records(
            dg.RunsFilter(tags={SOURCE_TAG: spec.name}, statuses=list(_FINISHED)), limit=1
        )
    )
    records = instance.get_asset_records([spec.asset_key])
    last = records[0].asset_entry.last_run_id if records else None
    if last and all(r.dagster_run.run_id != last for r in found):
        rec = instance.get_run_record_by_id(last)
        if rec is not None and rec.dagster_run.status in _FINISHED:
            found.append(rec)
    return max(found, key=_finished_at, default=None)


def _last_result(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, partition: str | None
) -> AssetCheckExecutionRecord | None:
    """The newest *finished* execution of a check on one partition."""
    found = instance.event_log_storage.get_asset_check_execution_history(
        key, limit=1, status=_FINISHED_CHECK, partition_filter=PartitionKeyFilter(key=partition)
    )
    return found[0] if found else None


def _source_wide_failures(instance: dg.DagsterInstance, keys: list[dg.AssetCheckKey]) -> list[str]:
    """Checks about the source as a whole (its AWS resources, dead letters, coverage):
    the newest finished execution on any hour is the answer. A PLANNED record (a run
    still going, or one that failed before its checks ran) says nothing, so the result
    before it stands."""
    if not keys:
        return []
    storage = instance.event_log_storage
    latest = storage.get_latest_asset_check_execution_by_key(keys)
    failing = []
    for key in keys:
        record = latest.get(key)
        if record is not None and record.status not in _FINISHED_CHECK:
            found = storage.get_asset_check_execution_history(key, limit=1, status=_FINISHED_CHECK)
            record = found[0] if found else None
        if record is not None and record.status == _FAILED:
            failing.append(key.name)
    return failing


def _failed_executions(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, everything: bool
) -> list[AssetCheckExecutionRecord]:
    """Failed executions of a check, newest first: the newest ``FAILURE_WINDOW``, or
    all of them (a first read; failures are few next to executions)."""
    storage = instance.event_log_storage
    found = list(
        storage.get_asset_check_execution_history(key, limit=FAILURE_WINDOW, status={_FAILED})
    )
    while everything and len(found) % FAILURE_WINDOW == 0 and found:
        page = storage.get_asset_check_execution_history(
            key, limit=FAILURE_WINDOW, cursor=found[-1].id, status={_FAILED}
        )
        if not page:
            break
        found += page
    return found


def _failing_partitions(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, memory: dict[str, list[Any]]
) -> list[str | None]:
    """Hours whose newest finished execution of a content check failed. A pass on
    another hour says nothing about a broken object in this one, so an hour stays
    failing until it passes itself (its objects fixed and the hour run again).

    Candidates are the hours remembered as failing plus those of failures not seen
    before (by execution id, so a run planned early that failed late is still new);
    each is confirmed by its own newest finished result. With a memory only the newest
    ``FAILURE_WINDOW`` failures can be new; without one (``lip status``, a first tick)
    every failure ever recorded is a candidate, each hour confirmed once.
    """
    seen = set(memory.get("seen", []))
    candidates: dict[str | None, None] = dict.fromkeys(memory.get("failing", []))
    failures = _failed_executions(instance, key, everything="seen" not in memory)
    for record in failures:
        if record.id not in seen:
            candidates[record.partition] = None
    failing = []
    for partition in candidates:
        last = _last_result(instance, key, partition)
        if last is not None and last.status == _FAILED:
            failing.append(partition)
    failing.sort(key=lambda p: p or "")
    if len(failing) > MAX_FAILING_PARTITIONS:
        log.warning(
            "%s: %s fails on %d hours; remembering the newest %d",
            key.asset_key.to_user_string(),
            key.name,
            len(failing),
            MAX_FAILING_PARTITIONS,
        )
        failing = failing[-MAX_FAILING_PARTITIONS:]
    memory["failing"] = failing
    memory["seen"] = sorted(r.id for r in failures[:FAILURE_WINDOW])
    return failing


def source_health(
    instance: dg.DagsterInstance,
    spec: SourceSpec,
    lip: Backend | None,
    now: float | None = None,
    memory: SourceMemory | None = None,
    scan_budget: int | None = None,
) -> SourceHealth:
    """Each part is read on its own: one unreadable part is reported, the rest still
    answer (fail open on monitoring).

    ``memory`` (the alert sensor's, updated in place) holds what earlier reads found;
    without it everything is read from storage. ``scan_budget`` bounds the
    materializations read in one call; when it runs out the verdict uses what was read
    so far, which can only make the source look fresher, and the next call goes on.
    """
    now = time.time() if now is None else now
    mem = SourceMemory() if memory is None else memory
    h = SourceHealth(spec.name, spec.pattern)
    h.fail_window_s = spec.fail_window.total_seconds() if spec.fail_window else None
    h.warn_window_s = spec.warn_window.total_seconds() if spec.warn_window else None
    if not _read_landings(instance, spec.asset_key, mem, scan_budget):
        h.problems_reading.append(
            f"freshness: still reading the source's materialization history ({scan_budget} "
            "records a tick); until that is done it may look fresher than it is"
        )
    if mem.fresh_at is not None:
        h.last_landed_at, h.newest_event = mem.fresh_at, mem.newest_event
        age = now - mem.fresh_at
        if h.fail_window_s is not None and age > h.fail_window_s:
            h.freshness = "fail"
        elif h.warn_window_s is not None and age > h.warn_window_s:
            h.freshness = "warn"
        else:
            h.freshness = "pass"
    rec = _last_finished_run(instance, spec)
    if rec is not None:
        h.last_run_status = rec.dagster_run.status.value
        h.last_run_id = rec.dagster_run.run_id
        h.last_run_at = _finished_at(rec)
    content = {k.name for k in spec.check_keys if k.name in CONTENT_CHECK_NAMES}
    failing = set(
        _source_wide_failures(instance, [k for k in spec.check_keys if k.name not in content])
    )
    for name in set(mem.checks) - content:  # a check no longer declared
        del mem.checks[name]
    for key in spec.check_keys:
        if key.name in content:
            partitions = _failing_partitions(instance, key, mem.checks.setdefault(key.name, {}))
            if partitions:
                h.failing_checks.append(key.name)
                h.failing_partitions[key.name] = partitions
        elif key.name in failing:
            h.failing_checks.append(key.name)
    if lip is not None and spec.pattern == "webhook":
        try:
            depth = lip.buffer.depth(spec.name)
            h.buffer_depth, h.dlq_depth = depth.messages, depth.dead_letters
        except LipError as exc:
            h.problems_reading.append(f"buffer: {exc}")
    return h
