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
