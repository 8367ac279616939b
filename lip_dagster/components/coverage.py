"""Coverage: for each hour, whether the source's data for it is complete, so a gap in
the middle of a week is as visible as a stale head.

For a polling source an hour is complete once every endpoint's cursor high-water mark
has passed the hour's end. The poller commits that mark only as far as the vendor has
given everything: the newest event landed (or the time of the request, once caught
up) for oldest-first vendors; for newest-first ones (Slack, Google) the end of a fully
paged window minus the overlap the next window re-reads, since the vendor may still
publish events that old, never a window's first pages; and never later than the
request. A gap is an hour inside the look-back that no run ever materialized:
collection did not run then and no event of that hour landed later.

The head is stale when collection itself has stopped: the mark plus the overlap it
trails by design (the time of the last fully paged request) is older than the
freshness window. Without that allowance a source whose overlap is as long as its
freshness window (Google's token activity: two hours) would be stale on every poll.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import dagster as dg

from lip_dagster.lake.envelope import parse_timestamp
from lip_dagster.lake.layout import hour_of, partition_start
from lip_dagster.polling.window import cursor_overlap
from lip_dagster.resources import Backend

LOOKBACK = timedelta(days=7)


def _marks(
    lip: Backend, source: str, cursor_keys: Sequence[str]
) -> list[tuple[datetime, datetime]] | None:
    """Each endpoint's high-water mark, and how far its collection has got: the mark
    plus the overlap it trails its last request by, no later than the last commit
    (None: an endpoint has never been collected)."""
    marks = []
    for key in cursor_keys:
        rec = lip.cursors.get(source, key)
        hw = parse_timestamp(rec.high_water) if rec and rec.high_water else None
        if hw is None or rec is None:
            return None
        front = hw + timedelta(seconds=cursor_overlap(rec.value))
        if rec.updated_at > 0:
            front = max(hw, min(front, datetime.fromtimestamp(rec.updated_at, UTC)))
        marks.append((hw, front))
    return marks


def polling_head(lip: Backend, source: str, cursor_keys: Sequence[str]) -> datetime | None:
    """The oldest high-water mark across the source's endpoints (None: an endpoint
    has never been collected)."""
    marks = _marks(lip, source, cursor_keys)
    return min(hw for hw, _ in marks) if marks else None


def hour_coverage(hour: str, head: datetime | None) -> str:
    """``complete`` once the head has passed the hour's end, else ``open``."""
    if head is None:
        return "open"
    return "complete" if partition_start(hour) + timedelta(hours=1) <= head else "open"


def gap_ranges(hours: list[str]) -> list[str]:
    """Consecutive missing hours folded into ``first..last`` ranges."""
    out: list[str] = []
    start = prev = None
    for h in hours:
        t = partition_start(h)
        if prev is not None and t - prev == timedelta(hours=1):
            prev = t
            continue
        if start is not None:
            out.append(_range(start, prev))
        start = prev = t
    if start is not None:
        out.append(_range(start, prev))
    return out


def _range(a: datetime, b: datetime | None) -> str:
    return hour_of(a) if b is None or a == b else f"{hour_of(a)}..{hour_of(b)}"


def coverage_check(
    source: str,
    asset_key: dg.AssetKey,
    partitions_def: dg.HourlyPartitionsDefinition,
    cursor_keys: Sequence[str],
    fail_window: timedelta,
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset_key,
        name="coverage",
        partitions_def=partitions_def,
        description="every hour of the last 7 days collected; the head within the freshness window",
    )
    def _check(
        context: dg.AssetCheckExecutionContext, lip: dg.ResourceParam[Backend]
    ) -> dg.AssetCheckResult:
        now = datetime.now(UTC)
        marks = _marks(lip, source, cursor_keys)
        head = min(hw for hw, _ in marks) if marks else None
        front = min(f for _, f in marks) if marks else None
        done = context.instance.get_materialized_partitions(asset_key)
        first_seen = min(done) if done else None
        window_start = max(
            hour_of(now - LOOKBACK),
            first_seen or hour_of(now),
            partitions_def.get_first_partition_key() or "",
        )
        expected = [
            k
            for k in partitions_def.get_partition_keys(current_time=now)
            if window_start <= k < hour_of(now)
        ]
        missing = [k for k in expected if k not in done]
        head_lag = (now - head).total_seconds() if head else None
        front_lag = (now - front).total_seconds() if front else None
        stale = front_lag is None or front_lag > fail_window.total_seconds()
        passed = not missing and not stale
        if missing:
            desc = (
                f"{len(missing)} hour(s) never collected: {', '.join(gap_ranges(missing)[:5])}; "
                f"backfill them (UI, or `lip run {source} --partition <hour>`)"
            )
        elif stale:
            desc = (
                "the cursor's high-water mark (plus the overlap it waits for) is older "
                "than the freshness window"
            )
        else:
            desc = f"complete up to {hour_of(head) if head else 'n/a'}"
        return dg.AssetCheckResult(
            passed=passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=desc,
            metadata={
                "head": head.isoformat() if head else "never collected",
                "head_lag_seconds": head_lag if head_lag is not None else -1.0,
                "collected_lag_seconds": front_lag if front_lag is not None else -1.0,
                "hours_checked": len(expected),
                "gaps": dg.MetadataValue.json(gap_ranges(missing)),
            },
        )

    return _check
