"""The daily state maintenance job: the embedded dedupe store stays the size of its
TTL window instead of holding every id ever landed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from lip_dagster.config import Settings
from lip_dagster.definitions import defs
from lip_dagster.lake.identity_keys import dedupe_keys
from lip_dagster.lake.writer import LakeWriter
from lip_dagster.resources import EmbeddedBackend
from lip_dagster.simulator.generators import okta_events
from lip_dagster.sources.okta import OktaPoller
from lip_dagster.state.sqlite import SqliteDedupeStore


def test_the_daily_job_deletes_ids_past_their_ttl_and_keeps_the_rest(lip_home: Path) -> None:
    backend = EmbeddedBackend(Settings.from_env())
    ttl = backend.settings.dedupe_ttl_days * 86400
    identity = OktaPoller.identity
    now = datetime.now(UTC)
    then = now - timedelta(days=40)  # past the 30-day TTL
    old = okta_events(300, then - timedelta(hours=2), then, seed=1)
    recent = okta_events(200, now - timedelta(hours=2), now, seed=2)
    # the old ids were landed 40 days ago, into the same state.db
    aged = SqliteDedupeStore(
        backend.settings.state_db, ttl_seconds=ttl, clock=lambda: then.timestamp()
    )
    LakeWriter(backend.lake, aged).write("okta", old, identity, "polling")
    aged.close()
    LakeWriter(backend.lake, backend.dedupe).write("okta", recent, identity, "polling")
    resolution = backend.dedupe.key_resolution
    old_keys = dedupe_keys(old, identity, resolution)
    recent_keys = dedupe_keys(recent, identity, resolution)
    assert len(backend.dedupe.get("okta", old_keys)) == len(old)

    d = defs()
    schedule = d.resolve_schedule_def("lip_state_maintenance_daily")
    assert schedule.default_status is dg.DefaultScheduleStatus.RUNNING
    result = d.resolve_job_def("lip_state_maintenance").execute_in_process(
        resources={"lip": backend}
    )

    assert result.success
    assert result.output_for_node("prune_dedupe_store") == len(old)
    assert backend.dedupe.get("okta", old_keys) == {}
    assert len(backend.dedupe.get("okta", recent_keys)) == len(recent)
    # an old event delivered again after its TTL is new again: it lands
    again = LakeWriter(backend.lake, backend.dedupe).write("okta", old[:10], identity, "polling")
    assert again.events == 10


def test_a_failing_maintenance_run_pages_and_resolves_once_it_succeeds(
    lip_home: Path, monkeypatch
) -> None:
    """If the daily prune fails, nothing else deletes expired ids: state.db grows until
    the disk is full and the receiver refuses deliveries. The failure pages like any
    failed collection instead of waiting in the run list to be noticed."""
    from lip_dagster.alerts.sensor import build_alert_sensor
    from lip_dagster_tests.alerts.conftest import Stub, opened, resolved, route_alerts_to

    stub = Stub()
    try:
        route_alerts_to(stub, monkeypatch)
        d = defs()
        backend = d.resources["lip"]
        instance = dg.DagsterInstance.ephemeral()
        sensor = build_alert_sensor()

        def tick(cursor: str | None) -> str | None:
            ctx = dg.build_sensor_context(
                instance=instance,
                repository_def=d.get_repository_def(),
                cursor=cursor,
                resources={"lip": backend},
            )
            return sensor(ctx).cursor

        def broken(now: float | None = None) -> int:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(backend.dedupe, "prune", broken)
        job = d.resolve_job_def("lip_state_maintenance")
        failed = job.execute_in_process(
            resources={"lip": backend}, instance=instance, raise_on_error=False
        )
        assert not failed.success
        cursor = tick(None)
        assert "run|lip_state_maintenance" in opened(stub)
        (page,) = [b for _, b in stub.received if b.get("event") == "open"]
        assert "No space left on device" in page["message"]
        cursor = tick(cursor)  # still failing: the incident stays open, nothing is sent
        assert [b.get("event") for _, b in stub.received] == ["open"]

        monkeypatch.undo()
        route_alerts_to(stub, monkeypatch)
        assert job.execute_in_process(resources={"lip": backend}, instance=instance).success
        tick(cursor)
        assert resolved(stub) == ["run|lip_state_maintenance"]
        (notice,) = [b for _, b in stub.received if b.get("event") == "resolved"]
        assert notice["message"].startswith("resolved: ")  # not "closed, not resolved"
    finally:
        stub.close()


def test_the_dagster_instance_forgets_old_schedule_and_sensor_ticks(tmp_path: Path) -> None:
    """Ten sensors tick every 30-60 s and the polls every 5-10 minutes. Dagster keeps
    every schedule tick, and every sensor tick that requested a run or failed, for
    ever unless told otherwise: in the demo's SQLite storage (and in production's
    PostgreSQL) that is thousands of rows a day, each with the sensor's cursor, never
    deleted. Both instance files give every kind of tick an age limit."""
    import shutil

    import yaml
    from dagster._core.definitions.run_request import InstigatorType

    repo = Path(__file__).resolve().parents[1]
    # the demo's instance, loaded from its file as the daemon loads it (which also
    # checks the section against Dagster's schema)
    shutil.copy(repo / "dagster.yaml", tmp_path / "dagster.yaml")
    demo = dg.DagsterInstance.from_config(str(tmp_path))
    # production's names PostgreSQL, which a test cannot open: its retention section
    ecs = yaml.safe_load((repo / "deploy" / "ecs" / "dagster.yaml").read_text())
    prod = dg.DagsterInstance.ephemeral(settings={"retention": ecs.get("retention") or {}})
    try:
        for instance in (demo, prod):
            for kind in (InstigatorType.SCHEDULE, InstigatorType.SENSOR):
                days = instance.get_tick_retention_settings(kind)
                assert days
                assert all(0 < d <= 90 for d in days.values()), (kind, days)
    finally:
        demo.dispose()
        prod.dispose()


def test_the_daily_job_deletes_temporary_files_a_killed_write_left_behind(
    lip_home: Path,
) -> None:
    """A lake object or quarantine item is written to a temporary file first; a process
    killed mid-write (OOM, a deploy, run monitoring) leaves that file behind, up to an
    object's size each time, and nothing else ever deletes it. The daily job deletes
    those older than a day; a write under way (a fresh file) is left alone."""
    import os

    backend = EmbeddedBackend(Settings.from_env())
    lake_tmp = backend.settings.tmp_dir
    quarantine_tmp = backend.settings.quarantine_dir / ".tmp"
    for d in (lake_tmp, quarantine_tmp):
        d.mkdir(parents=True, exist_ok=True)
    day_ago = (datetime.now(UTC) - timedelta(hours=25)).timestamp()
    left: list[Path] = []
    for d in (lake_tmp, quarantine_tmp):
        stale = d / ".put-killed1.tmp"
        stale.write_bytes(b"x" * 4096)
        os.utime(stale, (day_ago, day_ago))
        left.append(stale)
    writing = lake_tmp / ".put-inflight.tmp"
    writing.write_bytes(b"y")
    unrelated = lake_tmp / "notes.txt"  # not ours: never deleted
    unrelated.write_bytes(b"z")
    os.utime(unrelated, (day_ago, day_ago))

    result = (
        defs()
        .resolve_job_def("lip_state_maintenance")
        .execute_in_process(resources={"lip": backend})
    )

    assert result.success
    assert not any(p.exists() for p in left)
    assert writing.exists() and unrelated.exists()
    assert result.output_for_node("prune_temporary_files") == 2


def test_old_runs_lose_their_step_logs_and_keep_their_partitions_and_checks(
    tmp_path: Path,
) -> None:
    """On the embedded instance every run leaves a SQLite file of its own (140 KB or
    more) for ever: ~140 MB a day for the demo's polls. The daily job deletes those
    of runs that ended over LIP_RUN_LOG_DAYS ago. What an operator reads of an old
    run stays: the run in the run list, its partition materialized (so no backfill
    of "missing" partitions lands it again), its check result."""
    import shutil

    from lip_dagster.maintenance import prune_run_logs

    repo = Path(__file__).resolve().parents[1]
    shutil.copy(repo / "dagster.yaml", tmp_path / "dagster.yaml")
    hourly = dg.HourlyPartitionsDefinition(start_date="2026-11-01-00:00")

    @dg.asset(name="okta", partitions_def=hourly)
    def okta(context) -> dg.MaterializeResult:
        for _ in range(10):
            context.log.info("landed a page")
        return dg.MaterializeResult(metadata={"events": 1000})

    @dg.asset_check(asset=okta, name="okta_lake_layout")
    def layout() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    hours = [f"2026-11-01-{h:02d}:00" for h in range(3)]
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        run_ids = [
            dg.materialize([okta, layout], instance=instance, partition_key=h).run_id for h in hours
        ]
        shards = [tmp_path / "history" / "runs" / f"{r}.db" for r in run_ids]
        assert all(s.exists() for s in shards)
        assert instance.all_logs(run_ids[0])

        # runs that ended minutes ago keep everything
        assert prune_run_logs(instance, keep_days=30).runs == 0
        assert all(s.exists() for s in shards)

        later = time.time() + 31 * 86400
        done = prune_run_logs(instance, keep_days=30, now=later)
        assert done.runs == 3
        assert done.bytes_freed >= 3 * 100_000
        assert not any(s.exists() for s in shards)
        assert not any((tmp_path / "storage" / r).exists() for r in run_ids)

        key = dg.AssetKey("okta")
        assert instance.get_materialized_partitions(key) == set(hours)
        latest = instance.get_latest_materialization_event(key)
        assert latest is not None and latest.run_id == run_ids[-1]
        records = instance.get_run_records(dg.RunsFilter(run_ids=run_ids))
        assert {r.dagster_run.status for r in records} == {dg.DagsterRunStatus.SUCCESS}
        check = dg.AssetCheckKey(key, "okta_lake_layout")
        summary = instance.event_log_storage.get_latest_asset_check_execution_by_key([check])
        assert summary[check].status.value == "SUCCEEDED"
        # a second pass finds nothing left to delete
        assert prune_run_logs(instance, keep_days=30, now=later).runs == 0
        # the run's page, in a process that had not opened it before: no log lines
        # (Dagster makes the run an empty file again, which the next pass deletes)
        fresh = dg.DagsterInstance.from_config(str(tmp_path))
        try:
            assert fresh.all_logs(run_ids[0]) == []
        finally:
            fresh.dispose()
        assert prune_run_logs(instance, keep_days=30, now=later).runs == 1
        assert not shards[0].exists()
    finally:
        instance.dispose()


def test_run_logs_on_a_database_instance_are_left_alone() -> None:
    """PostgreSQL (and the in-memory instance of a test run) keep events as rows of
    one table: no file per run to delete, and the job says so instead of failing."""
    from lip_dagster.maintenance import prune_run_logs

    with dg.DagsterInstance.ephemeral() as instance:
        done = prune_run_logs(instance, keep_days=1, now=time.time() + 10 * 86400)
    assert done.runs == 0
    assert done.skipped_because and "InMemoryEventLogStorage" in done.skipped_because
