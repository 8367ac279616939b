"""Housekeeping of LIP's own state: a daily job, visible in the Dagster UI like any run.

The dedupe store keeps a row per event id for ``LIP_DEDUPE_TTL_DAYS``, the window in
which a re-delivery is still recognised. On the embedded backend nothing deletes a
row when its TTL passes: without this job ``state.db`` would hold every id ever
landed and grow until the disk is full, and landing would stop. DynamoDB deletes
expired items by itself (its ``prune`` does nothing), so the same job is harmless on
AWS and the definitions do not depend on the backend.

The same job deletes the temporary files that lake and quarantine writes killed
mid-way (SIGKILL, OOM, a power cut) leave in ``$LIP_HOME/tmp`` and
``$LIP_HOME/quarantine/.tmp``: up to an object's size per crash, which nothing else
would ever delete. On S3 an interrupted upload leaves no object, and both stores'
``prune_temporary`` do nothing.

And it deletes the step logs of runs that ended more than ``LIP_RUN_LOG_DAYS`` ago
from a SQLite Dagster instance (the embedded deployment's). There every run writes its
own event log file (140 KB or more, mostly SQLite's fixed cost per file) and a
directory of captured output, kept for ever: about 176 KB a run, 176 MB a day for
the demo's schedules. What the UI, freshness, asset checks and ``lip status`` read of an old run
is not in those files: its run record (runs.db) and its materializations, check
results and status changes, which Dagster copies into the instance's index
(index.db) as it writes them. Those stay, so partitions stay materialized and the
run list stays whole; an old run's page just shows no log lines. Runs are never
deleted: deleting one deletes its materializations, and a partition that looks
missing invites a backfill that lands again what the expired dedupe ids no longer
recognise. On PostgreSQL a run's events are rows of one table, without the per-file
cost; they are left alone (docs/runbook.md, "Disk use").
"""

import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager

from lip_dagster.resources import Backend
from lip_dagster.state._common import chunks

JOB_NAME = "lip_state_maintenance"
# Early morning UTC, off the hour: away from the hourly polls that start on the hour.
CRON = "17 3 * * *"


@dg.op(name="prune_dedupe_store", tags={"lip/pattern": "maintenance"})
def prune_dedupe_store(context: dg.OpExecutionContext, lip: dg.ResourceParam[Backend]) -> int:
    """Delete ids past their TTL, in short transactions (the receiver and the
    writers keep working meanwhile)."""
    started = time.monotonic()
    pruned = lip.dedupe.prune()
    seconds = time.monotonic() - started
    context.log.info(f"dedupe store: {pruned} expired ids deleted in {seconds:.1f} s")
    context.add_output_metadata({"ids_pruned": pruned, "seconds": round(seconds, 1)})
    return pruned


@dg.op(name="prune_temporary_files", tags={"lip/pattern": "maintenance"})
def prune_temporary_files(context: dg.OpExecutionContext, lip: dg.ResourceParam[Backend]) -> int:
    """Delete temporary files of lake and quarantine writes that were killed before
    they could delete them (older than a day: no write takes that long)."""
    lake, quarantine = lip.lake.prune_temporary(), lip.quarantine.prune_temporary()
    context.log.info(
        f"temporary files of killed writes deleted: {lake} of the lake, {quarantine} of quarantine"
    )
    context.add_output_metadata(
        {"lake_files_deleted": lake, "quarantine_files_deleted": quarantine}
    )
    return lake + quarantine


_ENDED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
# run ids per query of the run storage: well under SQLite's bound-parameter limit
_RUN_ID_BATCH = 200


@dataclass(frozen=True)
class RunLogPrune:
    runs: int
    bytes_freed: int
    skipped_because: str | None = None


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def prune_run_logs(
    instance: dg.DagsterInstance, keep_days: int, now: float | None = None
) -> RunLogPrune:
    """Delete the per-run event log files and captured output of runs that ended
    more than ``keep_days`` ago, on an instance that keeps one file per run."""
    storage = instance.event_log_storage
    if not isinstance(storage, SqliteEventLogStorage):
        return RunLogPrune(0, 0, f"the instance keeps run logs in {type(storage).__name__}")
    cutoff = (time.time() if now is None else now) - keep_days * 86400
    output = instance.compute_log_manager
    runs = freed = 0
    for batch in chunks(sorted(storage.get_all_run_ids()), _RUN_ID_BATCH):
        records = instance.get_run_records(dg.RunsFilter(run_ids=list(batch), statuses=_ENDED))
        for record in records:
            if record.end_time is None or record.end_time > cutoff:
                continue
            run_id = record.dagster_run.run_id
            shard = Path(storage.path_for_shard(run_id))
            # the file and whatever journal SQLite left beside it
            journals = (shard.with_name(shard.name + s) for s in ("-wal", "-shm", "-journal"))
            for path in (shard, *journals):
                if path.exists():
                    freed += _size(path)
                    path.unlink()
            if isinstance(output, LocalComputeLogManager):
                # its layout: <base dir>/<run id>/<step>...
                captured = Path(output._base_dir) / run_id
                if captured.exists():
                    freed += _size(captured)
                    output.delete_logs(prefix=[run_id])
            runs += 1
    return RunLogPrune(runs, freed)


@dg.op(name="prune_run_logs", tags={"lip/pattern": "maintenance"})
def prune_run_logs_op(context: dg.OpExecutionContext, lip: dg.ResourceParam[Backend]) -> int:
    """Delete step logs of runs older than LIP_RUN_LOG_DAYS from a SQLite instance;
    run records, materializations and check results stay."""
    days = lip.settings.run_log_days
    done = prune_run_logs(context.instance, days)
    if done.skipped_because:
        context.log.info(f"run logs: nothing to delete here ({done.skipped_because})")
    else:
        context.log.info(
            f"run logs: step logs of {done.runs} runs that ended over {days} days ago "
            f"deleted, {done.bytes_freed / 1e6:.1f} MB freed"
        )
    context.add_output_metadata(
        {"runs_pruned": done.runs, "mb_freed": round(done.bytes_freed / 1e6, 1), "keep_days": days}
    )
    return done.runs


@dg.job(
    name=JOB_NAME,
    tags={"lip/pattern": "maintenance"},
    description="Delete event ids older than the dedupe TTL from the state store, so "
    "it stays the size of the TTL window instead of growing without end, and the "
    "temporary files killed writes left behind, and (on a SQLite instance) the step "
    "logs of runs older than LIP_RUN_LOG_DAYS.",
)
def state_maintenance() -> None:
    prune_dedupe_store()
    prune_temporary_files()
    prune_run_logs_op()


def build_maintenance_defs() -> dg.Definitions:
    schedule = dg.ScheduleDefinition(
        name=f"{JOB_NAME}_daily",
        job=state_maintenance,
        cron_schedule=CRON,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return dg.Definitions(jobs=[state_maintenance], schedules=[schedule])
