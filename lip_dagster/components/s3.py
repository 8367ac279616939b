"""``S3Source``: one YAML block -> a source whose vendor writes objects itself.

It builds the hourly-partitioned asset (a transcoding run), the arrival sensor that
starts those runs (or registers objects already in the lake layout without a run),
the content and quarantine checks, and the freshness policy.

A run launched by the sensor carries its object keys in run config, and the sensor
acknowledges the objects only once it has seen a run of theirs succeed
(``s3stream/pending.py``): a run that fails after its retries has its objects
requested again, and after ``max_batch_runs`` runs they go to quarantine, never
silently away. A run launched without keys by ``lip run SOURCE`` (tag
``lip/mode=poll``) finds new objects itself, lands them, and only then acknowledges
them. Any other run without keys (a backfill of an hour, "Materialize" in the UI)
fails with instructions: vendor objects are not collected by hour.
"""

import logging
import os
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import dagster as dg
import orjson
from pydantic import Field, model_validator

from lip_dagster.components import common
from lip_dagster.components.checks import source_checks
from lip_dagster.config import check_freshness_minutes
from lip_dagster.errors import ConfigError, LipError, StateError, attached_report
from lip_dagster.lake.layout import hour_of, partition_start, validate_source_name
from lip_dagster.lake.writer import WriteResult
from lip_dagster.resources import Backend
from lip_dagster.s3stream.arrivals import (
    DEFAULT_SETTLE_SECONDS,
    ArrivalFinder,
    Discovery,
    ListingState,
    Plan,
    batches,
    key_digest,
    plan_objects,
)
from lip_dagster.s3stream.formats import VendorFormat, vendor_format
from lip_dagster.s3stream.objects import NETWORK_CODE, ObjectInfo, ObjectLocation
from lip_dagster.s3stream.pending import (
    DEFAULT_MAX_ATTEMPTS,
    Batch,
    Message,
    RunOutcome,
    SensorState,
    batch_id,
)
from lip_dagster.s3stream.producer_lake import ProducerLake
from lip_dagster.s3stream.transcode import (
    PAGE_EVENTS,
    ObjectOutcome,
    ObjectsNotRead,
    Transcoder,
    TranscodeReport,
    quarantine_id,
)
from lip_dagster.sam.checks import CONTENT_CHECKS
from lip_dagster.sam.sources import PRODUCER_METADATA, producer_metadata

log = logging.getLogger(__name__)

PATTERN = "s3"
BATCH_TAG = common.BATCH_TAG
ATTEMPT_TAG = "lip/attempt"
NOT_READ_TAG = "lip/not_read"
"""Set by a keyed run on itself: ``*`` while it works (if it dies, every key counts as
not landed), then a JSON object of ``{key digest: error code}`` for the keys it could
not read (``{}``: all landed)."""
ALL_KEYS = "*"
NOT_READ_DETAIL_CHARS = 200
MAX_HELD_KEYS = 4000
"""Key digests (about 28 bytes each) the stored listing state may keep beyond its
settle window while `lip run` waits for an object it cannot read; past this the
object is quarantined and the listing moves on (about 110 KB at most, far below
DynamoDB's 400 KB item limit)."""
MAX_UNDELETED_MESSAGES = 1000
"""Notifications of landed objects the cursor keeps while the queue refuses to
delete them (each is retried every tick). Past this the tick fails, naming the
permission: a cursor that grows every tick would end up too large to store."""
QUARANTINE_CHECK = "quarantine_empty"
CHECKS_TAG = common.CHECKS_TAG
RunLookup = Callable[[Sequence[str]], Mapping[str, RunOutcome]]
TRANSCODING_ONLY = ("keys_per_run", "max_runs_per_tick", "max_batch_runs", "page_events")
"""Settings of the runs that transcode a vendor's objects, which a lake-layout source
(registered without runs) does not have."""

_QUEUE_ENVS: dict[str, str] = {}
"""Source name -> the variable naming its notification queue, for every S3 source
whose definitions were built in this process (the code location loads them all).
A source deletes the notifications of keys outside its prefix, so two sources
reading one queue would each delete the other's: the variables are compared when a
tick or run needs its queue, and a shared queue is refused."""


