"""Asset checks every source gets, whatever its pattern."""

import dagster as dg

from lip_dagster.resources import Backend
from lip_dagster.sam.content import verify_partition


def content_check(
    source: str, asset_key: dg.AssetKey, partitions_def: dg.PartitionsDefinition
) -> dg.AssetChecksDefinition:
    """Blocking: a partition whose objects the SAM cannot parse must not look done."""

    @dg.asset_check(
        asset=asset_key,
        name="lake_content",
        blocking=True,
        partitions_def=partitions_def,
        description="objects match the layout, are gzip, every line is JSON with _lip, "
        "no id repeats",
    )
    def _check(
        context: dg.AssetCheckExecutionContext, lip: dg.ResourceParam[Backend]
    ) -> dg.AssetCheckResult:
        partition = context.partition_key
        rep = verify_partition(lip.lake, source, partition)
        return dg.AssetCheckResult(
            passed=rep.ok,
            severity=dg.AssetCheckSeverity.ERROR,
            description=None if rep.ok else rep.problems[0],
            metadata={
                "partition": partition,
                "objects": rep.objects,
                "events": rep.events,
                "problems": dg.MetadataValue.json(rep.problems),
            },
        )

    return _check
