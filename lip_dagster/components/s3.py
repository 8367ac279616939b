"""``S3Source``: one YAML block -> a source whose vendor writes objects itself.

It builds the hourly-partitioned asset (a transcoding run), the arrival sensor that
starts those runs (or registers objects already in the lake layout without a run),
the content and quarantine checks, and the freshness policy.

A run launched by the sensor carries its object keys in run config. A run launched
without keys (``lip run SOURCE``, the demo, "Materialize" in the UI) finds new objects
itself, lands them, and only then acknowledges them (commits the listing cursor or
deletes the notifications), so one command runs a source once, in-process.
"""

import hashlib
import logging
import os
import weakref
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import orjson
from pydantic import Field

from lip_dagster.components import common
from lip_dagster.components.checks import source_checks
from lip_dagster.errors import ConfigError, LipError
from lip_dagster.lake.layout import hour_of, partition_start, validate_source_name
from lip_dagster.resources import Backend
from lip_dagster.s3stream.arrivals import (
    DEFAULT_SETTLE_SECONDS,
    ArrivalFinder,
    ListingState,
    Plan,
    batches,
    plan_objects,
)
from lip_dagster.s3stream.formats import VendorFormat, vendor_format
from lip_dagster.s3stream.objects import ObjectLocation
from lip_dagster.s3stream.transcode import PAGE_EVENTS, Transcoder, TranscodeReport

log = logging.getLogger(__name__)

PATTERN = "s3"


class TranscodeConfig(dg.Config):
    """Object keys to transcode (set by the arrival sensor). Empty: find new objects
    first, as the sensor would, and acknowledge them after they landed."""

    keys: list[str] = Field(default_factory=list)


