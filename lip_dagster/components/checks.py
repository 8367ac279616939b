"""Asset checks every source gets, whatever its pattern: the SAM contract
(DESIGN §6), one named check per requirement.

``source_checks`` is what a component calls. It returns two definitions that run
after each materialization of a partition:

- ``<source>_sam_content``: ``lake_content`` and ``sam_object_encryption``, both
  blocking, from one pass over the partition's objects;
- ``<source>_sam_resources``: the checks on the source's AWS resources, the
  dead-letter queue and quarantine. Those the SAM cannot read past (key not
  Enabled, no decrypt grant, no read grant) are blocking; on the embedded backend
  the AWS ones report that they do not apply.

Settings are read when a check runs, not at import, so a deployment value that is
missing fails that check (saying which variable) instead of the whole code location.
"""

from collections.abc import Callable, Collection, Iterator
from dataclasses import replace
from typing import Any

import dagster as dg

from lip_dagster.components.common import SOURCE_TAG
from lip_dagster.errors import ConfigError
from lip_dagster.lake.backends import LakeBackend
from lip_dagster.resources import Backend
from lip_dagster.sam.checks import (
    CONTENT_CHECKS,
    RESOURCE_CHECKS,
    CheckOutcome,
    CheckSpec,
    content_outcomes,
    resource_outcomes,
)

__all__ = ["check_result", "combined", "content_check", "partitions_written", "source_checks"]


def _metadata(outcome: CheckOutcome) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "applies": outcome.applies,
        "what_is_wrong": "" if outcome.passed else outcome.summary,
        "fix": outcome.fix or "",
    }
    for key, value in outcome.metadata.items():
        meta[key] = dg.MetadataValue.json(value) if isinstance(value, list | dict) else value
    return meta


def check_result(
    outcome: CheckOutcome, asset_key: dg.AssetKey | None = None
) -> dg.AssetCheckResult:
    """A check outcome as Dagster shows it: failures at ERROR severity, with what is
    wrong and the fix in both the description and the metadata."""
    description = outcome.summary if outcome.passed else f"{outcome.summary}. Fix: {outcome.fix}"
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=outcome.name if asset_key is not None else None,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata=_metadata(outcome),
    )


def _specs(
    checks: tuple[CheckSpec, ...],
    asset_key: dg.AssetKey,
    partitions_def: dg.PartitionsDefinition,
) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            c.name,
            asset=asset_key,
            description=f"SAM contract §6.{c.item}: {c.description}",
            blocking=c.blocking,
            partitions_def=partitions_def,
            metadata={"sam_requirement": c.item},
        )
        for c in checks
    ]


def source_checks(
    source: str,
    asset_key: dg.AssetKey,
    partitions_def: dg.PartitionsDefinition,
    pattern: str = "polling",
    skip: Collection[str] = (),
    lake: Callable[[Backend], LakeBackend] | None = None,
) -> list[dg.AssetChecksDefinition]:
    """Every SAM check of one source's asset. ``pattern`` (polling, webhook or s3)
    decides whether the dead-letter queue is checked; ``skip`` names checks a
    component already has its own version of (e.g. a webhook source's dead-letter
    check that names its replay job); ``lake`` gives where the content checks read
    the source's objects when LIP does not write them (a lake-layout producer)."""
    unknown = set(skip) - {c.name for c in CONTENT_CHECKS + RESOURCE_CHECKS}
    if unknown:
        raise ConfigError(f"source {source!r}: no SAM check named {', '.join(sorted(unknown))}")
    content = tuple(c for c in CONTENT_CHECKS if c.name not in skip)
    resources = tuple(c for c in RESOURCE_CHECKS if c.name not in skip)
    defs: list[dg.AssetChecksDefinition] = []

    if content:

        @dg.multi_asset_check(
            name=f"{source}_sam_content",
            specs=_specs(content, asset_key, partitions_def),
            description="every partition this run materialized, as the SAM will read it",
        )
        def _content(
            context: dg.AssetCheckExecutionContext, lip: dg.ResourceParam[Backend]
        ) -> Iterator[dg.AssetCheckResult]:
            wanted = {c.name for c in content}
            encryption = "sam_object_encryption" in wanted
            found: dict[str, list[tuple[str, CheckOutcome]]] = {}
            where = lake(lip) if lake is not None else None
            for partition in partitions_written(context, asset_key):
                outcomes = content_outcomes(
                    lip, source, partition, encryption=encryption, lake=where
                )
                for outcome in outcomes:
                    if outcome.name in wanted:
                        found.setdefault(outcome.name, []).append((partition, outcome))
            for outcomes in found.values():
                yield check_result(combined(outcomes), asset_key)

        defs.append(_content)

    if resources:

        @dg.multi_asset_check(
            name=f"{source}_sam_resources",
            specs=_specs(resources, asset_key, partitions_def),
            description="the source's AWS resources as the SAM needs them",
        )
        def _resources(lip: dg.ResourceParam[Backend]) -> Iterator[dg.AssetCheckResult]:
            wanted = {c.name for c in resources}
            for outcome in resource_outcomes(lip, source, pattern, only=wanted):
                yield check_result(outcome, asset_key)

        defs.append(_resources)
    return defs


