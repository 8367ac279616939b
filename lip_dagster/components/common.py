"""What every source component shares: the hourly partitions, freshness policy,
tags, retry policy and how a run's landing stats become Dagster materializations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from lip_dagster.lake.layout import partition_to_path, validate_source_name
from lip_dagster.lake.writer import HourStats, WriteResult

SOURCE_TAG = "lip/source"
MODE_TAG = "lip/mode"
MODE_POLL = "poll"
"""``lip/mode=poll`` marks a run as the source's live collection, set when it is
launched: by the polling schedule, the webhook and S3 arrival sensors and ``lip run
SOURCE``. Every other run of a source (a backfill or Materialize from the UI, ``lip run
--partition``, a Launchpad run) is not live."""
TRIGGER_TAG = "lip/trigger"
"""On a webhook drain the arrival sensor requests: why (``size``, ``age``, ``heartbeat``)."""
BATCH_TAG = "lip/batch"
"""On every run the S3 arrival sensor requests: the batch id (also its run key). Dagster
copies it onto its own retries of the run, so the sensor finds every run of a batch."""
CHECKS_TAG = "lip/checks"
"""On a run of checks alone (a lake-layout hour's content checks): which."""
BACKFILL_TAG = "lip/backfill"
"""Set by the source's step, as it starts, on a run that is not live collection (value:
the source). A backfill or Materialize from the asset graph runs Dagster's implicit
asset job, which carries none of the source's tags: this is how the alert sensor finds
it, and keeps its failure apart from the live collection's."""
REFUSED_TAG = "lip/refused"
"""Set instead of ``lip/backfill`` on a run the source refuses by design (a past hour of
a webhook source, an S3 source's run without object keys), value: the source. It
collected nothing and lost nothing, and its error says what to do instead: it pages
nobody."""


def is_live(tags: Mapping[str, str]) -> bool:
    """Whether a run is the source's live collection, from its tags. The arrival
    sensors' own tags count too: their runs launched (or retried by Dagster) before
    the sensors also set ``lip/mode=poll`` are live all the same."""
    return tags.get(MODE_TAG) == MODE_POLL or any(
        t in tags for t in (TRIGGER_TAG, BATCH_TAG, CHECKS_TAG)
    )


def mark_not_live(context: dg.AssetExecutionContext, name: str, refused: bool = False) -> None:
    """Tag the running run as not live collection of ``name`` (``lip/backfill``), or as
    refused by design (``lip/refused``): the alert sensor pages a failed one as
    ``backfill|<source>``, never as the live collection's ``run|<source>``."""
    tag = REFUSED_TAG if refused else BACKFILL_TAG
    context.instance.add_run_tags(context.run.run_id, {tag: name})


def requested_at(context: dg.AssetExecutionContext) -> datetime:
    """When the run was asked for (its record's creation), not when it started: a
    UI "Materialize" of the current hour clicked at 10:59:50 starts after 11:00 once
    its task is up, and the hour it asked for was current when it asked."""
    record = context.instance.get_run_record_by_id(context.run.run_id)
    return record.create_timestamp if record is not None else datetime.now(UTC)


def retry_policy(max_retries: int = 2, delay: int = 30) -> dg.RetryPolicy | None:
    """Step retries for transient failures that outlast the HTTP retries (a vendor
    outage of a few minutes); bounded, exponential, jittered. 0 means none."""
    if max_retries <= 0:
        return None
    return dg.RetryPolicy(
        max_retries=max_retries,
        delay=delay,
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.FULL,
    )


def hourly_partitions(start_date: str) -> dg.HourlyPartitionsDefinition:
    """end_offset=1 so the current hour exists and a schedule can target it."""
    return dg.HourlyPartitionsDefinition(start_date=start_date, timezone="UTC", end_offset=1)


def freshness(fail_minutes: int, warn_minutes: int | None) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.time_window(
        fail_window=timedelta(minutes=fail_minutes),
        warn_window=timedelta(minutes=warn_minutes) if warn_minutes else None,
    )


def source_tags(name: str, pattern: str) -> dict[str, str]:
    validate_source_name(name)
    return {SOURCE_TAG: name, "lip/pattern": pattern}


LAKE_OBJECTS_KEY = "lake_objects"
"""Materialization metadata of a lake-layout source's registration: objects the
producer wrote (their event count is unknown without reading them). The alert
sensor counts such a materialization as a landing, as it counts ``events``."""


def iso(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if dt else None


def hour_metadata(stats: HourStats, now: datetime) -> dict[str, Any]:
    lag = (now - stats.newest_event).total_seconds() if stats.newest_event else None
    return {
        "events": stats.events,
        "duplicates_dropped": stats.duplicates,
        "objects": stats.objects,
        "bytes_raw": stats.bytes_raw,
        "bytes_gzip": stats.bytes_gz,
        "newest_event": iso(stats.newest_event) or "none",
        "lag_seconds": dg.MetadataValue.float(lag) if lag is not None else "n/a",
    }


def report_materializations(
    context: dg.AssetExecutionContext,
    result: WriteResult,
    partitions_def: dg.HourlyPartitionsDefinition,
    run_metadata: Mapping[str, Any],
    coverage: Callable[[str], str] | None = None,
) -> dg.MaterializeResult:
    """Log one materialization per hour partition written to (other than the
    target), and return the target partition's result with the run's metadata."""
    now = datetime.now(UTC)
    target = context.partition_key if context.has_partition_key else None
    _, outside = _log_hours(context, result, partitions_def, now, coverage, skip=target)
    target_stats = result.hours.get(target) if target else None
    meta: dict[str, Any] = dict(hour_metadata(target_stats or HourStats(), now))
    meta.update(run_metadata)
    if coverage and target:
        meta["coverage"] = coverage(target)
    meta["partitions_written"] = len(result.hours)
    meta["events_total"] = result.events
    meta["duplicates_total"] = result.duplicates
    meta["objects_total"] = result.objects
    if result.quarantined:
        meta["events_quarantined"] = result.quarantined
        context.log.warning(
            f"{result.quarantined} event(s) went to quarantine instead of the lake: "
            "nested deeper than a lake object can hold (reasons beside them in the "
            "quarantine; the source's sam_quarantine check lists them)"
        )
    if outside:
        meta["events_outside_partitions"] = outside
    return dg.MaterializeResult(metadata=meta)


def report_failed_run(
    context: dg.AssetExecutionContext,
    result: WriteResult,
    partitions_def: dg.HourlyPartitionsDefinition,
    error: BaseException,
    coverage: Callable[[str], str] | None = None,
    include_target: bool = True,
) -> int:
    """Log a materialization for every hour a failing run landed events in, before
    the run fails. Those events are in the lake and the cursor has moved past them,
    so no later run lands them again: without this, their hours would never be
    materialized and their content checks never run. ``include_target=False`` leaves
    the run's own partition out (a backfill that did not finish its hour must not make
    it look done). Returns how many hours were logged."""
    now = datetime.now(UTC)
    target = context.partition_key if context.has_partition_key else None
    skip = None if include_target else target
    summary = str(error).splitlines()[0] if str(error) else type(error).__name__
    extra = {"run_outcome": f"failed after landing: {summary[:300]}"}
    logged, _ = _log_hours(context, result, partitions_def, now, coverage, skip=skip, extra=extra)
    return logged


def _log_hours(
    context: dg.AssetExecutionContext,
    result: WriteResult,
    partitions_def: dg.HourlyPartitionsDefinition,
    now: datetime,
    coverage: Callable[[str], str] | None,
    *,
    skip: str | None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[int, int]:
    """One ``AssetMaterialization`` per hour partition in ``result`` except ``skip``;
    returns how many were logged, and the events that fell outside the partitions (not
    logged)."""
    valid = set(partitions_def.get_partition_keys(current_time=now))
    logged = outside = 0
    for hour, stats in sorted(result.hours.items()):
        if hour == skip:
            continue
        if hour not in valid:
            outside += stats.events
            continue
        context.log_event(
            dg.AssetMaterialization(
                asset_key=context.asset_key,
                partition=hour,
                description=f"landed by run {context.run.run_id} under {partition_to_path(hour)}",
                metadata={
                    **hour_metadata(stats, now),
                    **({"coverage": coverage(hour)} if coverage else {}),
                    **(extra or {}),
                },
            )
        )
        logged += 1
    return logged, outside
