"""One source's health, read only from state (Dagster's event log and run storage,
and LIP's stores), never from a vendor. The alert sensor and ``lip status`` share it.

Freshness here is measured on *data*: the time since the source last landed events
newer than any it had landed before. Dagster's own freshness policy (evaluated by its
daemon, shown in the UI) counts any materialization, and a collector whose landing
step is broken can still materialize an empty partition; the alert must not be fooled
by that, nor by a backfill that lands last week's events into a source whose live
collection is dead. A source that has never landed anything (a wrong secret, bucket
prefix or tenant from the start) is stale in the same way once it has been running for
longer than its fail window: counted from its first run, or from the start of a
schedule or sensor of it that runs now, whichever is earlier. One never run, with
nothing switched on to run it, is ``unknown`` and pages nobody.

Nothing here may depend on a fixed window of recent records: a dead source keeps
materializing empty partitions (one per poll) and a check keeps passing on new hours,
so anything only found in the last N records eventually scrolls out and an incident
would resolve while the fault remains. What must not be forgotten is either found
without a record cap (``lip status``) or remembered between ticks (``SourceMemory``,
kept in the alert sensor's cursor), which keeps each tick's reads small.
"""

from __future__ import annotations

import binascii
import logging
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

# Not re-exported by dagster (1.13): the execution status of an asset check row, and
# the SQL table and helpers for reading a check's executions oldest first (its public
# history query only goes newest first).
import sqlalchemy as db
from dagster._core.event_api import EventLogCursor
from dagster._core.scheduler.instigation import (
    InstigatorStatus,
    ScheduleInstigatorData,
    SensorInstigatorData,
)
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._core.storage.sqlalchemy_compat import db_fetch_mappings, db_select

from lip_dagster.components.common import (
    BACKFILL_TAG,
    LAKE_OBJECTS_KEY,
    MODE_POLL,
    MODE_TAG,
    REFUSED_TAG,
    SOURCE_TAG,
    is_live,
)
from lip_dagster.errors import LipError
from lip_dagster.resources import Backend
from lip_dagster.sam.checks import CONTENT_CHECKS

log = logging.getLogger(__name__)

SCAN_PAGE = 500  # materializations per storage read
SCAN_BUDGET = 5_000  # materializations the sensor reads per source per tick (~1 s on SQLite)
CHECK_PAGE = 500  # check executions per storage read
CHECK_BUDGET = 5_000  # executions of one content check the sensor reads per tick
MAX_FAILING_PARTITIONS = 200  # failing hours listed per content check (the rest counted)
BACKFILL_PAGE = 50  # a source's newest backfill runs read for the hours a failed one names

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
    # the schedules and sensors that start its runs: (name, "schedule" | "sensor",
    # running by default in code)
    instigators: tuple[tuple[str, str, bool], ...] = ()


