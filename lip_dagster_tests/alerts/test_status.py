"""``lip status`` exits 2 whenever the alert sensor would page at fail severity, and 0
when nothing is wrong, so a script or a deployment check can trust it."""

from __future__ import annotations

import dagster as dg
import orjson
import pytest

from lip_dagster.definitions import defs
from lip_dagster.simulator import VendorSimulator

from .conftest import lip_status_exit_code, poll


def test_lip_status_exits_2_when_the_latest_run_failed_before_anything_landed(
    demo_world: VendorSimulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    d, instance = defs(), dg.DagsterInstance.ephemeral()
    assert lip_status_exit_code(d, instance, monkeypatch) == 0  # nothing has run yet
    capsys.readouterr()

    monkeypatch.setenv("LIP_SECRET_SLACK_TOKEN", "xoxp-revoked")  # Slack refuses the token
    assert not poll(d, instance, "slack").success
    assert lip_status_exit_code(d, instance, monkeypatch) == 2
    rows = orjson.loads(capsys.readouterr().out)["sources"]
    slack = next(r for r in rows if r["source"] == "slack")
    assert (slack["freshness"], slack["last_run_status"]) == ("unknown", "FAILURE")


def test_lip_status_shows_a_failed_backfill_apart_from_the_live_runs(
    demo_world: VendorSimulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A backfill that failed still fails `lip status` after a live poll succeeded (the
    `backfill|<source>` page is still open), and the row says which run failed."""
    from lip_dagster.alerts.health import SourceHealth
    from lip_dagster.alerts.status import render

    d, instance = defs(), dg.DagsterInstance.ephemeral()
    demo_world.script("slack", [401])  # Slack refuses the token once
    assert not poll(d, instance, "slack", partition="2026-01-01-00:00", live=False).success
    assert poll(d, instance, "slack").success
    assert lip_status_exit_code(d, instance, monkeypatch) == 2
    rows = orjson.loads(capsys.readouterr().out)["sources"]
    slack = next(r for r in rows if r["source"] == "slack")
    assert (slack["last_run_status"], slack["last_backfill_status"]) == ("SUCCESS", "FAILURE")
    assert slack["backfill_failed_partitions"] == ["2026-01-01-00:00"]
    assert "HTTP 401" in slack["last_backfill_error"]
    row = SourceHealth("slack", "polling", last_run_status="SUCCESS", last_run_at=0.0)
    row.last_backfill_status, row.last_backfill_at = "FAILURE", 0.0
    head, line = render([row], 60).splitlines()
    assert "LAST BACKFILL" in head and "success 60s ago  failure 60s ago" in line


def test_lip_status_exits_2_while_the_state_maintenance_job_fails(
    demo_world: VendorSimulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The alert sensor pages `run|lip_state_maintenance` (a prune that keeps failing
    lets state.db grow until the disk is full); `lip status` exited 0 meanwhile, so a
    script trusting it saw a healthy pipeline while that page was open."""
    d, instance = defs(), dg.DagsterInstance.ephemeral()
    backend = d.resources["lip"]
    job = d.resolve_job_def("lip_state_maintenance")

    def broken(now: float | None = None) -> int:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(backend.dedupe, "prune", broken)
        ran = job.execute_in_process(
            resources={"lip": backend}, instance=instance, raise_on_error=False
        )
    assert not ran.success
    assert lip_status_exit_code(d, instance, monkeypatch) == 2
    (other,) = orjson.loads(capsys.readouterr().out)["other_incidents"]
    assert other["key"] == "run|lip_state_maintenance"
    assert "No space left on device" in other["message"]

    assert job.execute_in_process(resources={"lip": backend}, instance=instance).success
    assert lip_status_exit_code(d, instance, monkeypatch) == 0
    assert orjson.loads(capsys.readouterr().out)["other_incidents"] == []
