"""The SAM checks as Dagster asset checks (``components.checks.source_checks``):
evaluated after each partition is materialized, failures at ERROR severity with what
is wrong and the fix in their metadata, blocking where the SAM cannot read what
lands; on the embedded backend the AWS checks report that they do not apply.

No ``from __future__ import annotations`` here: Dagster inspects the ``context``
annotation of asset functions at definition time."""

import gzip
from datetime import UTC, datetime

import dagster as dg
import pytest

from lip_dagster.components.checks import content_check, source_checks
from lip_dagster.components.common import hourly_partitions
from lip_dagster.errors import ConfigError
from lip_dagster.resources import Backend, EmbeddedBackend, backend_from_env
from lip_dagster.sam.checks import CHECKS
from lip_dagster_tests.sam.conftest import OKTA_IDENTITY, PARTITION, Stack, okta_events

PARTITIONS = hourly_partitions("2026-03-01-00:00")


def okta_asset(bad_object: bool = False, broken_hour_before: bool = False) -> dg.AssetsDefinition:
    """Lands four events at 10:00. ``bad_object``: plus an object without envelopes in
    10:00. ``broken_hour_before``: plus three events at 09:55 and an object that is not
    gzip in 09:00, an hour the run reports as materialized too."""

    @dg.asset(name="okta", partitions_def=PARTITIONS, tags={"lip/pattern": "polling"})
    def _asset(context: dg.AssetExecutionContext, lip: dg.ResourceParam[Backend]) -> None:
        events = okta_events(4, datetime(2026, 3, 1, 10, 0, tzinfo=UTC))
        if broken_hour_before:
            events += okta_events(3, datetime(2026, 3, 1, 9, 55, tzinfo=UTC))
        writer = lip.writer()
        try:
            writer.write("okta", events, OKTA_IDENTITY, "polling")
        finally:
            writer.close()
        if bad_object:
            lip.lake.put(
                "source=okta/year=2026/month=03/day=01/hour=10/"
                "20260301T100000Z_00000000-0000-5000-8000-00000000000b.ndjson.gz",
                gzip.compress(b'{"no": "envelope"}\n'),
            )
        if broken_hour_before:
            lip.lake.put(
                "source=okta/year=2026/month=03/day=01/hour=09/"
                "20260301T095900Z_00000000-0000-5000-8000-00000000000d.ndjson.gz",
                b"not gzip at all",
            )
            context.log_event(
                dg.AssetMaterialization(asset_key="okta", partition="2026-03-01-09:00")
            )

    return _asset


def materialize(backend: Backend, bad_object: bool = False) -> dg.ExecuteInProcessResult:
    asset = okta_asset(bad_object)
    return dg.materialize(
        [asset, *source_checks("okta", asset.key, PARTITIONS)],
        partition_key=PARTITION,
        resources={"lip": backend},
        raise_on_error=False,
    )


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_every_check_is_declared_with_its_blocking_flag(lip_home: object) -> None:
    asset = okta_asset()
    defs = dg.Definitions(
        assets=[asset],
        asset_checks=source_checks("okta", asset.key, PARTITIONS, "webhook"),
        resources={"lip": backend_from_env()},
    )
    dg.Definitions.validate_loadable(defs)
    specs = {
        key.name: spec
        for checks in source_checks("okta", asset.key, PARTITIONS)
        for key, spec in ((s.key, s) for s in checks.check_specs)
    }
    assert {name: s.blocking for name, s in specs.items()} == {c.name: c.blocking for c in CHECKS}
    assert specs["sam_kms_key_state"].blocking and specs["sam_kms_key_policy"].blocking
    # LIP's own use of the key: a failure says why writes will fail, it stops no run
    assert not specs["lip_kms_key_use"].blocking
    assert not specs["sam_kms_key_rotation"].blocking


def test_checks_a_component_provides_itself_can_be_left_out(lip_home: object) -> None:
    asset = okta_asset()
    checks = source_checks(
        "okta", asset.key, PARTITIONS, "webhook", skip=("sam_dead_letters", "sam_quarantine")
    )
    names = {s.key.name for c in checks for s in c.check_specs}
    assert names == {c.name for c in CHECKS} - {"sam_dead_letters", "sam_quarantine"}
    result = dg.materialize(
        [asset, *checks],
        partition_key=PARTITION,
        resources={"lip": backend_from_env()},
        raise_on_error=False,
    )
    assert result.success and set(evaluations(result)) == names
    with pytest.raises(ConfigError, match="no SAM check named dlq"):
        source_checks("okta", asset.key, PARTITIONS, skip=("dlq",))