class S3Source(dg.Component, dg.Model, dg.Resolvable):
    """A vendor that writes objects into a bucket (CloudTrail, GitHub audit-log
    streaming, Cloudflare Logpush), or a producer that already writes the lake
    layout."""

    name: str = Field(description="source name: [a-z0-9][a-z0-9_-]{0,62}")
    format: str | None = Field(
        default=None,
        description="cloudtrail | github_audit_stream | cloudflare_logpush (omit with lake_layout)",
    )
    lake_layout: bool = Field(
        default=False, description="objects are already lake objects: register, do not transcode"
    )
    bucket_env: str = Field(description="environment variable holding the vendor's bucket")
    prefix_env: str | None = Field(default=None, description="variable holding the key prefix")
    prefix_default: str = ""
    queue_env: str | None = Field(
        default=None, description="variable holding the SQS queue URL of the bucket's notifications"
    )
    landing_dir_env: str | None = Field(
        default=None, description="embedded backend: variable naming the landing directory"
    )
    start_date: str = "2026-01-01-00:00"
    sensor_seconds: int = 60
    keys_per_run: int = 20
    max_keys_per_tick: int = 500
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    page_events: int = PAGE_EVENTS
    freshness_fail_minutes: int = 60
    freshness_warn_minutes: int | None = 30
    step_retries: int = 2
    step_retry_delay_seconds: int = 30
    options: dict[str, str | int | float | bool] = Field(default_factory=dict)
    description: str | None = None

    # ------------------------------------------------------------------ parts
    def vendor_format(self) -> VendorFormat | None:
        if self.lake_layout:
            if self.format not in (None, "lake"):
                raise ConfigError(
                    f"source {self.name!r}: lake_layout sources are registered, not "
                    f"transcoded; drop format {self.format!r}"
                )
            return None
        if not self.format:
            raise ConfigError(f"source {self.name!r}: set format (or lake_layout: true)")
        return vendor_format(self.format, {k: str(v) for k, v in self.options.items()})

    def location(self) -> ObjectLocation:
        return ObjectLocation(
            source=self.name,
            bucket_env=self.bucket_env,
            prefix_env=self.prefix_env,
            prefix_default=self.prefix_default,
            queue_env=self.queue_env,
            landing_dir_env=self.landing_dir_env,
        )

    def finder(self, lip: Backend) -> ArrivalFinder:
        loc = self.location()
        return ArrivalFinder(
            self.name,
            lip.object_source(loc),
            lip.arrival_queue(loc),
            lip.cursors,
            settle_seconds=self.settle_seconds,
        )

    def transcoder(self, lip: Backend, writer: Any) -> Transcoder:
        fmt = self.vendor_format()
        if fmt is None:
            raise ConfigError(f"source {self.name!r} is in the lake layout: nothing to transcode")
        return Transcoder(
            self.name,
            fmt,
            lip.object_source(self.location()),
            writer,
            lip.quarantine,
            page_events=self.page_events,
        )

    # ------------------------------------------------------------ the run body
    def land(
        self, lip: Backend, keys: list[str], log_event: Any = None
    ) -> tuple[TranscodeReport, dict[str, Any]]:
        """Transcode ``keys``; with none, find new objects, land them, then
        acknowledge them. Returns the report and run metadata."""
        lip.ensure_source(self.name)
        writer = lip.writer()
        meta: dict[str, Any] = {}
        try:
            tc = self.transcoder(lip, writer)
            if keys:
                meta["mode"] = "keys"
                return tc.run(keys), meta
            finder = self.finder(lip)
            disc = finder.discover(None, self.max_keys_per_tick)
            plan = plan_objects(self.name, disc.objects, finder.objects, tc.fmt)
            report = tc.run(info.key for info in plan.transcode)
            meta.update(
                mode=f"sweep ({finder.mode})",
                skipped_housekeeping=len(plan.skipped),
                notifications_ignored=disc.ignored,
                test_events=disc.test_events,
            )
            for problem in disc.problems:
                lip.quarantine.put(self.name, "notification", problem.encode(), problem)
            if disc.state is not None:
                before = finder.stored_state()
                after = finder.commit(disc.state)
                meta["listed_through_before"] = before.through
                meta["listed_through"] = after.through
            refused = finder.acknowledge(disc.receipts)
            if refused:
                meta["notifications_not_deleted"] = refused
            return report, meta
        finally:
            writer.close()

    # ------------------------------------------------------------ the sensor body
    def evaluate_tick(
        self, lip: Backend, cursor: str | None, asset_key: dg.AssetKey, now: datetime
    ) -> dg.SensorResult:
        """One sensor tick: acknowledge what the previous tick requested, find new
        objects, register lake-layout ones, batch the rest into run requests."""
        prev = _SensorCursor.loads(cursor)
        _ensure_once(lip, self.name)
        finder = self.finder(lip)
        if finder.queue is not None:
            try:
                finder.acknowledge(prev.receipts)
            except LipError as exc:
                # fail open: the messages come back after their visibility timeout
                # and are handled again; the writer lands nothing twice
                log.warning("%s: could not delete notifications: %s", self.name, exc)
        elif prev.listing is not None:
            finder.commit(prev.listing)
        disc = finder.discover(prev.listing, self.max_keys_per_tick)
        fmt = self.vendor_format()
        plan = plan_objects(self.name, disc.objects, finder.objects, fmt)
        for problem in disc.problems:
            lip.quarantine.put(self.name, "notification", problem.encode(), problem)
        events = self._register(plan, finder, asset_key, now)
        for key, why in plan.rejected:
            lip.quarantine.put(self.name, key, b"", f"{finder.objects.describe(key)}: {why}")
        requests = self._run_requests(plan, now)
        new_cursor = _SensorCursor(listing=disc.state, receipts=disc.receipts).dumps()
        skip = None
        if not requests and not events:
            skip = f"no new objects ({len(plan.skipped)} housekeeping objects skipped)"
        return dg.SensorResult(
            run_requests=requests,
            asset_events=events,
            cursor=new_cursor,
            skip_reason=skip,
        )

    def _register(
        self, plan: Plan, finder: ArrivalFinder, asset_key: dg.AssetKey, now: datetime
    ) -> list[dg.AssetMaterialization]:
        first = partition_start(self.start_date)
        last = partition_start(hour_of(now)) + timedelta(hours=1)
        events = []
        for info, hour in plan.register:
            if not first <= partition_start(hour) <= last:
                log.warning("%s: %s is outside the partitions, not registered", self.name, info.key)
                continue
            events.append(
                dg.AssetMaterialization(
                    asset_key=asset_key,
                    partition=hour,
                    description="registered from the bucket without a run (lake layout)",
                    metadata={
                        "object": finder.objects.describe(info.key),
                        "bytes_gzip": info.size if info.size is not None else "unknown",
                        "registered_at": common.iso(now) or "",
                    },
                )
            )
        return events

    def _run_requests(self, plan: Plan, now: datetime) -> list[dg.RunRequest]:
        keys = [info.key for info in plan.transcode]
        tags = common.source_tags(self.name, PATTERN)
        out = []
        for batch in batches(keys, self.keys_per_run):
            digest = hashlib.sha256("\n".join(sorted(batch)).encode()).hexdigest()[:32]
            out.append(
                dg.RunRequest(
                    run_key=f"{self.name}:{digest}",
                    partition_key=hour_of(now),
                    run_config={"ops": {self.name: {"config": {"keys": batch}}}},
                    tags={**tags, "lip/objects": str(len(batch))},
                )
            )
        return out

    # ------------------------------------------------------------- definitions
    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        name = validate_source_name(self.name)
        fmt = self.vendor_format()  # unknown formats and options fail at load
        if self.keys_per_run < 1 or self.max_keys_per_tick < 1 or self.settle_seconds < 0:
            raise ConfigError(
                f"source {name!r}: keys_per_run and max_keys_per_tick must be >= 1, "
                "settle_seconds >= 0"
            )
        partitions = common.hourly_partitions(self.start_date)
        tags = common.source_tags(name, PATTERN)
        component = self
        kind = fmt.name if fmt else "lake"

        @dg.asset(
            name=name,
            group_name=PATTERN,
            partitions_def=partitions,
            freshness_policy=common.freshness(
                self.freshness_fail_minutes, self.freshness_warn_minutes
            ),
            retry_policy=common.retry_policy(self.step_retries, self.step_retry_delay_seconds),
            pool=f"lip-source-{name}",
            kinds={"s3", kind},
            tags={"lip/pattern": PATTERN},
            description=self.description or f"{kind} objects from the vendor's bucket",
            metadata={"format": kind, "bucket_env": self.bucket_env},
        )
        def _asset(
            context: dg.AssetExecutionContext,
            config: TranscodeConfig,
            lip: dg.ResourceParam[Backend],
        ) -> dg.MaterializeResult:
            if fmt is None:
                context.log.info(f"{name}: lake-layout objects are registered by the sensor")
                return dg.MaterializeResult(metadata={"mode": "registered by sensor"})
            report, meta = component.land(lip, list(config.keys))
            bad = [o for o in report.objects if o.status in ("partial", "quarantined", "missing")]
            for o in bad:
                context.log.warning(f"{name}: {o.key}: {o.status}: {o.reason}")
            run_meta: dict[str, Any] = {
                **meta,
                "objects_read": report.count("landed", "partial"),
                "objects_skipped": report.count("skipped"),
                "objects_quarantined": len(bad),
                "records_read": report.records,
            }
            if bad:
                run_meta["quarantined"] = dg.MetadataValue.json(
                    [{"key": o.key, "status": o.status, "reason": o.reason} for o in bad[:20]]
                )
            return common.report_materializations(context, report.result, partitions, run_meta)

        job = dg.define_asset_job(
            f"{name}_transcode", selection=[_asset.key], partitions_def=partitions, tags=tags
        )

        @dg.sensor(
            name=f"{name}_arrivals",
            job=job,
            minimum_interval_seconds=self.sensor_seconds,
            default_status=(
                dg.DefaultSensorStatus.RUNNING
                if os.environ.get("LIP_SCHEDULES_ON") == "1"
                else dg.DefaultSensorStatus.STOPPED
            ),
            description=f"new objects in the {name} bucket: notifications or listing",
        )
        def _sensor(
            context: dg.SensorEvaluationContext, lip: dg.ResourceParam[Backend]
        ) -> dg.SensorResult:
            return component.evaluate_tick(lip, context.cursor, _asset.key, datetime.now(UTC))

        return dg.Definitions(
            assets=[_asset],
            jobs=[job],
            sensors=[_sensor],
            asset_checks=[
                *source_checks(name, _asset.key, partitions, "s3", skip=("sam_quarantine",)),
                quarantine_check(name, _asset.key),
            ],
        )


