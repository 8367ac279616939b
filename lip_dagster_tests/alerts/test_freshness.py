"""Freshness is how long ago the source last landed data newer than anything it had
landed before. A dead source that keeps running green (one empty materialization per
poll) stays failing however long it stays dead, and a backfill of old hours does not
hide it; the sensor still reads only a bounded number of records per tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from lip_dagster.alerts import health
from lip_dagster.alerts import sensor as alert_sensor

from .conftest import Stub, lip_status_exit_code, materialize, opened, resolved, tick_at


def landed_now(instance: dg.DagsterInstance) -> datetime:
    """The source's one live landing (40 events) at t0; returns t0."""
    t0 = datetime.now(UTC).replace(microsecond=0)
    materialize(instance, t0, 40, newest=t0 - timedelta(seconds=30))
    return t0


def test_a_source_that_lands_nothing_for_a_day_keeps_its_page_open(
    alerting: dg.Definitions, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, instance = alerting, dg.DagsterInstance.ephemeral()
    t0 = landed_now(instance)
    cursor = tick_at(d, instance, None, t0 + timedelta(minutes=1), monkeypatch)
    # the landing step breaks: every 5-minute poll is green and materializes events=0
    for i in range(1, 301):  # 25 hours of polls
        at = t0 + timedelta(minutes=5 * i)
        materialize(instance, at, 0)
        if i % 12 == 0:  # the sensor ticks along
            cursor = tick_at(d, instance, cursor, at, monkeypatch)
    cursor = tick_at(d, instance, cursor, t0 + timedelta(hours=25), monkeypatch)

    assert opened(stub) == ["freshness-warn|okta", "freshness-fail|okta"]
    # warn gave way to fail at two hours; the fail page stays open while the source is dead
    assert resolved(stub) == ["freshness-warn|okta"]
    page = next(b for _, b in stub.received if b["incident"] == "freshness-fail|okta")
    assert "nothing new has landed for 2 h 0 min" in page["message"]
    assert lip_status_exit_code(d, instance, monkeypatch, t0 + timedelta(hours=25)) == 2


def test_a_backfill_of_old_hours_does_not_make_a_dead_source_fresh(
    alerting: dg.Definitions, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, instance = alerting, dg.DagsterInstance.ephemeral()
    t0 = landed_now(instance)
    # live collection dies; at minute 40 the on-call backfills a day of last week
    for h in range(24):
        materialize(
            instance, t0 + timedelta(minutes=40), 500, newest=t0 - timedelta(days=7, hours=h)
        )
    cursor = tick_at(d, instance, None, t0 + timedelta(minutes=45), monkeypatch)
    assert opened(stub) == ["freshness-warn|okta"]
    cursor = tick_at(d, instance, cursor, t0 + timedelta(minutes=61), monkeypatch)
    assert opened(stub) == ["freshness-warn|okta", "freshness-fail|okta"]
    assert lip_status_exit_code(d, instance, monkeypatch, t0 + timedelta(minutes=61)) == 2

    # live data again, one event stamped a day ahead by a vendor's clock: it counts at
    # its landing time, so later landings still count as new
    materialize(instance, t0 + timedelta(minutes=70), 3, newest=t0 + timedelta(days=1))
    cursor = tick_at(d, instance, cursor, t0 + timedelta(minutes=71), monkeypatch)
    assert sorted(resolved(stub)) == ["freshness-fail|okta", "freshness-warn|okta"]
    materialize(instance, t0 + timedelta(minutes=95), 5, newest=t0 + timedelta(minutes=94))
    cursor = tick_at(d, instance, cursor, t0 + timedelta(minutes=110), monkeypatch)
    assert len(opened(stub)) == 2  # 15 minutes after the last landing: fresh
    assert lip_status_exit_code(d, instance, monkeypatch, t0 + timedelta(minutes=110)) == 0


def test_each_tick_reads_a_bounded_number_of_records_and_forgets_no_landing(
    alerting: dg.Definitions, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "SCAN_PAGE", 10)
    monkeypatch.setattr(alert_sensor, "SCAN_BUDGET", 30)
    d, instance = alerting, dg.DagsterInstance.ephemeral()
    t0 = landed_now(instance)
    for i in range(1, 101):
        materialize(instance, t0 + timedelta(minutes=i), 0)
    read: list[int] = []
    real_fetch = dg.DagsterInstance.fetch_materializations

    def counting(self: dg.DagsterInstance, *a: object, **kw: object) -> dg.EventRecordsResult:
        result = real_fetch(self, *a, **kw)  # type: ignore[arg-type]
        read[-1] += len(result.records)
        return result

    monkeypatch.setattr(dg.DagsterInstance, "fetch_materializations", counting)
    cursor = None
    for minute in range(181, 190):  # the sensor starts three hours later, without a cursor
        read.append(0)
        cursor = tick_at(d, instance, cursor, t0 + timedelta(minutes=minute), monkeypatch)
    assert max(read) <= 30 + 10  # the budget, plus the page that crossed it
    assert opened(stub) == ["freshness-fail|okta"]  # once the first read reached the landing
    assert resolved(stub) == []