@dataclass
class SourceHealth:
    source: str
    pattern: str
    # pass | warn | fail | unknown (nothing landed, and not running for a fail window)
    freshness: str = "unknown"
    last_landed_at: float | None = None  # when the newest data landed
    # never landed: when the source was first seen running, and what showed it
    # ("its first run", "its sensor <name> started"); None if it never ran
    started_at: float | None = None
    started_by: str | None = None
    newest_event: str | None = None
    fail_window_s: float | None = None
    warn_window_s: float | None = None
    # the newest finished run of its live collection (schedule, arrival sensor, `lip run`)
    last_run_status: str | None = None
    last_run_id: str | None = None
    last_run_at: float | None = None
    # the last run failed only because blocking checks failed: those checks page
    last_run_failed_by_checks: bool = False
    # a failed last run: what failed it, on one line (``error_text``), if recorded
    last_run_error: str | None = None
    # the same for the newest finished run that was not live collection: a backfill or
    # Materialize from the UI, `lip run --partition`, a Launchpad run with object keys
    last_backfill_status: str | None = None
    last_backfill_id: str | None = None
    last_backfill_at: float | None = None
    last_backfill_failed_by_checks: bool = False
    last_backfill_error: str | None = None
    # the hours of the backfill runs that failed since the last one that succeeded,
    # and whether more failed than were read (``BACKFILL_PAGE``)
    backfill_failed_partitions: list[str] = field(default_factory=list)
    backfill_failed_more: bool = False
    failing_checks: list[str] = field(default_factory=list)
    # of failing_checks, those whose failure Dagster records at WARN severity
    # (coverage): they page at warn, as they show in the UI
    warning_checks: list[str] = field(default_factory=list)
    # content checks only: the hours whose latest finished execution failed
    failing_partitions: dict[str, list[str | None]] = field(default_factory=dict)
    # content checks only: failing hours beyond those listed (kept small in the cursor)
    unlisted_partitions: dict[str, int] = field(default_factory=dict)
    buffer_depth: int | None = None
    dlq_depth: int | None = None
    buffer_retention_s: float | None = None  # the buffer drops messages this old
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
    # content check -> {"after": newest execution id read, "failing": [partition...],
    # "unlisted": failing hours not in the list}
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any, source: str) -> SourceMemory:
        """A cursor written by an older version, or damaged, starts over (a first
        read from storage), never fails the tick: every field is checked for its type
        here, so nothing malformed reaches a storage query."""
        if not raw:
            return cls()
        try:
            return cls._parse(raw)
        except MemoryUnreadable as exc:
            log.warning(
                "alert sensor: %s: unreadable source memory in the cursor (%s); reading "
                "anew from storage",
                source,
                exc,
            )
            return cls()

    @classmethod
    def _parse(cls, raw: Any) -> SourceMemory:
        if not isinstance(raw, dict):
            raise MemoryUnreadable(f"a {type(raw).__name__}, not an object")
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise MemoryUnreadable(f"unknown fields {sorted(unknown)}")
        mem = cls(
            after=_opt(raw.get("after"), int, "after"),
            scan=_opt(raw.get("scan"), str, "scan"),
            scan_top=_opt(raw.get("scan_top"), int, "scan_top"),
            fresh_at=_opt(raw.get("fresh_at"), float, "fresh_at"),
            newest_ts=_opt(raw.get("newest_ts"), float, "newest_ts"),
            newest_event=_opt(raw.get("newest_event"), str, "newest_event"),
        )
        if (mem.scan is None) != (mem.scan_top is None):
            raise MemoryUnreadable("scan and scan_top must be set together")
        if mem.scan is not None and mem.after is not None:
            raise MemoryUnreadable("a first read in progress with a read position")
        if mem.scan is not None:
            try:
                EventLogCursor.parse(mem.scan)
            except (ValueError, TypeError, KeyError, binascii.Error) as exc:
                raise MemoryUnreadable(f"scan is not a storage cursor ({exc})") from exc
        checks = raw.get("checks", {})
        if not isinstance(checks, dict):
            raise MemoryUnreadable("checks is not an object")
        for name, check in checks.items():
            mem.checks[name] = _check_memory(name, check)
        return mem


class MemoryUnreadable(LipError):
    """A source memory in the alert sensor's cursor that cannot be used as is."""


def _opt(value: Any, kind: type, name: str) -> Any:
    """``value`` if it is None or of ``kind`` (an int stands for a float), else raise."""
    if value is None:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise MemoryUnreadable(f"{name} is a {type(value).__name__}, not {kind.__name__}")
    return value


def _check_memory(name: str, raw: Any) -> dict[str, Any]:
    """One content check's memory; an older shape without a read position (``after``)
    is read again from storage."""
    if not isinstance(raw, dict):
        raise MemoryUnreadable(f"checks.{name} is not an object")
    after = _opt(raw.get("after"), int, f"checks.{name}.after")
    failing = raw.get("failing", [])
    if not isinstance(failing, list) or not all(p is None or isinstance(p, str) for p in failing):
        raise MemoryUnreadable(f"checks.{name}.failing is not a list of partition keys")
    unlisted = _opt(raw.get("unlisted", 0), int, f"checks.{name}.unlisted")
    if unlisted is None or unlisted < 0:
        raise MemoryUnreadable(f"checks.{name}.unlisted is not a count")
    if after is None:
        return {}
    return {"after": after, "failing": failing, "unlisted": unlisted}


def _window(value: Any) -> timedelta | None:
    """Dagster stores policy windows as its own serializable timedelta."""
    if value is None or isinstance(value, timedelta):
        return value
    return value.to_timedelta()


