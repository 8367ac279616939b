"""The failure to design against: the vendor keeps answering, runs keep succeeding,
and nothing reaches the lake. LIP must page within one freshness window of the last
landed event, and say so again when data flows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from lip_dagster.alerts import sensor as alert_sensor
from lip_dagster.definitions import defs
from lip_dagster.lake.writer import LakeWriter, WriteResult
from lip_dagster.simulator import VendorSimulator

from .conftest import Stub, poll, route_alerts_to, tick
from .conftest import opened as opened_keys
from .conftest import resolved as resolved_keys


def test_silent_outage_pages_within_one_window_and_resolves(
    demo_world: VendorSimulator, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    route_alerts_to(stub, monkeypatch)
    d = defs()
    instance = dg.DagsterInstance.ephemeral()
    assert poll(d, instance, "okta").success  # data lands
    t0 = datetime.now(UTC).timestamp()
    cursor = tick(d, instance, None).cursor
    assert stub.received == []  # healthy: nothing to say

    # the landing step breaks silently: every run "succeeds", nothing lands
    real_write = LakeWriter.write
    monkeypatch.setattr(LakeWriter, "write", lambda self, *a, **kw: WriteResult())
    now = datetime.now(UTC)
    demo_world.add_events("okta", "logs", 40, start=now - timedelta(seconds=20), end=now)
    for minute in (5, 25, 45, 59):
        monkeypatch.setattr(alert_sensor, "clock", lambda m=minute: t0 + m * 60)
        assert poll(d, instance, "okta").success  # the vendor answers, the run is green
        cursor = tick(d, instance, cursor).cursor
    opened = [b for _, b in stub.received if b["event"] == "open"]
    assert [b["kind"] for b in opened] == ["freshness"]  # warn at 30 min
    assert opened[0]["severity"] == "warn"

    monkeypatch.setattr(alert_sensor, "clock", lambda: t0 + 61 * 60)  # one window later
    cursor = tick(d, instance, cursor).cursor
    fail = [b for _, b in stub.received if b["event"] == "open" and b["severity"] == "fail"]
    assert len(fail) == 1 and fail[0]["source"] == "okta"
    assert "nothing new has landed for 1 h 1 min" in fail[0]["message"]
    for _ in range(3):  # repeated ticks do not repeat the page
        cursor = tick(d, instance, cursor).cursor
    assert len([b for _, b in stub.received if b["event"] == "open"]) == 2

    # writes recover: the events the vendor kept are collected, and the page resolves
    monkeypatch.setattr(LakeWriter, "write", real_write)
    monkeypatch.setattr(alert_sensor, "clock", lambda: datetime.now(UTC).timestamp() + 60)
    demo_world.add_events(
        "okta", "logs", 5, start=datetime.now(UTC) - timedelta(seconds=5), end=datetime.now(UTC)
    )
    assert poll(d, instance, "okta").success
    tick(d, instance, cursor)
    resolved = [b for _, b in stub.received if b["event"] == "resolved"]
    assert sorted(b["severity"] for b in resolved) == ["fail", "warn"]


def test_a_run_failed_by_its_blocking_check_pages_once_as_that_check(
    demo_world: VendorSimulator, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The collection worked and the check found the hour broken: one page, the
    check's, which names the hour and resolves when it passes, not a second one
    sending on-call to the collection."""
    from lip_dagster.lake.backends import LocalLake

    route_alerts_to(stub, monkeypatch)
    d = defs()
    instance = dg.DagsterInstance.ephemeral()
    # one hour throughout: the polls target the hour these events are in, however
    # long the test takes and whatever the time of day
    now = datetime.now(UTC)
    hour_start = now.replace(minute=0, second=0, microsecond=0)
    demo_world.add_events("slack", "logs", 5, start=hour_start, end=now + timedelta(microseconds=1))
    partition = now.strftime("%Y-%m-%d-%H:00")
    assert poll(d, instance, "slack", partition).success
    # a broken object in the lake turns the content check red on the next run
    lake = d.resources["lip"].lake
    hour_path = now.strftime("year=%Y/month=%m/day=%d/hour=%H")
    keys = [k for k in lake.list_keys("slack") if hour_path in k]
    assert keys
    for key in keys:
        (lake.root / key).write_bytes(b"not gzip")
    # the blocking check fails the run
    assert poll(d, instance, "slack", partition).success is False
    cursor = None
    for _ in range(3):
        cursor = tick(d, instance, cursor).cursor
    opened = [b["incident"] for _, b in stub.received if b["event"] == "open"]
    assert opened == ["check|slack:lake_content"]
    assert isinstance(lake, LocalLake)


def backfill(
    d: dg.Definitions, instance: dg.DagsterInstance, partition: str
) -> dg.ExecuteInProcessResult:
    """One run of Dagster's implicit asset job, as a UI backfill or "Materialize" of
    the slack asset launches it: none of the source's tags."""
    job = d.resolve_implicit_job_def_def_for_assets([dg.AssetKey("slack")])
    assert job is not None and "lip/source" not in job.tags
    return job.execute_in_process(
        partition_key=partition,
        asset_selection=[dg.AssetKey("slack")],
        instance=instance,
        raise_on_error=False,
    )


def test_a_failed_run_launched_from_the_asset_graph_alerts(
    demo_world: VendorSimulator, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backfill or "Materialize" from the UI runs an implicit asset job that does not
    carry the source's tags; its failure must page, once, however often the live polls
    in between succeed, and only a backfill that succeeds resolves it."""
    route_alerts_to(stub, monkeypatch)
    d = defs()
    instance = dg.DagsterInstance.ephemeral()
    now = datetime.now(UTC)
    earlier = [(now - timedelta(hours=h)).strftime("%Y-%m-%d-%H:00") for h in (2, 1)]
    cursor = None
    for partition in earlier:  # the vendor refuses the token for each backfilled hour
        demo_world.script("slack", [401])
        run = backfill(d, instance, partition)
        assert not run.success and "lip/source" not in run.dagster_run.tags
        cursor = tick(d, instance, cursor).cursor
        assert poll(d, instance, "slack").success  # the live collection is fine
        cursor = tick(d, instance, cursor).cursor
    assert opened_keys(stub) == ["backfill|slack"] and resolved_keys(stub) == []
    (page,) = [b for _, b in stub.received if b["event"] == "open"]
    assert page["kind"] == "backfill" and page["source"] == "slack"
    assert earlier[0] in page["message"] and "HTTP 401" in page["message"]
    assert "resolves when a later backfill of slack succeeds" in page["message"]

    # the hours are backfilled again, and now they land: the page resolves
    for partition in earlier:
        assert backfill(d, instance, partition).success
    tick(d, instance, cursor)
    assert resolved_keys(stub) == ["backfill|slack"] and opened_keys(stub) == ["backfill|slack"]


def test_a_run_page_says_what_failed_without_the_secret(
    demo_world: VendorSimulator, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The on-call engineer reads the page first: it names the endpoint and status
    the run failed on, not only a run id to go and look up."""
    route_alerts_to(stub, monkeypatch)
    monkeypatch.setenv("LIP_SECRET_SLACK_TOKEN", "xoxp-revoked-4242")
    d, instance = defs(), dg.DagsterInstance.ephemeral()
    assert not poll(d, instance, "slack").success
    tick(d, instance, None)
    (page,) = [b for _, b in stub.received if b["event"] == "open" and b["kind"] == "run"]
    assert "VendorAuthError" in page["message"] and "'logs'" in page["message"]
    assert "HTTP 401" in page["message"] and "4242" not in page["message"]
