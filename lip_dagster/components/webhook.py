"""``WebhookSource``: one YAML block -> the receiver's route and verifier (read by
``lip webhook serve`` from the same block), an hourly-partitioned asset drained by a
job, the arrival sensor that requests drains, a replay job for the dead-letter
queue, the content and dead-letter checks, and a freshness policy."""

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from lip_dagster.components import common
from lip_dagster.components.checks import source_checks
from lip_dagster.errors import LipError
from lip_dagster.lake.layout import hour_of
from lip_dagster.resources import Backend
from lip_dagster.webhook.arrival import ArrivalState, Thresholds, decide
from lip_dagster.webhook.drain import (
    DrainConfig,
    Drainer,
    DrainReport,
    interrupted_report,
    replay,
)
from lip_dagster.webhook.spec import WebhookSourceSpec
from lip_dagster.webhook.vendors import build_extractor

ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
TRIGGER_TAG = common.TRIGGER_TAG


def drain_source(
    spec: WebhookSourceSpec, lip: Backend, *, depth_probe: Callable[[], int] | None = None
) -> DrainReport:
    """One drain of ``spec``'s buffer into the lake with this backend."""
    lip.ensure_source(spec.name)
    writer = lip.writer()
    try:
        drainer = Drainer(
            DrainConfig.from_spec(spec),
            buffer=lip.buffer,
            writer=writer,
            quarantine=lip.quarantine,
        )
        return drainer.run(depth_probe=depth_probe)
    finally:
        writer.close()