def _instigators(repo: Any) -> dict[str, list[tuple[str, str, bool]]]:
    """Per source, the schedules and sensors whose target job carries its source tag."""
    out: dict[str, list[tuple[str, str, bool]]] = {}
    found = [
        *((s, "schedule", [s.target]) for s in getattr(repo, "schedule_defs", ())),
        *((s, "sensor", s.targets) for s in getattr(repo, "sensor_defs", ())),
    ]
    for inst, kind, targets in found:
        running = inst.default_status.value == "RUNNING"
        for target in targets:
            source = (getattr(target.resolvable_to_job, "tags", None) or {}).get(SOURCE_TAG)
            if source:
                out.setdefault(source, []).append((inst.name, kind, running))
    return out


def declared_sources(repo: Any) -> list[SourceSpec]:
    """Every asset tagged with a LIP pattern, from a repository or its asset graph."""
    graph = repo.asset_graph
    instigators = _instigators(repo)
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
                instigators=tuple(instigators.get(key.path[-1], ())),
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


def _count(mat: dg.AssetMaterialization, name: str) -> int:
    """A count in materialization metadata; 0 if absent or not a number."""
    entry = mat.metadata.get(name)
    try:
        return int(entry.value) if entry is not None else 0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0


def _landed(record: dg.EventLogRecord) -> tuple[float, str] | None:
    """For a materialization that landed events: the newest event time it landed and
    that time as reported. The time is never later than the landing itself, so one
    event dated in the future cannot make every later landing look old; a landing
    without event times counts at its landing time. None if it landed nothing."""
    mat = record.asset_materialization
    if mat is None:
        return None
    if _count(mat, "events") <= 0 and _count(mat, LAKE_OBJECTS_KEY) <= 0:
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


def _newest_finished(
    instance: dg.DagsterInstance, tags: dict[str, str], limit: int
) -> list[dg.RunRecord]:
    return list(
        instance.get_run_records(dg.RunsFilter(tags=tags, statuses=list(_FINISHED)), limit=limit)
    )


def _last_runs(
    instance: dg.DagsterInstance, spec: SourceSpec
) -> tuple[dg.RunRecord | None, list[dg.RunRecord]]:
    """The newest finished run of the source's live collection, and its newest
    finished backfill runs (newest first, at most ``BACKFILL_PAGE``).

    Each is judged on its own: a backfill that keeps failing while the live polls
    succeed is one incident, not one that a poll resolves and the next failed hour
    opens again, and a poll's success says nothing about the hours a backfill could
    not fetch. Live runs carry ``lip/mode=poll`` from their launch. A backfill or
    "Materialize" from the asset graph runs an implicit job without the source's tags;
    its step tags the run ``lip/backfill`` as it starts. A run that failed before its
    step began (a launch that failed, a lost worker) carries neither, so the asset's
    last run is looked at too and told apart by its launch tags. Runs the source
    refuses by design (``lip/refused``) are neither."""
    live = _newest_finished(instance, {SOURCE_TAG: spec.name, MODE_TAG: MODE_POLL}, 1)
    backfills = _newest_finished(instance, {BACKFILL_TAG: spec.name}, BACKFILL_PAGE)
    records = instance.get_asset_records([spec.asset_key])
    last = records[0].asset_entry.last_run_id if records else None
    known = {r.dagster_run.run_id for r in live + backfills}
    if last and last not in known:
        rec = instance.get_run_record_by_id(last)
        if rec is not None and rec.dagster_run.status in _FINISHED:
            tags = rec.dagster_run.tags
            if is_live(tags):
                live.append(rec)
            elif REFUSED_TAG not in tags and (
                not backfills or _finished_at(rec) > _finished_at(backfills[0])
            ):
                backfills.insert(0, rec)
    return max(live, key=_finished_at, default=None), backfills


def _failed_hours(backfills: list[dg.RunRecord]) -> tuple[list[str], bool]:
    """The hours of the backfill runs (newest first) that failed since the newest one
    that succeeded, and whether all those read failed (more may have)."""
    hours: set[str] = set()
    for rec in backfills:
        if rec.dagster_run.status != dg.DagsterRunStatus.FAILURE:
            return sorted(hours), False
        hours.add(rec.dagster_run.tags.get("dagster/partition", "(unpartitioned)"))
    return sorted(hours), len(backfills) >= BACKFILL_PAGE


