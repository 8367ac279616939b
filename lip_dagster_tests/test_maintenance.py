"""The daily state maintenance job: the embedded dedupe store stays the size of its
TTL window instead of holding every id ever landed."""

from __future__ import annotations

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