_ENSURED: weakref.WeakKeyDictionary[Backend, set[str]] = weakref.WeakKeyDictionary()


def _ensure_once(lip: Backend, source: str) -> None:
    """Create the source's state tables once per backend object, not on every tick."""
    done = _ENSURED.setdefault(lip, set())
    if source not in done:
        lip.ensure_source(source)
        done.add(source)


def quarantine_check(source: str, asset_key: dg.AssetKey) -> dg.AssetChecksDefinition:
    """Red while anything of this source sits in quarantine: a bad vendor object is
    somebody's missing events until a person looks at it."""

    @dg.asset_check(
        asset=asset_key,
        name="quarantine_empty",
        description="no vendor object or notification of this source is in quarantine",
    )
    def _check(lip: dg.ResourceParam[Backend]) -> dg.AssetCheckResult:
        n = lip.quarantine.count(source)
        return dg.AssetCheckResult(
            passed=n == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            description=None if n == 0 else f"{n} item(s) in quarantine: see docs/s3-sources.md",
            metadata={"quarantined": n},
        )

    return _check


class _SensorCursor:
    """The sensor's own cursor: the listing state it requested runs up to, and the
    receipts of notifications whose runs it requested. Both are acknowledged by the
    next tick, which only sees this cursor once Dagster has stored the tick."""

    def __init__(
        self, listing: ListingState | None = None, receipts: list[str] | None = None
    ) -> None:
        self.listing = listing
        self.receipts = receipts or []

    def dumps(self) -> str:
        return orjson.dumps(
            {
                "listing": orjson.loads(self.listing.to_json()) if self.listing else None,
                "receipts": self.receipts,
            }
        ).decode()

    @classmethod
    def loads(cls, raw: str | None) -> "_SensorCursor":
        if not raw:
            return cls()
        try:
            d = orjson.loads(raw)
            listing = d.get("listing")
            return cls(
                ListingState.from_json(orjson.dumps(listing).decode()) if listing else None,
                [str(r) for r in d.get("receipts") or []],
            )
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            log.warning("ignoring an unreadable sensor cursor")
            return cls()
