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
"""

import time

import dagster as dg

from lip_dagster.resources import Backend

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


@dg.job(
    name=JOB_NAME,
    tags={"lip/pattern": "maintenance"},
    description="Delete event ids older than the dedupe TTL from the state store, so "
    "it stays the size of the TTL window instead of growing without end, and the "
    "temporary files killed writes left behind.",
)
def state_maintenance() -> None:
    prune_dedupe_store()
    prune_temporary_files()


def build_maintenance_defs() -> dg.Definitions:
    schedule = dg.ScheduleDefinition(
        name=f"{JOB_NAME}_daily",
        job=state_maintenance,
        cron_schedule=CRON,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return dg.Definitions(jobs=[state_maintenance], schedules=[schedule])
