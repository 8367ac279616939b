"""``PollingSource``: one YAML block -> an hourly-partitioned asset, a schedule every
N minutes targeting the current hour, retries, one run per source at a time, and a
freshness policy."""

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import dagster as dg
from pydantic import Field, field_validator, model_validator

from lip_dagster.components import common
from lip_dagster.components.checks import source_checks
from lip_dagster.components.coverage import coverage_check, hour_coverage, polling_head
from lip_dagster.config import check_freshness_minutes
from lip_dagster.errors import ConfigError, VendorAuthError
from lip_dagster.lake.layout import hour_of, partition_start, validate_source_name
from lip_dagster.polling.base import (
    BackfillBeyondRetention,
    PollerConfig,
    PollReport,
    failed_report,
)
from lip_dagster.polling.http import DEFAULT_TOTAL_TIMEOUT, HttpClient
from lip_dagster.resources import Backend
from lip_dagster.sources import poller_class


class PollingSource(dg.Component, dg.Model, dg.Resolvable):
    """A vendor API polled on a schedule."""

    name: str = Field(description="source name: [a-z0-9][a-z0-9_-]{0,62}")
    adapter: str = Field(description="okta | onepassword | slack | google_workspace")
    base_url_env: str = Field(description="environment variable holding the API base URL")
    base_url_default: str | None = None
    endpoints: list[str] = Field(default_factory=list)
    start_date: str = "2026-01-01-00:00"
    poll_minutes: int = Field(
        default=5,
        description="minutes between polls; a divisor of 60 (cron */N restarts every hour)",
    )
    # at least 1: Okta answers limit=0 with an empty page and its endless next link,
    # which reads as "caught up" on every run while nothing is collected
    page_size: int = Field(default=1000, ge=1, description="events asked for per page")
    # a budget of 0 ends every poll before its first request, as a green run
    time_budget_seconds: int = Field(default=240, gt=0)
    # negative: the poll would run past its budget, into the next poll's slot
    safety_margin_seconds: int = Field(default=15, ge=0)
    request_total_timeout_seconds: float = Field(
        default=DEFAULT_TOTAL_TIMEOUT,
        gt=0,
        description=(
            "longest one request may take, headers and body, while its body keeps "
            "arriving (a stall is caught sooner, by the read timeout); still cut to the "
            "run's time budget. Raise it for a vendor whose large pages come slowly."
        ),
    )
    # 0: collect from the first poll on; negative asks the vendor for the future
    initial_lookback_hours: float = Field(default=24, ge=0)
    freshness_fail_minutes: int = Field(default=60, ge=1)
    # null for no warning: 0 would read as none while the block says 0 minutes
    freshness_warn_minutes: int | None = Field(default=30, ge=1)
    options: dict[str, str | int | float | bool] = Field(default_factory=dict)
    step_retries: int = Field(default=2, ge=0)
    step_retry_delay_seconds: int = Field(default=30, ge=0)
    description: str | None = None

    @field_validator("poll_minutes")
    @classmethod
    def _divides_the_hour(cls, value: int) -> int:
        # cron's */45 fires at :00 and :45, and */90 every hour: the schedule would
        # not poll as often as it is named for
        if value < 1 or 60 % value:
            raise ValueError(
                f"poll_minutes must divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60), "
                f"not {value}: cron's */{value} would not fire every {value} minutes"
            )
        return value

    @model_validator(mode="after")
    def _warns_before_failing(self) -> "PollingSource":
        check_freshness_minutes(self.freshness_warn_minutes, self.freshness_fail_minutes)
        return self

    def poller_config(self) -> PollerConfig:
        """Resolved at run time, so a missing deployment value fails the run that
        needs it, naming the variable, instead of hiding every other source."""
        base_url = os.environ.get(self.base_url_env) or self.base_url_default
        if not base_url:
            raise ConfigError(
                f"source {self.name!r}: set {self.base_url_env} to the vendor's API base URL"
            )
        cls = poller_class(self.adapter)
        return PollerConfig(
            source=self.name,
            base_url=base_url,
            endpoints=tuple(self.endpoints) or cls.default_endpoints,
            page_size=self.page_size,
            time_budget_seconds=self.time_budget_seconds,
            safety_margin_seconds=self.safety_margin_seconds,
            initial_lookback_hours=self.initial_lookback_hours,
            options={k: str(v) for k, v in self.options.items()},
        )

    def http_client(self) -> HttpClient:
        """The run's HTTP client, with this source's whole-request limit."""
        return HttpClient(total_timeout=float(self.request_total_timeout_seconds))

    def poll(
        self,
        lip: Backend,
        *,
        partition_key: str | None,
        live: bool,
        depth_probe: object = None,
    ) -> PollReport:
        """One collection: live (advance the cursor) or a bounded backfill window."""
        cfg = self.poller_config()
        cls = poller_class(self.adapter)
        lip.ensure_source(self.name)
        writer = lip.writer()
        try:
            with self.http_client() as http:
                poller = cls(
                    cfg, http=http, secrets=lip.secrets, cursors=lip.cursors, writer=writer
                )
                window = None
                if not live:
                    if partition_key is None:
                        raise ConfigError("a backfill needs a partition key")
                    start = partition_start(partition_key)
                    window = (start, start + timedelta(hours=1))
                return poller.run(window=window, depth_probe=depth_probe)  # type: ignore[arg-type]
        finally:
            writer.close()

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        name = validate_source_name(self.name)
        cls = poller_class(self.adapter)  # an unknown adapter fails at load
        # every adapter keys its cursor by endpoint name (get_cursor_key)
        endpoints = tuple(self.endpoints) or cls.default_endpoints
        # so do options the adapter does not read, and values it cannot use
        cls.validate_options(name, {k: str(v) for k, v in self.options.items()}, endpoints)
        partitions = common.hourly_partitions(self.start_date)
        tags = common.source_tags(name, "polling")
        component = self

        @dg.asset(
            name=name,
            group_name="polling",
            partitions_def=partitions,
            freshness_policy=common.freshness(
                self.freshness_fail_minutes, self.freshness_warn_minutes
            ),
            retry_policy=common.retry_policy(self.step_retries, self.step_retry_delay_seconds),
            pool=f"lip-source-{name}",
            kinds={"polling", self.adapter},
            tags={"lip/pattern": "polling"},
            description=self.description or f"{self.adapter} audit log, polled",
            metadata={
                "adapter": self.adapter,
                "poll_minutes": self.poll_minutes,
                "lip/secrets": sorted(
                    {str(v) for k, v in self.options.items() if k.endswith("_secret")}
                ),
            },
        )
        def _asset(
            context: dg.AssetExecutionContext, lip: dg.ResourceParam[Backend]
        ) -> dg.MaterializeResult:
            live = context.run.tags.get(common.MODE_TAG) == common.MODE_POLL
            if not live:
                common.mark_not_live(context, name)

            def queued_runs() -> int:
                return context.instance.get_runs_count(
                    dg.RunsFilter(
                        statuses=[dg.DagsterRunStatus.QUEUED], tags={common.SOURCE_TAG: name}
                    )
                )

            try:
                report = component.poll(
                    lip, partition_key=context.partition_key, live=live, depth_probe=queued_runs
                )
            except (Exception, dg.DagsterExecutionInterruptedError) as exc:
                # a run stopped from the UI (or its task stopped) is interrupted with a
                # BaseException: what it landed and committed past is recorded as well
                try:
                    _record_landed_hours(context, lip, exc, partitions, name, endpoints, live)
                except Exception as log_exc:  # noqa: BLE001 - the run fails with its own error
                    context.log.error(
                        f"{name}: could not record the hours this failed run landed "
                        f"({type(log_exc).__name__}: {log_exc})"
                    )
                if isinstance(exc, (VendorAuthError, ConfigError, BackfillBeyondRetention)):
                    # retrying in 30 s will not fix a refused credential, a missing
                    # setting, or bring back what the vendor no longer keeps
                    raise dg.Failure(description=str(exc), allow_retries=False) from exc
                raise
            for ep, er in report.endpoints.items():
                context.log.info(
                    f"{name}/{ep}: {er.pages} pages, {er.events} events landed, "
                    f"stopped: {er.stopped or 'n/a'}"
                )
            run_meta: dict[str, object] = {
                "mode": "poll" if live else "backfill",
                "backpressure": report.backpressure,
                "pages": report.pages,
                "retries": report.retries,
                "throttled": report.throttled,
                "seconds": round(report.seconds, 2),
            }
            for ep, er in report.endpoints.items():
                run_meta[f"cursor_before/{ep}"] = _short(er.cursor_before)
                run_meta[f"cursor_after/{ep}"] = _short(er.cursor_after)
                run_meta[f"stopped/{ep}"] = er.stopped or "n/a"
            return common.report_materializations(
                context,
                report.result,
                partitions,
                run_meta,
                coverage=_coverage(lip, name, endpoints),
            )

        job = dg.define_asset_job(f"{name}_poll", selection=[_asset.key], tags=tags)

        @dg.schedule(
            name=f"{name}_every_{self.poll_minutes}m",
            cron_schedule=f"*/{self.poll_minutes} * * * *",
            job=job,
            execution_timezone="UTC",
            default_status=(
                dg.DefaultScheduleStatus.RUNNING
                if os.environ.get("LIP_SCHEDULES_ON") == "1"
                else dg.DefaultScheduleStatus.STOPPED
            ),
        )
        def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
            scheduled = context.scheduled_execution_time or datetime.now(UTC)
            return dg.RunRequest(
                run_key=f"{name}-{scheduled.astimezone(UTC):%Y%m%dT%H%M}",
                partition_key=hour_of(scheduled),
                tags={**tags, common.MODE_TAG: common.MODE_POLL},
            )

        return dg.Definitions(
            assets=[_asset],
            jobs=[job],
            schedules=[_schedule],
            asset_checks=[
                *source_checks(name, _asset.key, partitions, "polling"),
                coverage_check(
                    name,
                    _asset.key,
                    partitions,
                    endpoints,
                    timedelta(minutes=self.freshness_fail_minutes),
                ),
            ],
        )


