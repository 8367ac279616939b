"""One source's health, read only from state (Dagster's event log and run storage,
and LIP's stores), never from a vendor. The alert sensor and ``lip status`` share it.

Freshness here is measured on *data*: the time since the newest run that actually
landed events. Dagster's own freshness policy (evaluated by its daemon, shown in the
UI) counts any materialization, and a collector whose landing step is broken can still
materialize an empty partition; the alert must not be fooled by that.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

import dagster as dg

from lip_dagster.components.common import SOURCE_TAG
from lip_dagster.errors import LipError
from lip_dagster.resources import Backend

log = logging.getLogger(__name__)

LOOKBACK_RECORDS = 200  # materializations scanned for the newest one that landed events


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
    last_landed_at: float | None = None
    newest_event: str | None = None
    fail_window_s: float | None = None
    warn_window_s: float | None = None
    last_run_status: str | None = None
    last_run_id: str | None = None
    last_run_at: float | None = None
    failing_checks: list[str] = field(default_factory=list)
    buffer_depth: int | None = None
    dlq_depth: int | None = None
    problems_reading: list[str] = field(default_factory=list)

    def lag_seconds(self, now: float) -> float | None:
        return None if self.last_landed_at is None else now - self.last_landed_at

    def as_dict(self, now: float) -> dict[str, Any]:
        d = asdict(self)
        d["lag_seconds"] = self.lag_seconds(now)
        return d


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


def _newest_landing(instance: dg.DagsterInstance, key: dg.AssetKey) -> tuple[float, str] | None:
    result = instance.fetch_materializations(key, limit=LOOKBACK_RECORDS, ascending=False)
    for record in result.records:
        mat = record.asset_materialization
        if mat is None:
            continue
        events = mat.metadata.get("events")
        if events is not None and int(events.value or 0) > 0:  # type: ignore[arg-type]
            newest = mat.metadata.get("newest_event")
            return record.timestamp, str(newest.value) if newest else ""
    return None


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


def source_health(
    instance: dg.DagsterInstance, spec: SourceSpec, lip: Backend | None, now: float | None = None
) -> SourceHealth:
    """Each part is read on its own: one unreadable part is reported, the rest still
    answer (fail open on monitoring)."""
    now = time.time() if now is None else now
    h = SourceHealth(spec.name, spec.pattern)
    h.fail_window_s = spec.fail_window.total_seconds() if spec.fail_window else None
    h.warn_window_s = spec.warn_window.total_seconds() if spec.warn_window else None
    landed = _newest_landing(instance, spec.asset_key)
    if landed is not None:
        h.last_landed_at, h.newest_event = landed
        age = now - h.last_landed_at
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
    if spec.check_keys:
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            list(spec.check_keys)
        )
        for ck, record in latest.items():
            if record.status.value == "FAILED":
                h.failing_checks.append(ck.name)
    if lip is not None and spec.pattern == "webhook":
        try:
            depth = lip.buffer.depth(spec.name)
            h.buffer_depth, h.dlq_depth = depth.messages, depth.dead_letters
        except LipError as exc:
            h.problems_reading.append(f"buffer: {exc}")
    return h