def maintenance_failure(instance: dg.DagsterInstance, job_name: str) -> tuple[str, str] | None:
    """(run id, what failed it) if the newest finished run of the state maintenance
    job failed, else None. Nothing else deletes expired ids from ``state.db``: a prune
    that keeps failing lets it grow until the disk is full."""
    found = instance.get_run_records(
        dg.RunsFilter(job_name=job_name, statuses=list(_FINISHED)), limit=1
    )
    if not found or found[0].dagster_run.status != dg.DagsterRunStatus.FAILURE:
        return None
    run_id = found[0].dagster_run.run_id
    _, said = _run_failure(instance, run_id)
    return run_id, said or "no error recorded"


def _first_run_at(instance: dg.DagsterInstance, spec: SourceSpec) -> float | None:
    """When the source's oldest run (any status) was created: its schedule's or
    sensor's, a drain on the heartbeat, ``lip run``. A run launched from the asset
    graph (a backfill) carries no source tag and does not count: it says the hours were
    asked for, not that the source was set up to collect."""
    found = instance.get_run_records(
        dg.RunsFilter(tags={SOURCE_TAG: spec.name}), limit=1, ascending=True
    )
    return found[0].create_timestamp.timestamp() if found else None


_ON = (InstigatorStatus.RUNNING, InstigatorStatus.DECLARED_IN_CODE)


def _started_instigators(instance: dg.DagsterInstance, spec: SourceSpec) -> list[tuple[float, str]]:
    """The source's schedules and sensors that are running now, each with the time
    Dagster recorded it was started (from the UI or the CLI; for one running by
    default, its first tick). A source whose sensor runs but finds nothing to do (an
    S3 source reading the wrong prefix) launches no run, and this is all that shows
    it is on. States are matched by name: the alert sensor and ``lip status`` see the
    definitions from different code locations."""
    wanted = {name: (kind, default_on) for name, kind, default_on in spec.instigators}
    if not wanted or instance.schedule_storage is None:  # nothing can run them
        return []
    out = []
    for state in instance.all_instigator_state():
        name = state.instigator_name
        if name not in wanted or state.status not in _ON:
            continue
        kind, default_on = wanted[name]
        if state.status == InstigatorStatus.DECLARED_IN_CODE and not default_on:
            continue  # left from when the code turned it on; it is off now
        data = state.instigator_data
        if kind == "sensor" and isinstance(data, SensorInstigatorData):
            at = data.last_sensor_start_timestamp
        elif kind == "schedule" and isinstance(data, ScheduleInstigatorData):
            at = data.start_timestamp
        else:
            at = None
        if at is not None:
            out.append((at, f"its {kind} {name} started"))
    return out


def _running_since(
    instance: dg.DagsterInstance, spec: SourceSpec, h: SourceHealth
) -> tuple[float, str] | None:
    """When a source that never landed anything was first seen running, and what
    showed it: its first run, or the start of a schedule or sensor of it that is
    running now, whichever is earlier. None: it never ran and nothing would run it."""
    seen: list[tuple[float, str]] = []
    first = _first_run_at(instance, spec)
    if first is not None:
        seen.append((first, "its first run"))
    try:
        seen += _started_instigators(instance, spec)
    except Exception as exc:  # noqa: BLE001 - monitoring fails open, the runs still answer
        h.problems_reading.append(f"schedules and sensors: {type(exc).__name__}: {exc}")
    return min(seen, default=None)


def _freshness(h: SourceHealth, age: float) -> str:
    """The freshness verdict for data (or, never landed, a source running) ``age``
    seconds old."""
    if h.fail_window_s is not None and age > h.fail_window_s:
        return "fail"
    if h.warn_window_s is not None and age > h.warn_window_s:
        return "warn"
    return "pass"


_CHECK_FAILED = "DagsterAssetCheckFailedError"


_LIP_PREFIX = "lip_dagster."  # how a LIP exception's class path starts in an error's text
RUN_ERROR_CHARS = 500  # of a failed run's error, in a page and in `lip status --json`


def error_text(error: Any) -> str:
    """What failed, from a step failure's error chain (Dagster's serializable error
    info): the outermost of LIP's own errors, by class name (the runbook's
    ``LakeWriteError``, not ``lip_dagster.errors.LakeWriteError``: the source,
    endpoint and HTTP status, or the lake object and that its events stay pending),
    not Dagster's wrapper around it nor the OS or HTTP client error LIP wrapped; the
    innermost error when LIP raised none, and a Dagster ``Failure`` by its
    description. LIP's errors never carry a secret (DESIGN §8)."""
    chain = []
    while error is not None:
        chain.append(error)
        error = error.cause
    if not chain:
        return ""
    lip = [e for e in chain if str(e.message).startswith(_LIP_PREFIX)]
    err = lip[0] if lip else chain[-1]
    message = str(err.message).strip()
    if err.cls_name == "Failure":
        return message.split(": ", 1)[-1]
    if message.startswith(_LIP_PREFIX):
        return f"{err.cls_name}: {message.split(': ', 1)[-1]}"
    return message