def _record_landed_hours(
    context: dg.AssetExecutionContext,
    lip: Backend,
    exc: BaseException,
    partitions: dg.HourlyPartitionsDefinition,
    name: str,
    endpoints: tuple[str, ...],
    live: bool,
) -> None:
    """A run failing after it landed pages still records those hours as materialized:
    a live poll has committed its cursor past them, so no later run lands (or reports)
    them again. The run still fails. A backfill leaves its own hour out: it did not
    finish it, and an incomplete hour must not look materialized."""
    report = failed_report(exc)
    if report is None or not report.result.hours:
        return
    coverage: Callable[[str], str] | None
    try:
        coverage = _coverage(lip, name, endpoints)
    except Exception as head_exc:  # noqa: BLE001 - the landed hours are logged anyway
        context.log.warning(f"{name}: coverage unknown ({type(head_exc).__name__})")
        coverage = None
    logged = common.report_failed_run(
        context, report.result, partitions, exc, coverage=coverage, include_target=live
    )
    context.log.warning(
        f"{name}: the run failed after landing {report.result.events} events; "
        f"{logged} hour partition(s) recorded as materialized"
    )


def _coverage(lip: Backend, name: str, endpoints: tuple[str, ...]) -> Callable[[str], str]:
    """Each hour's coverage (complete or open), from the endpoints' committed marks."""
    head = polling_head(lip, name, endpoints)
    return lambda hour: hour_coverage(hour, head)


def _short(cursor: str | None) -> str:
    """Cursors can be long URLs; metadata shows enough to compare runs."""
    if cursor is None:
        return "none"
    return cursor if len(cursor) <= 120 else cursor[:117] + "..."