def test_embedded_backend_runs_content_checks_and_skips_aws_ones(lip_home: object) -> None:
    result = materialize(EmbeddedBackend(backend_from_env().settings))
    assert result.success
    evs = evaluations(result)
    assert set(evs) == {c.name for c in CHECKS}
    assert all(e.passed for e in evs.values())
    assert evs["lake_content"].metadata["events"].value == 4
    assert evs["lake_content"].metadata["applies"].value is True
    for name in ("sam_kms_key_state", "sam_bucket_read_grant", "sam_object_encryption"):
        assert evs[name].metadata["applies"].value is False
        assert "does not apply" in (evs[name].description or "")


def test_a_bad_object_fails_the_blocking_content_check_and_the_run(lip_home: object) -> None:
    result = materialize(backend_from_env(), bad_object=True)
    assert not result.success
    ev = evaluations(result)["lake_content"]
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR
    assert "missing the _lip envelope" in ev.metadata["what_is_wrong"].value
    assert "re-run the partition" in ev.metadata["fix"].value


def test_on_aws_a_key_pending_deletion_blocks_with_the_fix_in_metadata(stack: Stack) -> None:
    stack.deployment.client("kms").schedule_key_deletion(
        KeyId=stack.deployment.key_id(), PendingWindowInDays=7
    )
    result = materialize(stack.deployment.backend())
    assert not result.success  # blocking: the SAM could not read what landed
    evs = evaluations(result)
    failed = {name for name, e in evs.items() if not e.passed}
    assert failed == {"sam_kms_key_state"}
    ev = evs["sam_kms_key_state"]
    assert ev.severity == dg.AssetCheckSeverity.ERROR
    assert "PendingDeletion" in ev.metadata["what_is_wrong"].value
    assert "cancel-key-deletion" in ev.metadata["fix"].value
    assert evs["sam_object_encryption"].passed


def test_on_aws_a_non_blocking_failure_is_reported_but_the_run_succeeds(stack: Stack) -> None:
    stack.deployment.client("kms").disable_key_rotation(KeyId=stack.deployment.key_id())
    result = materialize(stack.deployment.backend())
    assert result.success
    evs = evaluations(result)
    assert {name for name, e in evs.items() if not e.passed} == {"sam_kms_key_rotation"}
    assert evs["sam_kms_key_rotation"].metadata["applies"].value is True


def test_content_checks_cover_every_hour_the_run_wrote(lip_home: object) -> None:
    """A run launched for 10:00 also lands the hour before (events arriving late
    at the hour boundary): a broken object there fails the run's content check,
    naming that hour, though the launched hour is clean."""
    backend = backend_from_env()
    asset = okta_asset(broken_hour_before=True)
    result = dg.materialize(
        [asset, *source_checks("okta", asset.key, PARTITIONS)],
        partition_key=PARTITION,
        resources={"lip": backend},
        raise_on_error=False,
    )
    ev = evaluations(result)["lake_content"]
    assert not ev.passed
    assert ev.metadata["failing_partitions"].value == ["2026-03-01-09:00"]
    assert ev.metadata["partitions_checked"].value == [PARTITION, "2026-03-01-09:00"]
    assert "not valid gzip" in (ev.description or "")


def test_a_failure_about_no_object_names_the_hours_it_failed() -> None:
    """The encryption check fails without looking at objects when the source's KMS key
    is gone; its result names no partition. The hours must still be named: an hour
    recorded as "" never passes again, and its page would never resolve."""
    from lip_dagster.components.checks import combined
    from lip_dagster.sam.checks import CheckOutcome

    gone = CheckOutcome(
        "sam_object_encryption", "okta", False, "KMS key alias/lip-okta does not exist", "fix"
    )
    result = combined([(PARTITION, gone), ("2026-03-01-09:00", gone)])
    assert result.metadata["failing_partitions"] == [PARTITION, "2026-03-01-09:00"]
    assert result.metadata["partitions_checked"] == [PARTITION, "2026-03-01-09:00"]


@pytest.mark.parametrize("gz", [True, False])
def test_content_check_alone_still_works(lip_home: object, gz: bool) -> None:
    backend = backend_from_env()
    key = (
        "source=okta/year=2026/month=03/day=01/hour=10/"
        "20260301T100000Z_00000000-0000-5000-8000-00000000000c.ndjson.gz"
    )
    line = b'{"a": 1}\n'
    backend.lake.put(key, gzip.compress(line) if gz else line)
    asset = okta_asset()
    result = dg.materialize(
        [asset, content_check("okta", asset.key, PARTITIONS)],
        partition_key=PARTITION,
        resources={"lip": backend},
        raise_on_error=False,
    )
    ev = evaluations(result)["lake_content"]
    assert not ev.passed
    problem = "missing the _lip envelope" if gz else "not valid gzip"
    assert problem in (ev.description or "")