def _run_failure(instance: dg.DagsterInstance, run_id: str) -> tuple[bool, str | None]:
    """Whether every step of the run that failed did so because a blocking asset
    check failed, and what failed it (the first failed step's error, on one line).

    A run failed only by checks does not page as a run: that check's own incident
    says what is wrong and when it is fixed; a run incident on top would page twice
    for one bad object, and point on-call at the collection, which worked. A run that
    failed any other way (an endpoint, a launch, a crash) has a failure of another
    kind, or none recorded."""
    failures = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    errors: list[str | None] = []
    said: str | None = None
    for e in failures:
        data = e.dagster_event.step_failure_data if e.dagster_event else None
        errors.append(data.error.cls_name if data and data.error else None)
        if said is None and data and data.error and data.error.cls_name != _CHECK_FAILED:
            text = " ".join(error_text(data.error).split())
            said = text if len(text) <= RUN_ERROR_CHARS else text[: RUN_ERROR_CHARS - 3] + "..."
    return bool(errors) and all(cls == _CHECK_FAILED for cls in errors), said


def _source_wide_failures(
    instance: dg.DagsterInstance, keys: list[dg.AssetCheckKey]
) -> dict[str, bool]:
    """Checks about the source as a whole (its AWS resources, dead letters, coverage):
    the newest finished execution on any hour is the answer. A PLANNED record (a run
    still going, or one that failed before its checks ran) says nothing, so the result
    before it stands. Returns the failing checks, each with whether its failure is at
    WARN severity."""
    if not keys:
        return {}
    storage = instance.event_log_storage
    latest = storage.get_latest_asset_check_execution_by_key(keys)
    failing: dict[str, bool] = {}
    for key in keys:
        record = latest.get(key)
        if record is not None and record.status not in _FINISHED_CHECK:
            found = storage.get_asset_check_execution_history(key, limit=1, status=_FINISHED_CHECK)
            record = found[0] if found else None
        if record is not None and record.status == _FAILED:
            failing[key.name] = _at_warn(record)
    return failing


def _evaluation(record: AssetCheckExecutionRecord) -> Any:
    """The check evaluation a finished execution recorded, or None."""
    return record.event.dagster_event.event_specific_data if record.event else None


def _at_warn(record: AssetCheckExecutionRecord) -> bool:
    """Whether a failed execution was recorded at WARN severity (ERROR if unknown)."""
    return getattr(_evaluation(record), "severity", None) == dg.AssetCheckSeverity.WARN


def _executions_after(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, after: int, limit: int
) -> list[AssetCheckExecutionRecord]:
    """Executions of a check with a storage id above ``after``, oldest first, at most
    ``limit``. Dagster's history query only goes newest first, and a content check's
    verdict for an hour depends on the order of its results, so SQL storage (SQLite,
    Postgres) is asked directly; any other storage is read newest first down to
    ``after`` and reversed (not bounded, but correct)."""
    storage = instance.event_log_storage
    if isinstance(storage, SqlEventLogStorage):
        table = AssetCheckExecutionsTable
        query = (
            db_select(
                [
                    table.c.id,
                    table.c.run_id,
                    table.c.execution_status,
                    table.c.evaluation_event,
                    table.c.create_timestamp,
                    table.c.partition,
                ]
            )
            .where(
                db.and_(
                    table.c.asset_key == key.asset_key.to_string(),
                    table.c.check_name == key.name,
                    table.c.id > after,
                )
            )
            .order_by(table.c.id.asc())
            .limit(limit)
        )
        with storage.index_connection() as conn:
            rows = db_fetch_mappings(conn, query)
        return [AssetCheckExecutionRecord.from_db_row(row, key=key) for row in rows]
    found: list[AssetCheckExecutionRecord] = []
    cursor: int | None = None
    while True:
        page = storage.get_asset_check_execution_history(key, limit=CHECK_PAGE, cursor=cursor)
        found += [r for r in page if r.id > after]
        if len(page) < CHECK_PAGE or page[-1].id <= after:
            return found[::-1]
        cursor = page[-1].id


