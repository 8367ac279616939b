"""A failed check stays one open incident until the failure is gone. For a content
check (lake_content, sam_object_encryption) that means until the hour that failed
passes: a pass on the next hour does not fix a broken object in this one. A run that
fails before its checks ran (its check records stay PLANNED) changes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from lip_dagster.components.polling import PollingSource
from lip_dagster.definitions import defs
from lip_dagster.errors import VendorAuthError
from lip_dagster.simulator import VendorSimulator

from .conftest import Stub, lip_status_exit_code, opened, poll, resolved, route_alerts_to, tick


def evaluate(
    instance: dg.DagsterInstance,
    check: str,
    partition: str,
    passed: bool,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> None:
    """A check result on one hour of okta, as a run of its own reports it."""
    instance.report_dagster_event(
        dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.ASSET_CHECK_EVALUATION.value,
            event_specific_data=dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey("okta"),
                check_name=check,
                passed=passed,
                partition=partition,
                severity=severity,
            ),
            job_name="okta_poll",
        ),
        run_id=str(uuid.uuid4()),
    )


def test_a_failing_hour_stays_open_until_that_hour_passes(
    lip_home: Path, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    route_alerts_to(stub, monkeypatch)
    d, instance = defs(), dg.DagsterInstance.ephemeral()
    now = datetime.now(UTC)
    broken, current = (
        (now - timedelta(hours=1)).strftime("%Y-%m-%d-%H:00"),
        now.strftime("%Y-%m-%d-%H:00"),
    )
    evaluate(instance, "lake_content", broken, passed=False)
    evaluate(instance, "sam_kms_key_state", broken, passed=False)
    cursor = tick(d, instance, None).cursor
    assert opened(stub) == ["check|okta:lake_content", "check|okta:sam_kms_key_state"]

    # the next hour passes: the key is fixed (a source-wide check), the object is not
    evaluate(instance, "lake_content", current, passed=True)
    evaluate(instance, "sam_kms_key_state", current, passed=True)
    for _ in range(2):
        cursor = tick(d, instance, cursor).cursor
    assert resolved(stub) == ["check|okta:sam_kms_key_state"]
    assert lip_status_exit_code(d, instance, monkeypatch) == 2

    # the broken hour is repaired and run again: its own pass resolves the page
    evaluate(instance, "lake_content", broken, passed=True)
    tick(d, instance, cursor)
    assert resolved(stub) == ["check|okta:sam_kms_key_state", "check|okta:lake_content"]
    assert len(opened(stub)) == 2
    assert lip_status_exit_code(d, instance, monkeypatch) == 0
    page = next(b for _, b in stub.received if b["incident"] == "check|okta:lake_content")
    assert f"failed on {broken}" in page["message"]  # the page says which hour to repair


def test_a_check_dagster_shows_as_a_warning_pages_as_a_warning(
    lip_home: Path, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """coverage fails at WARN in Dagster (hours not yet read in full): its page is a
    warning, and `lip status` does not call the source failing for it alone."""
    route_alerts_to(stub, monkeypatch)
    d, instance = defs(), dg.DagsterInstance.ephemeral()
    hour = datetime.now(UTC).strftime("%Y-%m-%d-%H:00")
    evaluate(instance, "coverage", hour, passed=False, severity=dg.AssetCheckSeverity.WARN)
    tick(d, instance, None)
    page = next(b for _, b in stub.received if b["incident"] == "check|okta:coverage")
    assert page["severity"] == "warn"
    assert lip_status_exit_code(d, instance, monkeypatch) == 0
    evaluate(instance, "sam_kms_key_state", hour, passed=False)
    assert lip_status_exit_code(d, instance, monkeypatch) == 2


def test_a_run_that_fails_before_its_checks_neither_resolves_nor_repages(
    demo_world: VendorSimulator, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    route_alerts_to(stub, monkeypatch)
    d, instance = defs(), dg.DagsterInstance.ephemeral()
    lake = d.resources["lip"].lake
    # one hour throughout, with events of its own: the simulator's history ends when
    # it started, maybe in the hour before, and the hour may change during the test
    now = datetime.now(UTC)
    hour_start = now.replace(minute=0, second=0, microsecond=0)
    demo_world.add_events("slack", "logs", 5, start=hour_start, end=now + timedelta(microseconds=1))
    partition = now.strftime("%Y-%m-%d-%H:00")
    hour_path = now.strftime("year=%Y/month=%m/day=%d/hour=%H")
    assert poll(d, instance, "slack", partition).success
    bad = [k for k in lake.list_keys("slack") if hour_path in k]
    assert bad
    for key in bad:
        (lake.root / key).write_bytes(b"not gzip")
    assert not poll(d, instance, "slack", partition).success  # the blocking content check fails
    cursor = tick(d, instance, None).cursor
    assert "check|slack:lake_content" in opened(stub)

    def token_refused(self: PollingSource, *a: object, **kw: object) -> None:
        raise VendorAuthError("slack", "logs", 401, "invalid_auth")

    with monkeypatch.context() as m:
        m.setattr(PollingSource, "poll", token_refused)
        assert not poll(d, instance, "slack", partition).success  # fails before the checks ran
    cursor = tick(d, instance, cursor).cursor
    # the token is fixed, the object still bad
    assert not poll(d, instance, "slack", partition).success
    cursor = tick(d, instance, cursor).cursor
    assert opened(stub).count("check|slack:lake_content") == 1
    assert "check|slack:lake_content" not in resolved(stub)

    # the bad objects are removed and the hour is run again: the check passes, resolved
    for key in bad:
        (lake.root / key).unlink()
    assert poll(d, instance, "slack", partition).success
    tick(d, instance, cursor)
    assert resolved(stub).count("check|slack:lake_content") == 1
    assert opened(stub).count("check|slack:lake_content") == 1