class WebhookSource(dg.Component, WebhookSourceSpec, dg.Resolvable):
    """A vendor that pushes events to ``POST /webhooks/<name>``."""

    def spec(self) -> WebhookSourceSpec:
        return WebhookSourceSpec.model_validate(self.model_dump())

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        spec = self.spec()
        name = spec.name
        build_extractor(spec)  # a vendor block that cannot work fails at load
        partitions = common.hourly_partitions(spec.start_date)
        tags = common.source_tags(name, "webhook")
        thresholds = Thresholds(
            flush_messages=spec.flush_messages,
            flush_age_seconds=spec.flush_age_seconds,
            heartbeat_seconds=spec.heartbeat_minutes * 60,
        )

        @dg.asset(
            name=name,
            group_name="webhook",
            partitions_def=partitions,
            freshness_policy=common.freshness(
                spec.freshness_fail_minutes, spec.freshness_warn_minutes
            ),
            retry_policy=common.retry_policy(spec.step_retries, spec.step_retry_delay_seconds),
            pool=f"lip-source-{name}",
            kinds={"webhook", spec.vendor},
            tags={"lip/pattern": "webhook"},
            description=spec.description or f"{spec.vendor} webhook deliveries",
            metadata={
                "vendor": spec.vendor,
                "route": f"POST /webhooks/{name}",
                "flush_messages": spec.flush_messages,
                "flush_age_seconds": spec.flush_age_seconds,
                "lip/secrets": [str(spec.auth["secret"])],
            },
        )
        def _asset(
            context: dg.AssetExecutionContext, lip: dg.ResourceParam[Backend]
        ) -> dg.MaterializeResult:
            live = common.is_live(context.run.tags)
            pk = context.partition_key if context.has_partition_key else None
            refused = not live and pk is not None and pk < hour_of(common.requested_at(context))
            if not live:
                common.mark_not_live(context, name, refused=refused)
            if refused:
                # A past hour has nothing to fetch: a drain takes what is buffered now
                # and files it by event time, so the backfill would succeed with
                # nothing in its hour and look like a filled gap.
                raise dg.Failure(
                    description=(
                        f"{name} is a webhook source: its events arrive when the vendor "
                        f"sends them and are drained from its buffer, not fetched by hour, "
                        f"so a backfill of partition {pk} has nothing to fetch. Events "
                        f"that failed to land are in its dead-letter queue: fix the "
                        f"cause, then run {name}_replay. To drain the buffer now, "
                        f"`lip run {name}` or Materialize the current hour."
                    ),
                    allow_retries=False,
                )

            def queued_runs() -> int:
                return context.instance.get_runs_count(
                    dg.RunsFilter(
                        statuses=[dg.DagsterRunStatus.QUEUED], tags={common.SOURCE_TAG: name}
                    )
                )

            try:
                report = drain_source(spec, lip, depth_probe=queued_runs)
            except (Exception, dg.DagsterExecutionInterruptedError) as stop:
                # stopped from the UI (or its task stopped), or failed outside LIP:
                # what it landed is out of the buffer, so it is recorded here or never
                stopped = interrupted_report(stop)
                if stopped is not None:
                    common.report_failed_run(context, stopped.result, partitions, stop)
                raise
            context.log.info(
                f"{name}: {report.messages} messages in {report.batches} batches, "
                f"{report.result.events} events landed, {report.quarantined} quarantined, "
                f"stopped: {report.stopped}"
            )
            run_meta: dict[str, Any] = {
                "trigger": context.run.tags.get(TRIGGER_TAG, "manual"),
                "backpressure": report.backpressure,
                "messages": report.messages,
                "batches": report.batches,
                "quarantined": report.quarantined,
                "stopped": report.stopped,
                "seconds": round(report.seconds, 2),
            }
            if report.error is not None:
                # What did land is reported before the run fails, through the same
                # filter as a successful drain: an hour that is no partition of the
                # asset (an event stamped before start_date) is not materialized.
                common.report_failed_run(context, report.result, partitions, report.error)
                raise report.error
            return common.report_materializations(context, report.result, partitions, run_meta)

        job = dg.define_asset_job(f"{name}_drain", selection=[_asset.key], tags=tags)

        @dg.sensor(
            name=f"{name}_arrivals",
            job=job,
            minimum_interval_seconds=spec.sensor_interval_seconds,
            default_status=(
                dg.DefaultSensorStatus.RUNNING
                if os.environ.get("LIP_SCHEDULES_ON") == "1"
                else dg.DefaultSensorStatus.STOPPED
            ),
            description=f"drains {name}'s buffer at {spec.flush_messages} messages or "
            f"{spec.flush_age_seconds}s, whichever comes first",
        )
        def _sensor(
            context: dg.SensorEvaluationContext, lip: dg.ResourceParam[Backend]
        ) -> dg.SensorResult:
            now = time.time()
            state = ArrivalState.from_cursor(context.cursor)
            try:
                depth = lip.buffer.depth(name)
            except LipError as err:
                context.log.warning(f"{name}: cannot measure the buffer ({err}); failing open")
                depth = None
            active = (
                context.instance.get_runs_count(
                    dg.RunsFilter(statuses=ACTIVE, tags={common.SOURCE_TAG: name})
                )
                > 0
            )
            reason, new_state = decide(depth, state, now, thresholds, drain_active=active)
            if reason is None:
                why = "a drain is already queued or running" if active else "below thresholds"
                return dg.SensorResult(skip_reason=why, cursor=new_state.to_cursor())
            request = dg.RunRequest(
                run_key=f"{name}-{int(now * 1000)}",
                partition_key=hour_of(datetime.fromtimestamp(now, UTC)),
                tags={**tags, TRIGGER_TAG: reason, common.MODE_TAG: common.MODE_POLL},
            )
            return dg.SensorResult(run_requests=[request], cursor=new_state.to_cursor())

        @dg.op(name=f"{name}_redrive", tags={"lip/pattern": "webhook"})
        def _redrive(context: dg.OpExecutionContext, lip: dg.ResourceParam[Backend]) -> int:
            moved = replay(lip.buffer, name)
            context.log.info(f"{name}: {moved} dead-lettered messages moved back to the buffer")
            context.add_output_metadata({"moved": moved})
            return moved

        @dg.job(
            name=f"{name}_replay",
            tags={"lip/pattern": "webhook", "lip/replay": name},
            description=f"move {name}'s dead-lettered messages back to its buffer",
        )
        def _replay_job() -> None:
            _redrive()

        @dg.asset_check(
            asset=_asset.key,
            name="dead_letters",
            description="the dead-letter queue is empty and nothing sits in quarantine",
        )
        def _dead_letters(
            context: dg.AssetCheckExecutionContext, lip: dg.ResourceParam[Backend]
        ) -> dg.AssetCheckResult:
            dead = lip.buffer.depth(name).dead_letters
            quarantined = lip.quarantine.count(name)
            return dg.AssetCheckResult(
                passed=dead == 0 and quarantined == 0,
                severity=dg.AssetCheckSeverity.ERROR,
                description=None
                if dead == 0 and quarantined == 0
                else f"{dead} dead-lettered messages (fix the cause, then run {name}_replay), "
                f"{quarantined} quarantined inputs",
                metadata={"dead_letters": dead, "quarantined": quarantined},
            )

        return dg.Definitions(
            assets=[_asset],
            jobs=[job, _replay_job],
            sensors=[_sensor],
            asset_checks=[
                *source_checks(
                    name,
                    _asset.key,
                    partitions,
                    "webhook",
                    skip=("sam_dead_letters", "sam_quarantine"),
                ),
                _dead_letters,
            ],
        )