def _first_failure_id(instance: dg.DagsterInstance, key: dg.AssetCheckKey) -> int | None:
    """The storage id of the oldest failed execution of a check, or None if it never
    failed: no hour can be failing before it, so a read from scratch starts there
    instead of at the check's first execution."""
    storage = instance.event_log_storage
    oldest: int | None = None
    cursor: int | None = None
    while True:
        page = storage.get_asset_check_execution_history(
            key, limit=CHECK_PAGE, cursor=cursor, status={_FAILED}
        )
        if page:
            oldest = cursor = page[-1].id
        if len(page) < CHECK_PAGE:
            return oldest


def _listed(value: Any) -> list[str] | None:
    """A list of partition keys from check metadata (a MetadataValue or plain value),
    or None when the evaluation did not report one."""
    raw = getattr(value, "value", value)
    if isinstance(raw, list | tuple) and all(isinstance(p, str) for p in raw):
        return list(raw)
    return None


def _verdicts(record: AssetCheckExecutionRecord) -> dict[str | None, bool]:
    """What one finished content-check execution says about each hour (True: failing).

    The check reports once per run on the launched partition while covering every hour
    the run wrote, naming them in ``partitions_checked`` and the broken ones in
    ``failing_partitions``. Without that metadata the result is about its own hour."""
    failed = record.status == _FAILED
    metadata = getattr(_evaluation(record), "metadata", None) or {}
    checked = _listed(metadata.get("partitions_checked"))
    failing = _listed(metadata.get("failing_partitions")) if failed else None
    out: dict[str | None, bool] = {}
    if checked is not None:
        out.update(dict.fromkeys(checked, False))
    if failing is not None:
        out.update(dict.fromkeys(failing, True))
    elif failed:
        out[record.partition] = True
    elif checked is None:
        out[record.partition] = False
    return out


def _replay(
    records: list[AssetCheckExecutionRecord], failing: dict[str | None, None]
) -> tuple[int, int]:
    """Apply finished executions, oldest first, to the set of failing hours (in
    place); returns (hours newly failing, hours cleared that were failing)."""
    added = cleared = 0
    for record in records:
        if record.status not in _FINISHED_CHECK:
            continue  # PLANNED: a run still going, or one that failed before its checks
        for partition, is_failing in _verdicts(record).items():
            if is_failing and partition not in failing:
                failing[partition] = None
                added += 1
            elif not is_failing and partition in failing:
                del failing[partition]
                cleared += 1
    return added, cleared


def _read_all(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey
) -> tuple[dict[str | None, None], int]:
    """Every failing hour of a content check from storage (a first read, ``lip
    status``, or a memory that no longer lists every failing hour); returns them and
    the newest storage id read."""
    failing: dict[str | None, None] = {}
    first = _first_failure_id(instance, key)
    if first is None:
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])
        record = latest.get(key)
        return failing, (record.id if record is not None else 0)
    return failing, _replay_after(instance, key, failing, first - 1, None)


def _replay_after(
    instance: dg.DagsterInstance,
    key: dg.AssetCheckKey,
    failing: dict[str | None, None],
    after: int,
    budget: int | None,
) -> int:
    """Replay into ``failing`` the check's executions after storage id ``after``, in
    order, at most ``budget`` of them (None: all); returns the newest id read."""
    read = 0
    while budget is None or read < budget:
        limit = CHECK_PAGE if budget is None else min(CHECK_PAGE, budget - read)
        page = _executions_after(instance, key, after, limit)
        if not page:
            break
        _replay(page, failing)
        after, read = page[-1].id, read + len(page)
    return after


