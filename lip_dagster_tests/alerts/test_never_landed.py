"""A source that has never landed anything was set up wrong from the start: a webhook
secret that does not match (every delivery refused), an S3 prefix nothing is written
to, a token for the wrong tenant. Its runs are green and empty. It pages at fail
severity, as the same freshness incident a source whose landings stopped gets, once it
has been running longer than its fail window: counted from its first run, or from the
start of a schedule or sensor of it that runs now. A source that never ran, with
nothing switched on to run it, pages nobody."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import orjson
import pytest
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.remote_origin import (
    RegisteredCodeLocationOrigin,
    RemoteInstigatorOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    ScheduleInstigatorData,
    SensorInstigatorData,
)
from dagster._core.test_utils import create_run_for_test, freeze_time

from lip_dagster.alerts import health, status
from lip_dagster.alerts import sensor as alert_sensor
from lip_dagster.definitions import defs
from lip_dagster.lake.writer import LakeWriter, WriteResult
from lip_dagster.simulator import VendorSimulator

from .conftest import (
    Stub,
    lip_status_exit_code,
    materialize,
    opened,
    poll,
    resolved,
    route_alerts_to,
    tick_at,
)


def notice(stub: Stub, incident: str) -> dict[str, str]:
    """The "open" notice of an incident."""
    return next(b for _, b in stub.received if b["event"] == "open" and b["incident"] == incident)


def status_rows(
    d: dg.Definitions,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    at: datetime,
) -> tuple[int, dict[str, dict[str, object]]]:
    """``lip status --json`` as if run at ``at``: its exit code and its rows by source."""
    capsys.readouterr()
    code = lip_status_exit_code(d, instance, monkeypatch, at)
    rows = orjson.loads(capsys.readouterr().out)["sources"]
    return code, {r["source"]: r for r in rows}


def status_table(d: dg.Definitions, instance: dg.DagsterInstance, at: datetime) -> str:
    """The table ``lip status`` prints, as if run at ``at``."""
    lip = d.resources["lip"]
    specs = health.declared_sources(d.get_repository_def())
    rows = [health.source_health(instance, s, lip, at.timestamp()) for s in specs]
    return status.render(rows, at.timestamp())


def test_a_polling_source_that_never_lands_pages_a_fail_window_after_its_first_run(
    demo_world: VendorSimulator,
    stub: Stub,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    route_alerts_to(stub, monkeypatch)
    d, instance = defs(), dg.DagsterInstance.ephemeral()
    # the vendor answers and every run is green, but nothing reaches the lake
    real_write = LakeWriter.write
    monkeypatch.setattr(LakeWriter, "write", lambda self, *a, **kw: WriteResult())
    t0 = datetime.now(UTC)
    assert poll(d, instance, "okta").success
    cursor = None
    for minute in (5, 31, 59):  # a new source gets its whole fail window, no warn first
        cursor = tick_at(d, instance, cursor, t0 + timedelta(minutes=minute), monkeypatch)
    assert stub.received == []
    code, rows = status_rows(d, instance, monkeypatch, capsys, t0 + timedelta(minutes=59))
    assert (code, rows["okta"]["freshness"]) == (0, "unknown")

    cursor = tick_at(d, instance, cursor, t0 + timedelta(minutes=61), monkeypatch)
    assert opened(stub) == ["freshness-fail|okta"]  # the sources never run stay quiet
    page = notice(stub, "freshness-fail|okta")
    assert (page["severity"], page["source"], page["kind"]) == ("fail", "okta", "freshness")
    assert "okta: no event has ever landed for okta since its first run at " in page["message"]
    assert f"{t0:%Y-%m-%d} " in page["message"]
    assert "check its credentials" in page["message"]
    for _ in range(3):  # one page per incident, not one per tick
        cursor = tick_at(d, instance, cursor, t0 + timedelta(minutes=62), monkeypatch)
    assert opened(stub) == ["freshness-fail|okta"]

    # `lip status` applies the same rule: it exits 2 and shows the source failing
    code, rows = status_rows(d, instance, monkeypatch, capsys, t0 + timedelta(minutes=61))
    assert code == 2
    okta = rows["okta"]
    assert (okta["freshness"], okta["last_landed_at"], okta["started_by"]) == (
        "fail",
        None,
        "its first run",
    )
    assert {r["freshness"] for s, r in rows.items() if s != "okta"} == {"unknown"}
    line = next(
        x
        for x in status_table(d, instance, t0 + timedelta(minutes=61)).splitlines()
        if x.startswith("okta ")
    )
    assert line.split()[2:4] == ["fail", "never"]

    # the fault is fixed: the first events land, and the page resolves
    monkeypatch.setattr(LakeWriter, "write", real_write)
    now = datetime.now(UTC)
    demo_world.add_events("okta", "logs", 5, start=now - timedelta(seconds=5), end=now)
    assert poll(d, instance, "okta").success
    tick_at(d, instance, cursor, datetime.now(UTC) + timedelta(minutes=1), monkeypatch)
    assert resolved(stub) == ["freshness-fail|okta"]
    assert opened(stub) == ["freshness-fail|okta"]


def test_a_webhook_source_whose_deliveries_are_all_refused_pages_about_its_secret(
    alerting: dg.Definitions, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub signs with a secret the receiver does not hold: every delivery gets 401,
    the buffer stays empty, and the heartbeat drains succeed with nothing to land."""
    d, instance = alerting, dg.DagsterInstance.ephemeral()
    t0 = datetime.now(UTC)
    drain = d.resolve_job_def("github_drain").execute_in_process(
        partition_key=t0.strftime("%Y-%m-%d-%H:00"),
        tags={"lip/source": "github", "lip/trigger": "heartbeat"},
        instance=instance,
    )
    assert drain.success
    cursor = tick_at(d, instance, None, t0 + timedelta(minutes=59), monkeypatch)
    assert stub.received == []
    tick_at(d, instance, cursor, t0 + timedelta(hours=3), monkeypatch)
    assert opened(stub) == ["freshness-fail|github"]
    message = notice(stub, "freshness-fail|github")["message"]
    assert "github: no event has ever landed for github since its first run at " in message
    assert "check the webhook secret on both sides" in message
    assert "`webhook github: 401 <reason>`" in message