FAILED_RUNS_LOOKED_AT = 20
"""How many of the source's latest runs ``partitions_written`` looks through for
failed ones: more failures in a row than that are already paging."""


_ENDED_UNCHECKED = frozenset({dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED})
"""Run ends after which a run's check steps may not have run."""


def _materialized_by(instance: dg.DagsterInstance, run_id: str, asset_key: dg.AssetKey) -> set[str]:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    return {
        m.partition
        for r in records
        if (m := r.event_log_entry.asset_materialization) is not None
        and m.asset_key == asset_key
        and m.partition
    }


def _left_unchecked(context: dg.AssetCheckExecutionContext, asset_key: dg.AssetKey) -> set[str]:
    """Hours the source's runs landed before they failed, since its last success. A
    run that fails after landing pages records those hours (its cursor is past them,
    no later run writes them again), but Dagster does not run a check step whose asset
    step failed: without this, nothing would ever check them. A run terminated from
    the UI (or whose task was stopped) records its hours the same way, and Dagster
    ends it as canceled, not failed."""
    source = context.run.tags.get(SOURCE_TAG)
    if not source:
        return set()
    hours: set[str] = set()
    runs = context.instance.get_run_records(
        dg.RunsFilter(tags={SOURCE_TAG: source}), limit=FAILED_RUNS_LOOKED_AT
    )
    for rec in runs:  # newest first
        run = rec.dagster_run
        if run.run_id == context.run.run_id:
            continue
        if run.status == dg.DagsterRunStatus.SUCCESS:
            break
        if run.status in _ENDED_UNCHECKED:
            hours |= _materialized_by(context.instance, run.run_id, asset_key)
    return hours


def partitions_written(context: dg.AssetCheckExecutionContext, asset_key: dg.AssetKey) -> list[str]:
    """Every hour this run materialized, the run's own partition first, then the
    hours failed runs of the source landed since its last success. A run lands more
    than the hour it was launched for (the hour before, at every hour boundary;
    CloudTrail files minutes late; a drain's backlog), and the SAM reads all of
    them: checking only the launched hour left the others unchecked."""
    own = context.partition_key
    written = _materialized_by(context.instance, context.run.run_id, asset_key)
    written |= _left_unchecked(context, asset_key)
    return [own, *sorted(written - {own})]


def combined(checked: list[tuple[str, CheckOutcome]]) -> CheckOutcome:
    """One check's outcomes over several partitions (each with the partition it
    checked) as one result (a check reports once per run): the first failure, naming
    every failing partition, or the run's own partition's pass with the others
    counted. The partitions come from the caller, not from each outcome's metadata:
    an outcome about something other than the objects (the source's KMS key missing)
    names no partition, and an hour recorded as "" never passes again, so its
    incident would never resolve."""
    partitions = [p for p, _ in checked]
    outcomes = [o for _, o in checked]
    failing = [o for o in outcomes if not o.passed]
    first = failing[0] if failing else outcomes[0]
    if len(outcomes) == 1:
        return first
    meta = {**first.metadata, "partitions_checked": partitions}
    if not failing:
        summary = (
            f"{first.summary} (and {len(outcomes) - 1} more partitions written by this "
            "run or by failed runs before it)"
        )
        return replace(first, summary=summary, metadata=meta)
    bad = [p for p, o in zip(partitions, outcomes, strict=True) if not o.passed]
    meta["failing_partitions"] = bad
    return replace(first, summary=f"{first.summary} [failing: {', '.join(bad)}]", metadata=meta)


def content_check(
    source: str, asset_key: dg.AssetKey, partitions_def: dg.PartitionsDefinition
) -> dg.AssetChecksDefinition:
    """Only the blocking ``lake_content`` check (kept for components that do not use
    ``source_checks`` yet): a partition whose objects the SAM cannot parse must not
    look done."""

    @dg.asset_check(
        asset=asset_key,
        name="lake_content",
        blocking=True,
        partitions_def=partitions_def,
        description="objects match the layout, are gzip, every line is JSON with a valid "
        "_lip, no id repeats",
    )
    def _check(
        context: dg.AssetCheckExecutionContext, lip: dg.ResourceParam[Backend]
    ) -> dg.AssetCheckResult:
        checked = [
            (partition, content_outcomes(lip, source, partition, encryption=False)[0])
            for partition in partitions_written(context, asset_key)
        ]
        return check_result(combined(checked))

    return _check