def _failing_partitions(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, memory: dict[str, Any]
) -> tuple[list[str | None], int]:
    """Hours a content check fails on, and how many more fail than are listed.

    A pass on another hour says nothing about a broken object in this one, so an hour
    stays failing until a later result covers it and finds it clean: a run's check
    names every hour it covered and the broken ones. ``memory`` (updated in place)
    holds the newest execution read (``after``) and the failing hours; each call reads
    only newer executions, in order, at most ``CHECK_BUDGET`` (the next call goes on).

    The memory lists at most ``MAX_FAILING_PARTITIONS`` hours and counts the rest
    (``unlisted``), so it stays small in the cursor. An unlisted hour that is cleared
    cannot be told from a listed one, so once every listed hour is cleared while some
    are still counted, everything is read again from storage: the incident stays open
    until that read finds no hour failing.
    """
    after = memory.get("after")
    failing: dict[str | None, None] = dict.fromkeys(memory.get("failing", []))
    unlisted = int(memory.get("unlisted", 0))
    if after is None or (not failing and unlisted):
        failing, after = _read_all(instance, key)
        unlisted = 0
    else:
        after = _replay_after(instance, key, failing, after, CHECK_BUDGET)
    hours = sorted(failing, key=lambda p: p or "")
    if len(hours) > MAX_FAILING_PARTITIONS:
        log.warning(
            "%s: %s fails on %d hours; listing the newest %d, counting the rest",
            key.asset_key.to_user_string(),
            key.name,
            len(hours) + unlisted,
            MAX_FAILING_PARTITIONS,
        )
        unlisted += len(hours) - MAX_FAILING_PARTITIONS
        hours = hours[-MAX_FAILING_PARTITIONS:]
    memory.clear()
    memory.update({"after": after, "failing": hours, "unlisted": unlisted})
    return hours, unlisted


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
    read_all = _read_landings(instance, spec.asset_key, mem, scan_budget)
    if not read_all:
        h.problems_reading.append(
            f"freshness: still reading the source's materialization history ({scan_budget} "
            "records a tick); until that is done it may look fresher than it is"
        )
    if mem.fresh_at is not None:
        h.last_landed_at, h.newest_event = mem.fresh_at, mem.newest_event
        h.freshness = _freshness(h, now - mem.fresh_at)
    elif read_all:  # a first read not finished may not have reached a landing yet
        # Nothing ever landed: a wrong secret, bucket prefix or tenant from day one.
        # Once the source has been running longer than its fail window, that is the
        # same fail as landings that stopped (no warn first: a new source gets its
        # whole fail window to land something); a source never run stays unknown.
        since = _running_since(instance, spec, h)
        if since is not None:
            h.started_at, h.started_by = since
            if _freshness(h, now - h.started_at) == "fail":
                h.freshness = "fail"
    rec, backfills = _last_runs(instance, spec)
    if rec is not None:
        h.last_run_status = rec.dagster_run.status.value
        h.last_run_id = rec.dagster_run.run_id
        h.last_run_at = _finished_at(rec)
        if rec.dagster_run.status == dg.DagsterRunStatus.FAILURE:
            h.last_run_failed_by_checks, h.last_run_error = _run_failure(instance, h.last_run_id)
    if backfills:
        rec = backfills[0]
        h.last_backfill_status = rec.dagster_run.status.value
        h.last_backfill_id = rec.dagster_run.run_id
        h.last_backfill_at = _finished_at(rec)
        if rec.dagster_run.status == dg.DagsterRunStatus.FAILURE:
            h.last_backfill_failed_by_checks, h.last_backfill_error = _run_failure(
                instance, h.last_backfill_id
            )
            h.backfill_failed_partitions, h.backfill_failed_more = _failed_hours(backfills)
    content = {k.name for k in spec.check_keys if k.name in CONTENT_CHECK_NAMES}
    failing = _source_wide_failures(instance, [k for k in spec.check_keys if k.name not in content])
    for name in set(mem.checks) - content:  # a check no longer declared
        del mem.checks[name]
    for key in spec.check_keys:
        if key.name in content:
            partitions, unlisted = _failing_partitions(
                instance, key, mem.checks.setdefault(key.name, {})
            )
            if partitions or unlisted:
                h.failing_checks.append(key.name)
                h.failing_partitions[key.name] = partitions
                if unlisted:
                    h.unlisted_partitions[key.name] = unlisted
        elif key.name in failing:
            h.failing_checks.append(key.name)
            if failing[key.name]:
                h.warning_checks.append(key.name)
    if lip is not None and spec.pattern == "webhook":
        try:
            depth = lip.buffer.depth(spec.name)
            h.buffer_depth, h.dlq_depth = depth.messages, depth.dead_letters
            h.buffer_retention_s = lip.buffer.retention_seconds
        except LipError as exc:
            h.problems_reading.append(f"buffer: {exc}")
    return h
