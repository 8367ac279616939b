"""Coverage: a gap in the middle of the week is as visible as a stale head."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from lip_dagster.components.coverage import gap_ranges
from lip_dagster.config import Settings
from lip_dagster.definitions import defs
from lip_dagster.demo import demo_env, write_secrets
from lip_dagster.simulator import SimConfig, VendorSimulator
from lip_dagster_tests.clock import now_with_hour_left


def test_gap_ranges_fold_consecutive_hours() -> None:
    hours = ["2026-03-01-01:00", "2026-03-01-02:00", "2026-03-01-03:00", "2026-03-01-07:00"]
    assert gap_ranges(hours) == ["2026-03-01-01:00..2026-03-01-03:00", "2026-03-01-07:00"]


def run(d: dg.Definitions, instance: dg.DagsterInstance, partition: str, live: bool):
    return d.resolve_job_def("okta_poll").execute_in_process(
        partition_key=partition,
        tags={"lip/mode": "poll"} if live else {},
        instance=instance,
    )


def test_a_gap_mid_week_turns_the_coverage_check_red_until_backfilled(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    # the runs measure coverage against their own clock: the whole test in one hour
    now = now_with_hour_left()
    hour = now.replace(minute=0, second=0, microsecond=0)
    with VendorSimulator(SimConfig(live_rate_per_s=0, history_hours=0.01)) as sim:
        for k, v in demo_env(sim.base_url).items():
            monkeypatch.setenv(k, v)
        write_secrets(Settings.from_env().secrets_file, sim.credentials())
        # events five hours ago and one hour ago, nothing in between: the collector
        # "was down" for three hours and nothing of those hours ever landed
        sim.add_events(
            "okta",
            "logs",
            20,
            start=hour - timedelta(hours=5),
            end=hour - timedelta(hours=5) + timedelta(minutes=30),
        )
        sim.add_events(
            "okta", "logs", 20, start=hour - timedelta(hours=1), end=hour - timedelta(minutes=30)
        )
        d = defs()
        instance = dg.DagsterInstance.ephemeral()
        live = run(d, instance, hour.strftime("%Y-%m-%d-%H:00"), live=True)
        (cov,) = [c for c in live.get_asset_check_evaluations() if c.check_name == "coverage"]
        assert not cov.passed
        gaps = cov.metadata["gaps"].value
        h = lambda n: (hour - timedelta(hours=n)).strftime("%Y-%m-%d-%H:00")  # noqa: E731
        assert gaps == [f"{h(4)}..{h(2)}"]
        assert "backfill" in (cov.description or "")
        mats = live.asset_materializations_for_node("okta")
        coverage = {m.partition: m.metadata["coverage"].value for m in mats}
        assert coverage[h(1)] == "complete" and coverage[hour.strftime("%Y-%m-%d-%H:00")] == "open"
        for n in (4, 3, 2):  # backfill the gap from the UI (or lip run --partition)
            run(d, instance, h(n), live=False)
        again = run(d, instance, hour.strftime("%Y-%m-%d-%H:00"), live=True)
        (cov2,) = [c for c in again.get_asset_check_evaluations() if c.check_name == "coverage"]
        assert cov2.passed, cov2.description


def test_a_source_polled_on_time_is_not_stale_while_its_overlap_is_open(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Google's token activity is re-read for two hours, as long as the source's
    freshness window (120 minutes): its complete mark always trails the last poll by
    two hours. Staleness is measured from how far collection has got (the mark plus
    the overlap), so a source polled on time passes; its last two hours stay open."""
    monkeypatch.setenv("LIP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with VendorSimulator(SimConfig(live_rate_per_s=0, history_hours=0.01)) as sim:
        for k, v in demo_env(sim.base_url).items():
            monkeypatch.setenv(k, v)
        write_secrets(Settings.from_env().secrets_file, sim.credentials())
        d = defs()
        instance = dg.DagsterInstance.ephemeral()
        now = datetime.now(UTC)
        current = now.strftime("%Y-%m-%d-%H:00")
        result = d.resolve_job_def("google_workspace_poll").execute_in_process(
            partition_key=current, tags={"lip/mode": "poll"}, instance=instance
        )
        (cov,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "coverage"]
        assert cov.passed, cov.description
        assert cov.metadata["head_lag_seconds"].value >= 2 * 3600  # token's overlap
        assert 0 <= cov.metadata["collected_lag_seconds"].value < 600
        mats = result.asset_materializations_for_node("google_workspace")
        assert {m.partition: m.metadata["coverage"].value for m in mats}[current] == "open"
