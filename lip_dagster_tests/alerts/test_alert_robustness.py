"""Alerting must survive its own cursor, and a content-check incident must stay open
while any hour it found broken is still broken, however many there are and whichever
hour the run was launched for."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import orjson
import pytest

from lip_dagster.alerts.sensor import build_alert_sensor
from lip_dagster.components.checks import source_checks
from lip_dagster.components.common import hourly_partitions
from lip_dagster.definitions import defs
from lip_dagster.resources import Backend, backend_from_env
from lip_dagster_tests.alerts.conftest import (
    Stub,
    lip_status_exit_code,
    opened,
    resolved,
    route_alerts_to,
    tick,
)
from lip_dagster_tests.alerts.test_check_incidents import evaluate
from lip_dagster_tests.conftest import lip_home  # noqa: F401
from lip_dagster_tests.sam.conftest import OKTA_IDENTITY, okta_events

CHECK = "check|okta:lake_content"

DAMAGED = {
    "not_an_object": ["x"],
    "after_as_text": {"after": "12"},
    "failing_null": {"after": 0, "checks": {"lake_content": {"after": 1, "failing": None}}},
    "checks_list": {"after": 0, "checks": []},
    "scan_garbage": {"scan": "not-a-cursor", "scan_top": 5},
    "old_shape_seen_null": {"after": 0, "checks": {"lake_content": {"failing": [], "seen": None}}},
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_damaged_source_memory_still_pages(
    lip_home,  # noqa: F811
    stub: Stub,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    """A memory the sensor cannot use is read again from storage: the tick succeeds
    and a failing check still pages."""
    route_alerts_to(stub, monkeypatch)
    d, instance = defs(), dg.DagsterInstance.ephemeral()
    evaluate(instance, "lake_content", "2026-03-01-09:00", passed=False)
    cursor = orjson.dumps(
        {"open": {}, "outbox": [], "dropped": 0, "memory": {"okta": DAMAGED[case]}}
    ).decode()
    tick(d, instance, cursor)
    assert CHECK in opened(stub)


def test_damaged_incidents_and_outbox_are_dropped_not_raised(
    lip_home,  # noqa: F811
    stub: Stub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    route_alerts_to(stub, monkeypatch)
    d, instance = defs(), dg.DagsterInstance.ephemeral()
    evaluate(instance, "lake_content", "2026-03-01-09:00", passed=False)
    cursor = orjson.dumps(
        {
            "open": {"run|okta": None, "x": {"message": 3}},
            "outbox": [{"event": "open"}, {"nonsense": 1}, "text"],
            "dropped": "many",
            "memory": [],
        }
    ).decode()
    tick(d, instance, cursor)
    tick(d, instance, "{not json")
    assert opened(stub).count(CHECK) == 2


PARTITIONS = hourly_partitions("2026-03-01-00:00")
LAUNCHED, OTHER = "2026-03-01-10:00", "2026-03-01-09:00"
BAD = (
    "source=okta/year=2026/month=03/day=01/hour=09/"
    "20260301T095900Z_00000000-0000-5000-8000-00000000000d.ndjson.gz"
)
MODE = {"boundary": True}


@dg.asset(name="okta", partitions_def=PARTITIONS, tags={"lip/pattern": "polling"})
def okta(context: dg.AssetExecutionContext, lip: dg.ResourceParam[Backend]) -> None:
    """The first poll of 10:00 also lands the tail of 09:00, with a broken object."""
    w = lip.writer()
    boundary = MODE["boundary"]
    try:
        at = datetime(2026, 3, 1, 10, 0 if boundary else 5, tzinfo=UTC)
        evs = okta_events(4, at, seed=1 if boundary else 2)
        if boundary:
            evs += okta_events(3, datetime(2026, 3, 1, 9, 55, tzinfo=UTC), seed=3)
        w.write("okta", evs, OKTA_IDENTITY, "polling")
    finally:
        w.close()
    if boundary:
        lip.lake.put(BAD, b"not gzip at all")
        context.log_event(dg.AssetMaterialization(asset_key="okta", partition=OTHER))


def test_failure_in_another_hour_stays_open_until_that_hour_is_clean(
    lip_home,  # noqa: F811
    stub: Stub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The page names the broken hour, the next clean poll of the launched hour does
    not resolve it, and ``lip status`` agrees."""
    route_alerts_to(stub, monkeypatch)
    d = dg.Definitions(
        assets=[okta],
        asset_checks=source_checks("okta", okta.key, PARTITIONS),
        sensors=[build_alert_sensor()],
        resources={"lip": backend_from_env()},
    )
    instance = dg.DagsterInstance.ephemeral()
    job = d.resolve_implicit_global_asset_job_def()
    MODE["boundary"] = True
    job.execute_in_process(partition_key=LAUNCHED, instance=instance, raise_on_error=False)
    cursor = tick(d, instance, None).cursor
    page = next(b for _, b in stub.received if b["incident"] == CHECK)
    assert OTHER in page["message"] and LAUNCHED not in page["message"]
    MODE["boundary"] = False
    for _ in range(2):
        job.execute_in_process(partition_key=LAUNCHED, instance=instance, raise_on_error=False)
        cursor = tick(d, instance, cursor).cursor
    assert CHECK not in resolved(stub)
    assert opened(stub).count(CHECK) == 1
    assert lip_status_exit_code(d, instance, monkeypatch) == 2


def _hours(n: int) -> list[str]:
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return [(base - timedelta(hours=1 + i)).strftime("%Y-%m-%d-%H:00") for i in range(n)][::-1]


@pytest.mark.parametrize("n_fail", [60, 250])
def test_many_failing_hours_keep_the_incident_open(
    lip_home,  # noqa: F811
    stub: Stub,
    monkeypatch: pytest.MonkeyPatch,
    n_fail: int,
) -> None:
    """Repairing the hours the page lists does not resolve it while others fail; it
    resolves once every hour passes."""
    route_alerts_to(stub, monkeypatch)
    d, instance = defs(), dg.DagsterInstance.ephemeral()
    cursor = tick(d, instance, None).cursor
    bad = _hours(n_fail)
    for h in bad:
        evaluate(instance, "lake_content", h, passed=False)
    cursor = tick(d, instance, cursor).cursor
    listed = orjson.loads(cursor)["memory"]["okta"]["checks"]["lake_content"]["failing"]
    page = next(b for _, b in stub.received if b["incident"] == CHECK)
    assert f"and {n_fail - 5} more" in page["message"]
    for h in listed:
        evaluate(instance, "lake_content", h, passed=True)
    cursor = tick(d, instance, cursor).cursor
    still = [h for h in bad if h not in listed]
    if still:  # more than the memory lists: the count keeps the incident open
        assert CHECK not in resolved(stub)
        assert lip_status_exit_code(d, instance, monkeypatch) == 2
    for h in still:
        evaluate(instance, "lake_content", h, passed=True)
    for _ in range(2):
        cursor = tick(d, instance, cursor).cursor
    assert CHECK in resolved(stub)
    assert lip_status_exit_code(d, instance, monkeypatch) == 0