class TranscodeConfig(dg.Config):
    """Object keys to transcode (set by the arrival sensor). Empty: find new objects
    first, as the sensor would, and acknowledge them after they landed (only with the
    ``lip/mode=poll`` tag that ``lip run SOURCE`` sets)."""

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
    sensor_seconds: int = Field(default=60, ge=1, description="seconds between sensor ticks")
    keys_per_run: int = Field(
        default=20,
        ge=1,
        description="objects per transcoding run; more when a tick finds more than "
        "keys_per_run x max_runs_per_tick",
    )
    max_runs_per_tick: int = Field(
        default=2,
        ge=1,
        description="runs one tick requests for new objects at most: a source's runs go "
        "one at a time, so a backlog lands in a few large runs, not many small ones",
    )
    max_keys_per_tick: int = Field(
        default=500,
        ge=1,
        description="objects taken per tick, and at most this many waiting for their runs",
    )
    max_batch_runs: int = Field(
        default=DEFAULT_MAX_ATTEMPTS,
        ge=1,
        description="runs a batch of objects gets; what none of them landed goes to quarantine",
    )
    settle_seconds: float = Field(default=DEFAULT_SETTLE_SECONDS, ge=0)
    content_check_minutes: float = Field(
        default=10,
        ge=0,
        description="lake_layout only: an hour's content checks run when it first gets "
        "objects, then at most once in this many minutes while more arrive",
    )
    page_events: int = Field(default=PAGE_EVENTS, ge=1)
    freshness_fail_minutes: int = Field(default=60, ge=1)
    # null for no warning: 0 would read as none while the block says 0 minutes
    freshness_warn_minutes: int | None = Field(default=30, ge=1)
    step_retries: int = Field(default=2, ge=0)
    step_retry_delay_seconds: int = Field(default=30, ge=0)
    options: dict[str, str | int | float | bool] = Field(default_factory=dict)
    description: str | None = None

    @model_validator(mode="after")
    def _warns_before_failing(self) -> "S3Source":
        check_freshness_minutes(self.freshness_warn_minutes, self.freshness_fail_minutes)
        return self

    @model_validator(mode="after")
    def _read_in_its_mode(self) -> "S3Source":
        # a lake-layout source's objects are registered without a run: nothing
        # batches their keys or reads their records; only its hours get a run of
        # content checks alone. A setting of the other mode would be ignored.
        given = self.model_fields_set
        if self.lake_layout:
            unread = [f for f in TRANSCODING_ONLY if f in given]
            if self.options:
                unread.append("options")
            if unread:
                raise ValueError(
                    f"{', '.join(unread)} is not read with lake_layout: true (its objects "
                    "are registered, not transcoded by runs): drop it"
                )
        elif "content_check_minutes" in given:
            raise ValueError(
                "content_check_minutes is read only with lake_layout: true (a transcoded "
                "hour is checked by the run that lands it): drop it"
            )
        return self

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
        try:
            return vendor_format(self.format, {k: str(v) for k, v in self.options.items()})
        except ConfigError as exc:
            raise ConfigError(f"source {self.name!r}: {exc}") from None

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
        queue = lip.arrival_queue(loc)
        if queue is not None:
            self._refuse_shared_queue(loc.queue_url())
        return ArrivalFinder(
            self.name,
            lip.object_source(loc),
            queue,
            lip.cursors,
            settle_seconds=self.settle_seconds,
        )

    def _refuse_shared_queue(self, url: str | None) -> None:
        """Fail, before receiving anything, when another S3 source of this deployment
        reads the same queue: each would receive the other's notifications, ignore
        their keys (outside its prefix) and delete them, and the other source would
        never see those objects. Nothing shows that loss, so it is refused here."""
        if not url:
            return
        for other, env in sorted(_QUEUE_ENVS.items()):
            if other == self.name:
                continue
            theirs = os.environ.get(env)
            if theirs and theirs.rstrip("/") == url.rstrip("/"):
                raise ConfigError(
                    f"source {self.name!r}: {self.queue_env} and {env} (source {other!r}) "
                    f"name the same queue {url}. Each S3 source deletes the notifications "
                    "of keys outside its prefix, so a shared queue loses the other "
                    "source's objects: give each source its own queue (an S3 event "
                    "notification per prefix, or an SNS topic with one queue per source)"
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

    def producer_lake(self, lip: Backend) -> ProducerLake:
        """A lake-layout producer's objects, where the content checks read them."""
        return ProducerLake(partial(lip.object_source, self.location()))

    def how_to_rerun(self) -> str:
        """How a person lands particular vendor objects again (quarantine reasons and
        errors say it)."""
        return (
            f"launch the job {self.name}_transcode with run config "
            f"`ops: {{{self.name}: {{config: {{keys: [<object key>, ...]}}}}}}`"
        )

    def run_size(self, found: int) -> int:
        """Objects per run for ``found`` new objects: ``keys_per_run``, or more, so a
        tick requests at most ``max_runs_per_tick`` runs. A source's runs go one at a
        time (the ``lip/source`` limit) and each pays its launch (on ECS a task start,
        tens of seconds), so a backlog of 500 objects in 25 runs of 20 took 25 launches
        to clear and an organization trail fell further behind every hour; in 2 runs of
        250 it takes two. An object that cannot be read still fails only itself."""
        return max(self.keys_per_run, -(-found // self.max_runs_per_tick))

    def not_by_hour(self, partition: str | None) -> str:
        """Why a run without keys and without ``lip/mode=poll`` does nothing honest."""
        if self.lake_layout:
            return (
                f"{self.name} is an S3 source in the lake layout: its objects are "
                f"registered by the sensor {self.name}_arrivals as the producer writes "
                f"them, not by hour, so a backfill or Materialize of partition "
                f"{partition or '(none)'} has nothing to fetch and registers nothing. "
                f"Check that the sensor {self.name}_arrivals is running."
            )
        return (
            f"{self.name} is an S3 source: its objects are found by the sensor "
            f"{self.name}_arrivals as the vendor writes them, not by hour, so a backfill "
            f"or Materialize of partition {partition or '(none)'} has nothing to fetch "
            f"and lands nothing. To collect new objects now, run `lip run {self.name}`. "
            f"To read particular vendor objects again (e.g. ones listed in quarantine), "
            f"{self.how_to_rerun()}."
        )

    # ------------------------------------------------------------ the run body
    def land(self, lip: Backend, keys: list[str]) -> tuple[TranscodeReport, dict[str, Any]]:
        """Transcode ``keys``; with none, find new objects, land them, then
        acknowledge the ones that landed (objects that could not be read stay new:
        their notifications are not deleted, the listing state does not pass them).
        Returns the report and run metadata; ``report.failed`` lists what to name
        when failing the run."""
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
            self._quarantine_notifications(lip, disc)
            report = tc.run(info.key for info in plan.transcode)
            failed = {o.key for o in report.failed}
            meta.update(
                mode=f"sweep ({finder.mode})",
                skipped_housekeeping=len(plan.skipped),
                notifications_ignored=disc.ignored,
                test_events=disc.test_events,
            )
            if finder.queue is None:
                before = finder.stored_state()
                landed = [(o.key, disc.modified(o)) for o in disc.objects if o.key not in failed]
                held = [o for o in disc.objects if o.key in failed]
                if held and self._hold_too_large(before, landed, [disc.modified(o) for o in held]):
                    self._quarantine_held(
                        lip, finder, report, {o.key: disc.modified(o) for o in held}
                    )
                    meta["released_unreadable"] = len(held)
                    held = []
                after = finder.commit_landed(landed, (disc.modified(o) for o in held))
                meta["listed_through_before"] = before.through
                meta["listed_through"] = after.through
            refused = finder.acknowledge(
                [m.receipt for m in disc.messages if not failed.intersection(m.keys)]
            )
            if refused:
                meta["notifications_not_deleted"] = refused
            return report, meta
        finally:
            writer.close()

    @staticmethod
    def _hold_too_large(
        stored: ListingState, landed: list[tuple[str, float]], held: list[float]
    ) -> bool:
        """Whether holding the listing back for unreadable objects would keep more
        than ``MAX_HELD_KEYS`` extra key digests in the stored state: under `lip run`
        nothing else bounds the hold, and a listing state past DynamoDB's 400 KB
        item limit could not be stored at all."""
        with_hold = stored.advance_keys(landed, held)
        without = stored.advance_keys(landed)
        return len(with_hold.handled) - len(without.handled) > MAX_HELD_KEYS

    def _quarantine_held(
        self,
        lip: Backend,
        finder: ArrivalFinder,
        report: TranscodeReport,
        held: Mapping[str, float],
    ) -> None:
        """Quarantine (before the listing passes them) objects `lip run` could not
        read while many newer ones landed: past this they are no longer listed as
        new, so the quarantine item is their record."""
        errors = {o.key: o.reason or "" for o in report.failed}
        for key, modified in held.items():
            reason = (
                f"{finder.objects.describe(key)} could not be read by `lip run` "
                f"({errors.get(key, '')[:NOT_READ_DETAIL_CHARS]}) while more than "
                f"{MAX_HELD_KEYS} newer objects landed; the listing no longer waits for "
                f"it. The vendor object is unchanged; fix the cause, then "
                f"{self.how_to_rerun()}"
            )
            data = orjson.dumps({"origin": finder.objects.describe(key), "copied": False})
            lip.quarantine.put(
                self.name,
                key,
                data,
                reason,
                stable_id=quarantine_id(self.name, key, repr(modified), "not-read"),
            )
            log.error("%s: quarantined %s: %s", self.name, key, reason)

    def _quarantine_notifications(self, lip: Backend, disc: Discovery) -> int:
        """Keep each unusable notification's body (it may be the only record of the
        object it named) before its message can be deleted."""
        for bad in disc.problems:
            lip.quarantine.put(
                self.name,
                f"notification-{bad.message_id}",
                bad.body,
                bad.reason,
                stable_id=quarantine_id(self.name, bad.message_id, "", "notification"),
            )
            log.warning("%s: %s", self.name, bad.reason)
        return len(disc.problems)

    # ------------------------------------------------------------ the sensor body
    def evaluate_tick(
        self,
        lip: Backend,
        cursor: str | None,
        asset_key: dg.AssetKey,
        now: datetime,
        runs: RunLookup,
    ) -> dg.SensorResult:
        """One sensor tick: see how the runs it requested ended (landed: acknowledge
        their objects; failed: request the unlanded ones again, or quarantine them
        after ``max_batch_runs``), then find new objects, register lake-layout ones,
        and batch the rest into run requests. ``runs`` maps batch ids to how their
        runs ended (``batch_outcomes`` over the Dagster instance)."""
        state = SensorState.loads(cursor, self.settle_seconds)
        _ensure_once(lip, self.name)
        finder = self.finder(lip)
        fmt = self.vendor_format()
        t = now.timestamp()

        waited = len(state.batches)
        outcomes = runs([b.id for b in state.batches]) if state.batches else {}
        settled = state.settle(
            outcomes,
            t,
            max_attempts=self.max_batch_runs,
            absent_after=max(600.0, 3.0 * self.sensor_seconds),
            describe=finder.objects.describe,
            how_to_rerun=self.how_to_rerun(),
        )
        quarantined = 0
        for gave_up in settled.given_up:  # before acknowledging: never lost in between
            data = orjson.dumps(
                {
                    "origin": finder.objects.describe(gave_up.key),
                    "copied": False,
                    "error": gave_up.code,
                    "runs": gave_up.runs,
                }
            )
            # named by key and batch: a tick that fails after this and is evaluated
            # again with the same cursor gives the same key up again, and adds no copy
            lip.quarantine.put(
                self.name,
                gave_up.key,
                data,
                gave_up.reason,
                stable_id=quarantine_id(self.name, gave_up.key, gave_up.batch, "gave-up"),
            )
            log.error("%s: quarantined %s: %s", self.name, gave_up.key, gave_up.reason)
            quarantined += 1
        for b in settled.backing_off:
            log.warning(
                "%s: the runs of batch %s failed without naming an object (the lake or a "
                "state store unavailable?); %d object(s) are requested again in %.0f s, "
                "not counted against them; see the failed runs %s",
                self.name,
                b.base,
                len(b.keys),
                (b.due or t) - t,
                ", ".join(b.runs[-3:]),
            )
        self._acknowledge(finder, state)

        requests = [self._run_request(b, now) for b in settled.retry]
        events: list[Any] = []
        room = self.max_keys_per_tick - len(state.pending_keys())
        skipped = 0
        if room > 0:
            disc = finder.discover(state.listing, room)
            known = set(state.messages)  # a message back after its visibility ran out
            disc.problems = [p for p in disc.problems if p.message_id not in known]
            new, versions = self._take(state, disc, finder)
            plan = plan_objects(self.name, new, finder.objects, fmt)
            skipped = len(plan.skipped)
            quarantined += self._quarantine_notifications(lip, disc)
            registered = self._register(plan, finder, asset_key, now, state.unchecked)
            events += registered
            for m in registered:
                state.unchecked.setdefault(str(m.partition), t)
            for key, why in plan.rejected:
                lip.quarantine.put(
                    self.name,
                    key,
                    b"",
                    f"{finder.objects.describe(key)}: {why}",
                    stable_id=quarantine_id(self.name, key, versions.get(key, ""), "rejected"),
                )
                quarantined += 1
            found = [info.key for info in plan.transcode]
            for keys in batches(found, self.run_size(len(found))):
                batch = Batch(
                    id=batch_id(self.name, {k: versions[k] for k in keys}),
                    keys=keys,
                    requested_at=t,
                )
                state.batches.append(batch)
                requests.append(self._run_request(batch, now))
        requests += self._content_check_requests(state, asset_key, t)
        if quarantined:
            events.append(self._quarantine_evaluation(lip, asset_key))
        skip = None
        if not requests and not events:
            found = (
                f"no new objects ({skipped} housekeeping objects skipped)"
                if room > 0
                else f"{self.max_keys_per_tick - room} objects wait for their runs; new "
                "objects are taken once they land"
            )
            skip = (
                f"{found}; {len(settled.landed)} of {waited} requested batches landed, "
                f"{settled.waiting} still waited for"
            )
            if settled.backing_off:
                skip += (
                    f" ({len(settled.backing_off)} after runs that failed without naming "
                    "an object: requested again after a backoff, see the failed runs)"
                )
        return dg.SensorResult(
            run_requests=requests, asset_events=events, cursor=state.dumps(), skip_reason=skip
        )

    def _acknowledge(self, finder: ArrivalFinder, state: SensorState) -> None:
        """Acknowledge what no batch waits for any more; keep the rest hidden."""
        pending = state.pending_keys()
        if finder.queue is None:
            done = {k: t for k, t in state.objects.items() if k not in pending}
            if done:
                finder.commit_landed(
                    done.items(), [t for k, t in state.objects.items() if k in pending]
                )
                for k in done:
                    del state.objects[k]
            return
        done_ids = [m for m, msg in state.messages.items() if not pending.intersection(msg.keys)]
        if done_ids:
            try:
                refused = finder.acknowledge([state.messages[m].receipt for m in done_ids])
            except LipError as exc:
                if len(done_ids) > MAX_UNDELETED_MESSAGES:
                    raise StateError(
                        f"source {self.name!r}: {len(done_ids)} notifications of objects "
                        f"that landed could not be deleted from the queue in {self.queue_env} "
                        f"({exc}). Grant LIP's role sqs:DeleteMessage (and "
                        "sqs:ChangeMessageVisibility) on the queue; until then the sensor "
                        "fails rather than keep them in its cursor without bound. Nothing "
                        "is lost: they are deleted once the permission is there."
                    ) from exc
                # fail open: kept, and deleted by a later tick; the objects landed
                log.warning("%s: could not delete notifications: %s", self.name, exc)
            else:
                for m in done_ids:
                    del state.messages[m]
                if refused:
                    log.info("%s: %d notifications were not deleted", self.name, refused)
        now = time.time()
        half = finder.visibility_timeout / 2
        due = [
            msg
            for msg in state.messages.values()
            if pending.intersection(msg.keys) and msg.hidden_until - now < half
        ]
        if due:
            try:
                finder.keep_hidden([msg.receipt for msg in due])
            except LipError as exc:
                # they come back and are recognised by message id: nothing is lost
                log.warning("%s: could not keep notifications hidden: %s", self.name, exc)
            else:
                for msg in due:
                    msg.hidden_until = now + finder.visibility_timeout

    def _take(
        self, state: SensorState, disc: Discovery, finder: ArrivalFinder
    ) -> tuple[list[ObjectInfo], dict[str, str]]:
        """The newly found objects, with what announced each (for the batch id), and
        the state updated to remember them until they landed.

        A new notification for a key a batch still waits for means the vendor wrote
        it again, possibly after that batch's run read it: the key goes into a new
        batch (a run requested after the notification arrived reads the new
        version), and the notification is deleted only once no batch holding the
        key waits any more. Reading it twice lands nothing twice."""
        pending = state.pending_keys()
        if finder.queue is None:
            state.listing = disc.state
            new = [o for o in disc.objects if o.key not in pending]
            for o in new:
                state.objects[o.key] = disc.modified(o)
            return new, {o.key: repr(disc.modified(o)) for o in new}
        versions: dict[str, str] = {}
        hidden_until = disc.listed_at + finder.visibility_timeout
        for m in disc.messages:
            known = state.messages.get(m.message_id)
            if known is not None:  # back after its visibility ran out: same work
                known.receipt, known.hidden_until = m.receipt, hidden_until
                continue
            state.messages[m.message_id] = Message(m.receipt, list(m.keys), hidden_until)
            for k in m.keys:
                if k in pending and k not in versions:
                    log.info(
                        "%s: %s announced again while its run goes on: read again", self.name, k
                    )
                versions.setdefault(k, m.message_id)
        return [o for o in disc.objects if o.key in versions], versions

    def _quarantine_evaluation(
        self, lip: Backend, asset_key: dg.AssetKey
    ) -> dg.AssetCheckEvaluation:
        """The sensor just put something in quarantine: turn the check red now, not
        at the next run (there may be none for a while)."""
        n = lip.quarantine.count(self.name)
        return dg.AssetCheckEvaluation(
            asset_key=asset_key,
            check_name=QUARANTINE_CHECK,
            passed=n == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"{n} item(s) in quarantine: see docs/s3-sources.md",
            metadata={"quarantined": n},
        )

    def _register(
        self,
        plan: Plan,
        finder: ArrivalFinder,
        asset_key: dg.AssetKey,
        now: datetime,
        unchecked: dict[str, float],
    ) -> list[dg.AssetMaterialization]:
        first = partition_start(self.start_date)
        # the current hour is the last partition (end_offset=1): a key of the next hour
        # (a producer's clock a little ahead) is no partition yet, and a materialization
        # or check run of it fails the whole tick until that hour starts
        last = partition_start(hour_of(now))
        events = []
        for info, hour in plan.register:
            start = partition_start(hour)
            if start == last + timedelta(hours=1):
                log.warning(
                    "%s: %s is filed in the hour that has not started; its content is "
                    "checked once it has",
                    self.name,
                    info.key,
                )
                unchecked.setdefault(hour, now.timestamp())
                continue
            if not first <= start <= last:
                log.warning("%s: %s is outside the partitions, not registered", self.name, info.key)
                continue
            # Unread, the object's events are known only to be no newer than the end of
            # its hour and than the object itself: enough for freshness on data, so a
            # producer that stops writing pages like any other dead source, and one
            # writing last week's hours does not look fresh.
            newest = min(start + timedelta(hours=1), info.last_modified or now, now)
            events.append(
                dg.AssetMaterialization(
                    asset_key=asset_key,
                    partition=hour,
                    description="registered from the bucket without a run (lake layout)",
                    metadata={
                        "object": finder.objects.describe(info.key),
                        "bytes_gzip": info.size if info.size is not None else "unknown",
                        "registered_at": common.iso(now) or "",
                        common.LAKE_OBJECTS_KEY: 1,
                        "newest_event": common.iso(newest) or "",
                    },
                )
            )
        return events

    def _content_check_requests(
        self, state: SensorState, asset_key: dg.AssetKey, t: float
    ) -> list[dg.RunRequest]:
        """A lake-layout producer's objects are registered without a run, so no run's
        checks ever read them: for each hour that got objects, a run of the content
        checks alone, which read the hour where the producer wrote it. At once for an
        hour's first objects, then at most once per ``content_check_minutes`` while
        more arrive (each run reads the whole hour again); an hour waiting for its
        turn stays in the cursor until it gets one."""
        window = self.content_check_minutes * 60
        state.checked = {h: at for h, at in state.checked.items() if t - at < window}
        current = hour_of(datetime.fromtimestamp(t, UTC))
        due = sorted(h for h in state.unchecked if h not in state.checked and h <= current)
        checks = [dg.AssetCheckKey(asset_key, c.name) for c in CONTENT_CHECKS]
        requests = []
        for hour in due:
            del state.unchecked[hour]
            state.checked[hour] = t
            requests.append(
                dg.RunRequest(
                    run_key=f"{self.name}-content-{hour}-{int(t)}",
                    partition_key=hour,
                    asset_selection=[],
                    asset_check_keys=checks,
                    tags={
                        **common.source_tags(self.name, PATTERN),
                        CHECKS_TAG: "content",
                        common.MODE_TAG: common.MODE_POLL,
                    },
                )
            )
        return requests

    def _run_request(self, batch: Batch, now: datetime) -> dg.RunRequest:
        return dg.RunRequest(
            run_key=batch.id,
            partition_key=hour_of(now),
            run_config={"ops": {self.name: {"config": {"keys": batch.keys}}}},
            tags={
                **common.source_tags(self.name, PATTERN),
                common.MODE_TAG: common.MODE_POLL,
                BATCH_TAG: batch.id,
                ATTEMPT_TAG: str(batch.run_no),
                "lip/objects": str(len(batch.keys)),
            },
        )

    # ------------------------------------------------------------- definitions
    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        name = validate_source_name(self.name)
        fmt = self.vendor_format()  # unknown formats and options fail at load
        if self.queue_env:
            _QUEUE_ENVS[name] = self.queue_env
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
            metadata={
                "format": kind,
                "bucket_env": self.bucket_env,
                **({PRODUCER_METADATA: producer_metadata(self.location())} if fmt is None else {}),
            },
        )
        def _asset(
            context: dg.AssetExecutionContext,
            config: TranscodeConfig,
            lip: dg.ResourceParam[Backend],
        ) -> dg.MaterializeResult:
            keys = list(config.keys)
            polling = context.run.tags.get(common.MODE_TAG) == common.MODE_POLL
            if (fmt is None or not keys) and not polling:
                # a backfill: vendor objects are not filed by event hour
                common.mark_not_live(context, name, refused=True)
                pk = context.partition_key if context.has_partition_key else None
                raise dg.Failure(description=component.not_by_hour(pk), allow_retries=False)
            if not common.is_live(context.run.tags):  # keys given from the Launchpad
                common.mark_not_live(context, name)
            if fmt is None:
                context.log.info(f"{name}: lake-layout objects are registered by the sensor")
                return dg.MaterializeResult(metadata={"mode": "registered by sensor"})
            if keys:  # until it says otherwise, nothing of this run counts as landed
                context.instance.add_run_tags(context.run.run_id, {NOT_READ_TAG: ALL_KEYS})
            try:
                report, meta = component.land(lip, keys)
            except (Exception, dg.DagsterExecutionInterruptedError) as stop:
                # a run stopped from the UI (or failed outside LIP) after landing some
                # objects: their hours are recorded before it fails
                partial = attached_report(stop, TranscodeReport)
                if partial is not None:
                    _log_landed(context, partial.result, partitions)
                raise
            failed = report.failed
            if keys:
                context.instance.add_run_tags(context.run.run_id, {NOT_READ_TAG: _not_read(failed)})
            bad = [o for o in report.objects if o.status in ("partial", "quarantined", "missing")]
            for o in bad + failed:
                context.log.warning(f"{name}: {o.key}: {o.status}: {o.reason}")
            if failed:
                _log_landed(context, report.result, partitions)
                if not keys:
                    then = f"They stay new: run `lip run {name}` again once they can be read."
                elif common.is_live(context.run.tags):  # a run of one of the sensor's batches
                    then = (
                        f"The sensor requests them again, up to {component.max_batch_runs} "
                        "runs, then puts them in quarantine."
                    )
                else:
                    # keys given from the Launchpad: no batch of the sensor's, so nothing
                    # asks for them again and nothing puts them in quarantine
                    then = (
                        "This run's keys were given by hand, so the sensor does not request "
                        "them again: once the reason above is fixed, launch the job "
                        f"{name}_transcode again with the keys not read (each is named in "
                        "the run's log; keys that landed may be given again, their events "
                        "are dropped as duplicates)."
                    )
                raise ObjectsNotRead(name, failed, len(report.objects), then)
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

        job = dg.define_asset_job(f"{name}_transcode", selection=[_asset.key], tags=tags)

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
            return component.evaluate_tick(
                lip,
                context.cursor,
                _asset.key,
                datetime.now(UTC),
                lambda ids: batch_outcomes(context.instance, ids),
            )

        return dg.Definitions(
            assets=[_asset],
            jobs=[job],
            sensors=[_sensor],
            asset_checks=[
                *source_checks(
                    name,
                    _asset.key,
                    partitions,
                    "s3",
                    skip=("sam_quarantine",),
                    lake=None if fmt is not None else component.producer_lake,
                ),
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


def _not_read(failed: list[ObjectOutcome]) -> str:
    """The ``lip/not_read`` tag value: ``{key digest: "<code>: <error>"}``, short
    (digests, code and error cut), since it is a run tag; the sensor puts the error
    in the quarantine reason if it gives the key up."""
    return orjson.dumps(
        {
            key_digest(o.key): (
                f"{(o.code or NETWORK_CODE)[:40]}: "
                f"{(o.error or o.reason or 'no detail')[:NOT_READ_DETAIL_CHARS]}"
            )
            for o in failed
        }
    ).decode()


def _log_landed(
    context: dg.AssetExecutionContext,
    result: WriteResult,
    partitions: dg.HourlyPartitionsDefinition,
) -> None:
    """A run that fails because some objects could not be read still landed the
    others: record those hours as materialized, so freshness and the UI see it."""
    now = datetime.now(UTC)
    valid = set(partitions.get_partition_keys(current_time=now))
    for hour, stats in sorted(result.hours.items()):
        if stats.events and hour in valid:
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=context.asset_key,
                    partition=hour,
                    description=f"landed by run {context.run.run_id}, which then failed",
                    metadata=common.hour_metadata(stats, now),
                )
            )


_FINISHED = frozenset(
    {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
)


def batch_outcomes(instance: dg.DagsterInstance, ids: Sequence[str]) -> dict[str, RunOutcome]:
    """How the runs of each batch ended, from one query on the ``lip/batch`` tag.
    A batch is landed if any of its runs succeeded, running while one is not finished
    (or failed and about to be retried by Dagster), failed otherwise; absent batches
    are left out."""
    if not ids:
        return {}
    found: dict[str, list[dg.DagsterRun]] = {}
    for run in instance.get_runs(dg.RunsFilter(tags={BATCH_TAG: list(ids)})):
        found.setdefault(run.tags.get(BATCH_TAG, ""), []).append(run)
    out: dict[str, RunOutcome] = {}
    for bid, runs in found.items():
        run_ids = tuple(r.run_id for r in runs)
        if any(r.status == dg.DagsterRunStatus.SUCCESS for r in runs):
            out[bid] = RunOutcome("landed", run_ids)
        elif any(r.status not in _FINISHED or r.is_complete_and_waiting_to_retry for r in runs):
            out[bid] = RunOutcome("running", run_ids)
        else:
            newest = runs[0]  # get_runs answers newest first
            out[bid] = RunOutcome("failed", run_ids, _parse_not_read(newest.tags.get(NOT_READ_TAG)))
    return out


def _parse_not_read(raw: str | None) -> dict[str, str] | None:
    if not raw or raw == ALL_KEYS:
        return None
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError:
        log.warning("unreadable %s tag %r: counting every key as not read", NOT_READ_TAG, raw[:100])
        return None
    return {str(k): str(v) for k, v in d.items()} if isinstance(d, dict) else None


def quarantine_check(source: str, asset_key: dg.AssetKey) -> dg.AssetChecksDefinition:
    """Red while anything of this source sits in quarantine: a bad vendor object is
    somebody's missing events until a person looks at it."""

    @dg.asset_check(
        asset=asset_key,
        name=QUARANTINE_CHECK,
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