@pytest.fixture
def instance_with_schedules() -> Iterator[dg.DagsterInstance]:
    """An instance that keeps schedule and sensor state, as a deployment's does."""
    with dg.instance_for_test() as instance:
        yield instance


def switch(
    instance: dg.DagsterInstance, name: str, state: InstigatorStatus, started: datetime
) -> None:
    """Record a schedule or sensor of the deployment as Dagster does when it is started
    (from the UI, or by the daemon for one running by default in code)."""
    origin = RemoteInstigatorOrigin(
        RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("lip"), "__repository__"), name
    )
    if "_every_" in name:
        kind, data = (
            InstigatorType.SCHEDULE,
            ScheduleInstigatorData("*/5 * * * *", started.timestamp()),
        )
    else:
        kind, data = (
            InstigatorType.SENSOR,
            SensorInstigatorData(last_sensor_start_timestamp=started.timestamp()),
        )
    instance.add_instigator_state(InstigatorState(origin, kind, state, data))


def test_a_source_switched_on_without_a_run_pages_and_one_switched_off_does_not(
    alerting: dg.Definitions,
    instance_with_schedules: dg.DagsterInstance,
    stub: Stub,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An S3 source reading a prefix nothing is written to launches no run at all: its
    sensor running is what shows it is on."""
    d, instance = alerting, instance_with_schedules
    t0 = datetime.now(UTC)
    running = InstigatorStatus.RUNNING
    switch(instance, "cloudtrail_arrivals", running, t0 - timedelta(hours=2))
    switch(instance, "slack_every_5m", running, t0 - timedelta(hours=3))
    # started within the fail window: not yet
    switch(instance, "github_audit_stream_arrivals", running, t0 - timedelta(minutes=50))
    # switched off: no page, however long ago it was on
    switch(instance, "cloudflare_arrivals", InstigatorStatus.STOPPED, t0 - timedelta(days=30))
    # running by default in an older version of the code, off by default now
    switch(instance, "jamf_arrivals", InstigatorStatus.DECLARED_IN_CODE, t0 - timedelta(days=30))

    cursor = tick_at(d, instance, None, t0, monkeypatch)
    assert sorted(opened(stub)) == ["freshness-fail|cloudtrail", "freshness-fail|slack"]
    message = notice(stub, "freshness-fail|cloudtrail")["message"]
    started = (t0 - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M UTC")
    assert (
        f"cloudtrail: no event has ever landed for cloudtrail since its sensor "
        f"cloudtrail_arrivals started at {started} (2 h 0 min ago"
    ) in message
    assert "check the bucket and prefix it reads" in message
    assert (
        "its schedule slack_every_5m started at " in notice(stub, "freshness-fail|slack")["message"]
    )
    code, rows = status_rows(d, instance, monkeypatch, capsys, t0)
    assert code == 2
    assert {s for s, r in rows.items() if r["freshness"] == "fail"} == {"cloudtrail", "slack"}

    # the prefix is fixed: the first object lands, and only that page resolves
    materialize(instance, t0 + timedelta(minutes=1), 3, newest=t0, asset="cloudtrail")
    tick_at(d, instance, cursor, t0 + timedelta(minutes=2), monkeypatch)
    assert resolved(stub) == ["freshness-fail|cloudtrail"]


def test_a_first_read_of_a_long_history_does_not_call_a_landed_source_never_landed(
    alerting: dg.Definitions, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Until the sensor's first read reaches a source's landing, it does not know the
    source ever landed, so it says nothing rather than "never landed"."""
    monkeypatch.setattr(health, "SCAN_PAGE", 10)
    monkeypatch.setattr(alert_sensor, "SCAN_BUDGET", 30)
    d, instance = alerting, dg.DagsterInstance.ephemeral()
    t0 = datetime.now(UTC).replace(microsecond=0)
    with freeze_time(t0):
        for source in ("okta", "slack"):
            create_run_for_test(
                instance,
                f"{source}_poll",
                tags={"lip/source": source},
                status=dg.DagsterRunStatus.SUCCESS,
            )
    materialize(instance, t0, 40, newest=t0 - timedelta(seconds=30))  # okta lands, once
    for i in range(1, 101):  # then polls green and empty
        materialize(instance, t0 + timedelta(minutes=i), 0)

    cursor = tick_at(d, instance, None, t0 + timedelta(minutes=181), monkeypatch)
    assert opened(stub) == ["freshness-fail|slack"]  # okta: still reading
    for minute in range(182, 190):
        cursor = tick_at(d, instance, cursor, t0 + timedelta(minutes=minute), monkeypatch)
    assert opened(stub) == ["freshness-fail|slack", "freshness-fail|okta"]
    assert "since its first run at" in notice(stub, "freshness-fail|slack")["message"]
    assert "okta: nothing new has landed for 3 h " in notice(stub, "freshness-fail|okta")["message"]
