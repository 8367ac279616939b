"""The S3Source component through Dagster itself: definitions, the arrival sensor
(build_sensor_context + evaluate_tick), runless registration of lake-layout objects,
transcoding runs, and the quarantine check turning red."""

from __future__ import annotations

import gzip
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import orjson
import pytest

from lip_dagster.config import Settings
from lip_dagster.definitions import defs
from lip_dagster.lake.layout import hour_of, object_key
from lip_dagster.lake.writer import compress
from lip_dagster.resources import EmbeddedBackend
from lip_dagster.s3stream.demo import S3_DEMO_SOURCES, populate_landing
from lip_dagster.simulator.s3objects import write_object
from lip_dagster_tests.s3stream.conftest import cloudtrail_records, trail_file

S3_SOURCES = set(S3_DEMO_SOURCES)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("LIP_HOME", str(h))
    monkeypatch.delenv("LIP_BACKEND", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    for var in ("LIP_CLOUDTRAIL_QUEUE_URL", "LIP_CLOUDTRAIL_LANDING_DIR", "LIP_CLOUDTRAIL_PREFIX"):
        monkeypatch.delenv(var, raising=False)
    return h


def lake_ids(home: Path, source: str) -> list[str]:
    ids = []
    for p in (home / "lake" / f"source={source}").rglob("*.ndjson.gz"):
        ids += [orjson.loads(x)["_lip"]["id"] for x in gzip.decompress(p.read_bytes()).splitlines()]
    return ids


def now_hour() -> str:
    return hour_of(datetime.now(UTC))


def lake_layout_partner(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[EmbeddedBackend, dg.Definitions]:
    """A producer ``partner`` writing lake objects into its landing directory, as one
    S3Source block declares it, with the embedded backend."""
    from lip_dagster.components.s3 import S3Source

    monkeypatch.setenv("T_BUCKET", "unused-on-embedded")
    component = S3Source(name="partner", lake_layout=True, bucket_env="T_BUCKET")
    lip = EmbeddedBackend(Settings.from_env())
    built = dg.Definitions.merge(
        component.build_defs(dg.ComponentTree.for_test().load_context),
        dg.Definitions(resources={"lip": lip}),
    )
    return lip, built


def test_definitions_hold_the_three_s3_sources(home: Path) -> None:
    d = defs()
    graph = d.resolve_asset_graph()
    for name in S3_SOURCES:
        node = graph.get(dg.AssetKey(name))
        assert node.tags["lip/pattern"] == "s3"
        assert node.partitions_def is not None and node.freshness_policy is not None
        assert d.resolve_job_def(f"{name}_transcode").tags == {
            "lip/source": name,
            "lip/pattern": "s3",
        }
        assert d.resolve_sensor_def(f"{name}_arrivals").job_name == f"{name}_transcode"
    checks = {k.name for k in graph.asset_check_keys if k.asset_key == dg.AssetKey("cloudtrail")}
    assert "quarantine_empty" in checks


def test_sensor_batches_new_objects_and_moves_its_cursor(home: Path) -> None:
    counts = populate_landing(home, hours=2, events_per_hour=30, seed=1)
    d = defs()
    sensor = d.resolve_sensor_def("cloudtrail_arrivals")
    lip = EmbeddedBackend(Settings.from_env())
    instance = dg.DagsterInstance.ephemeral()
    result = sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, resources={"lip": lip}, definitions=d)
    )
    keys = [
        k for r in result.run_requests for k in r.run_config["ops"]["cloudtrail"]["config"]["keys"]
    ]
    assert len(keys) == 6  # three regions x two hours; the digests are skipped
    assert not any("CloudTrail-Digest" in k for k in keys)
    assert any("/o-aa111bb222/" in k for k in keys)  # the organization trail's layout
    listing = orjson.loads(result.cursor)["listing"]
    assert listing["since"] is not None
    assert len(listing["handled"]) == 6 + 2  # the digests were seen, and skipped

    # the runs the sensor asked for land every record
    job = d.resolve_job_def("cloudtrail_transcode")
    for req in result.run_requests:
        run = job.execute_in_process(
            run_config=req.run_config,
            partition_key=req.partition_key,
            tags=req.tags,
            instance=instance,
        )
        assert run.success
    assert len(lake_ids(home, "cloudtrail")) == counts["cloudtrail"]

    # the next tick sees those runs succeeded: it commits the listing state and
    # finds nothing new
    again = sensor.evaluate_tick(
        dg.build_sensor_context(
            instance=instance, cursor=result.cursor, resources={"lip": lip}, definitions=d
        )
    )
    assert again.run_requests == [] and again.skip_message
    assert orjson.loads(again.cursor)["listing"] == listing
    assert orjson.loads(again.cursor)["batches"] == []
    stored = lip.cursors.get("cloudtrail", "s3-listing")
    assert stored is not None and orjson.loads(stored.value) == listing


def test_a_run_without_keys_finds_lands_and_reports(home: Path) -> None:
    counts = populate_landing(home, hours=3, events_per_hour=30, seed=2)
    d = defs()
    targets = {}
    for name in sorted(S3_SOURCES):
        run = d.resolve_job_def(f"{name}_transcode").execute_in_process(
            partition_key=now_hour(),
            tags={"lip/source": name, "lip/mode": "poll"},
            instance=dg.DagsterInstance.ephemeral(),
        )
        assert run.success
        assert len(lake_ids(home, name)) == counts[name]
        mats = run.asset_materializations_for_node(name)
        targets[name] = next(m for m in mats if m.partition == now_hour())
        assert targets[name].metadata["events_total"].value == counts[name]
        assert len({m.partition for m in mats}) >= 3
        checks = {e.check_name: e.passed for e in run.get_asset_check_evaluations()}
        assert checks["quarantine_empty"] is True
    # skipped on purpose: the digest files and the ownership challenge
    assert targets["cloudtrail"].metadata["skipped_housekeeping"].value == 3
    assert targets["cloudflare"].metadata["skipped_housekeeping"].value == 1


def test_a_bad_object_turns_the_check_red_and_the_run_goes_on(home: Path) -> None:
    populate_landing(home, hours=1, events_per_hour=30, seed=3)
    write_object(home / "landing" / "github_audit_stream", "2026/11/27/13/bad.json.gz", b"not gzip")
    d = defs()
    run = d.resolve_job_def("github_audit_stream_transcode").execute_in_process(
        partition_key=now_hour(),
        tags={"lip/source": "github_audit_stream", "lip/mode": "poll"},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert run.success
    assert len(lake_ids(home, "github_audit_stream")) == 30
    (check,) = [e for e in run.get_asset_check_evaluations() if e.check_name == "quarantine_empty"]
    assert check.passed is False and check.metadata["quarantined"].value == 1
    target = next(
        m
        for m in run.asset_materializations_for_node("github_audit_stream")
        if m.partition == now_hour()
    )
    assert target.metadata["objects_quarantined"].value == 1


def test_lake_layout_objects_are_registered_without_a_run(home: Path, monkeypatch) -> None:
    lip, built = lake_layout_partner(monkeypatch)
    sensor = built.resolve_sensor_def("partner_arrivals")
    root = home / "landing" / "partner"
    hour = now_hour()
    good = object_key("partner", hour, datetime.now(UTC), str(uuid.uuid4()))
    write_object(root, good, compress(b'{"a":1,"_lip":{"source":"partner","id":"1"}}\n'))
    other = object_key("okta", hour, datetime.now(UTC), str(uuid.uuid4()))
    write_object(root, other, compress(b"{}\n"))
    write_object(root, "notes/readme.txt", b"hello")
    result = sensor.evaluate_tick(
        dg.build_sensor_context(resources={"lip": lip}, definitions=built)
    )
    # no run collects anything: the one run asked for checks the hour's content
    (checks,) = result.run_requests
    assert checks.asset_selection == [] and checks.partition_key == hour
    mat, check = result.asset_events
    assert isinstance(mat, dg.AssetMaterialization)
    assert mat.asset_key == dg.AssetKey("partner") and mat.partition == hour
    assert mat.metadata["object"].value.endswith(good)
    assert lip.quarantine.count("partner") == 2  # another source's object, a stray file
    # and the quarantine check turns red at once, without waiting for a run
    assert isinstance(check, dg.AssetCheckEvaluation) and check.check_name == "quarantine_empty"
    assert check.passed is False and check.metadata["quarantined"].value == 2
    again = sensor.evaluate_tick(
        dg.build_sensor_context(cursor=result.cursor, resources={"lip": lip}, definitions=built)
    )
    assert again.asset_events == []  # a key seen again is not registered again


def test_a_lake_layout_source_that_stops_writing_pages_like_any_other(
    home: Path, monkeypatch
) -> None:
    """Registered objects are landings for the alert sensor's freshness on data: a
    producer writing into the lake layout is fresh while it writes, and its page opens
    once it stops, like any collected source."""
    from lip_dagster.alerts import health

    lip, built = lake_layout_partner(monkeypatch)
    instance = dg.DagsterInstance.ephemeral()
    spec = next(s for s in health.declared_sources(built.get_repository_def()))
    assert spec.name == "partner" and spec.fail_window is not None
    written = datetime.now(UTC)
    key = object_key("partner", hour_of(written), written, str(uuid.uuid4()))
    write_object(
        home / "landing" / "partner",
        key,
        compress(b'{"a":1,"_lip":{"source":"partner","id":"1"}}\n'),
    )
    result = built.resolve_sensor_def("partner_arrivals").evaluate_tick(
        dg.build_sensor_context(instance=instance, resources={"lip": lip}, definitions=built)
    )
    for event in result.asset_events:
        if isinstance(event, dg.AssetMaterialization):
            instance.report_runless_asset_event(event)

    now = written.timestamp() + 60
    assert health.source_health(instance, spec, lip, now=now).freshness == "pass"
    later = now + spec.fail_window.total_seconds() + 3600
    stale = health.source_health(instance, spec, lip, now=later)
    assert stale.freshness == "fail"
    assert stale.last_landed_at is not None


def test_missing_bucket_variable_names_itself_when_a_tick_needs_it(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lip_dagster.components.s3 import S3Source
    from lip_dagster.errors import ConfigError
    from lip_dagster.resources import AwsBackend

    monkeypatch.delenv("T_MISSING", raising=False)
    component = S3Source(name="cloudtrail", format="cloudtrail", bucket_env="T_MISSING")
    aws = AwsBackend(
        Settings.from_env(
            {
                "LIP_HOME": str(home),
                "LIP_BACKEND": "aws",
                "LIP_AWS_REGION": "us-east-1",
                "LIP_S3_BUCKET": "lake-{source}",
            }
        )
    )
    with pytest.raises(ConfigError, match="T_MISSING"):
        component.finder(aws)


def test_lip_run_runs_one_s3_source_once(home: Path) -> None:
    from lip_dagster.cli import run_source

    counts = populate_landing(home, hours=1, events_per_hour=30, seed=4)
    totals = run_source("cloudflare", None)
    assert totals["events"] == counts["cloudflare"]
    assert run_source("cloudflare", None)["events"] == 0  # nothing new the second time


def test_new_objects_after_the_first_run_are_picked_up(home: Path) -> None:
    from lip_dagster.cli import run_source

    first = populate_landing(home, hours=1, events_per_hour=30, seed=5)
    assert run_source("github_audit_stream", None)["events"] == first["github_audit_stream"]
    later = datetime.now(UTC) + timedelta(minutes=1)
    second = populate_landing(home, now=later, hours=1, events_per_hour=30, seed=6)
    assert run_source("github_audit_stream", None)["events"] == second["github_audit_stream"]


# ---------------------------------------------------------------------------------
# acknowledged only once landed, through Dagster itself (embedded backend, listing)


def small_source(home: Path, monkeypatch: pytest.MonkeyPatch, **kw: object) -> tuple:
    """An S3Source without step retry delays, its definitions, backend and instance."""
    from lip_dagster.components.s3 import S3Source

    monkeypatch.setenv("T_BUCKET", "unused-on-embedded")
    component = S3Source(
        name="cloudtrail",
        format="cloudtrail",
        bucket_env="T_BUCKET",
        step_retries=0,
        **kw,  # type: ignore[arg-type]
    )
    lip = EmbeddedBackend(Settings.from_env())
    built = dg.Definitions.merge(
        component.build_defs(dg.ComponentTree.for_test().load_context),
        dg.Definitions(resources={"lip": lip}),
    )
    return component, built, lip, dg.DagsterInstance.ephemeral()


def tick(built: dg.Definitions, lip: EmbeddedBackend, instance, cursor=None) -> dg.SensorResult:
    """One sensor tick as the daemon runs it: its asset events go to the instance."""
    result = built.resolve_sensor_def("cloudtrail_arrivals").evaluate_tick(
        dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"lip": lip}, definitions=built
        )
    )
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    return result


def requested(result: dg.SensorResult) -> list[str]:
    return sorted(
        k for r in result.run_requests for k in r.run_config["ops"]["cloudtrail"]["config"]["keys"]
    )


def launch(built: dg.Definitions, instance, req: dg.RunRequest) -> dg.ExecuteInProcessResult:
    return built.resolve_job_def("cloudtrail_transcode").execute_in_process(
        run_config=req.run_config,
        partition_key=req.partition_key,
        tags=req.tags,
        instance=instance,
        raise_on_error=False,
    )


def test_a_backlog_lands_in_a_few_large_runs_not_many_small_ones(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source's runs go one at a time and each pays its launch: an organization
    trail's 120 new objects must not wait for six launches in a row."""
    root = home / "landing" / "cloudtrail"
    when = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    stamp = when.strftime("%Y%m%dT%H%MZ")
    for i in range(120):
        account = f"{100000000000 + i}"
        key = (
            f"AWSLogs/o-abc123/{account}/CloudTrail/us-east-1/{when:%Y/%m/%d}/"
            f"{account}_CloudTrail_us-east-1_{stamp}_{i:016d}.json.gz"
        )
        write_object(root, key, trail_file(cloudtrail_records(2, when, seed=i)))
    _, built, lip, instance = small_source(home, monkeypatch, keys_per_run=20)
    first = tick(built, lip, instance)
    sizes = [len(r.run_config["ops"]["cloudtrail"]["config"]["keys"]) for r in first.run_requests]
    assert sizes == [60, 60]
    for req in first.run_requests:
        assert launch(built, instance, req).success
    assert len(set(lake_ids(home, "cloudtrail"))) == 240
    assert tick(built, lip, instance, first.cursor).run_requests == []


def test_a_trickle_keeps_runs_of_keys_per_run(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = home / "landing" / "cloudtrail"
    when = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for i in range(30):
        key = f"AWSLogs/111122223333/CloudTrail/us-east-1/{when:%Y/%m/%d}/t{i:03d}.json.gz"
        write_object(root, key, trail_file(cloudtrail_records(1, when, seed=i)))
    _, built, lip, instance = small_source(home, monkeypatch, keys_per_run=20)
    first = tick(built, lip, instance)
    sizes = [len(r.run_config["ops"]["cloudtrail"]["config"]["keys"]) for r in first.run_requests]
    assert sizes == [20, 10]


def test_a_run_that_fails_past_its_retries_loses_nothing(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = populate_landing(home, hours=1, events_per_hour=30, seed=11)
    _, built, lip, instance = small_source(home, monkeypatch)
    first = tick(built, lip, instance)
    assert first.run_requests
    with monkeypatch.context() as m:
        m.setattr(lip.lake, "put", _refuse)
        for req in first.run_requests:
            assert not launch(built, instance, req).success
    assert lake_ids(home, "cloudtrail") == []

    second = tick(built, lip, instance, first.cursor)
    assert requested(second) == requested(first)  # all of them, again
    for req in second.run_requests:
        assert launch(built, instance, req).success
    assert len(set(lake_ids(home, "cloudtrail"))) == counts["cloudtrail"]
    assert tick(built, lip, instance, second.cursor).run_requests == []


def test_a_run_stopped_from_the_ui_records_the_hours_it_landed(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Terminated after its first object landed (Dagster interrupts the run with a
    BaseException), a transcode run still records that object's hours, with their
    counts: the retry finds them duplicates, and would report 0 events for them."""
    from lip_dagster.s3stream.transcode import Transcoder

    populate_landing(home, hours=2, events_per_hour=30, seed=5)
    _, built, lip, instance = small_source(home, monkeypatch)
    first = tick(built, lip, instance)
    (req,) = first.run_requests[:1]
    transcode = Transcoder.transcode
    done: list[str] = []

    def stopped_after_one(self, key, result=None):  # type: ignore[no-untyped-def]
        if done:
            raise dg.DagsterExecutionInterruptedError()
        done.append(key)
        return transcode(self, key, result)

    monkeypatch.setattr(Transcoder, "transcode", stopped_after_one)
    assert not launch(built, instance, req).success
    landed = Counter(
        hour_of(datetime.fromisoformat(orjson.loads(line)["eventTime"].replace("Z", "+00:00")))
        for p in (home / "lake" / "source=cloudtrail").rglob("*.ndjson.gz")
        for line in gzip.decompress(p.read_bytes()).splitlines()
    )
    assert done and landed
    recorded = {
        r.asset_materialization.partition: r.asset_materialization.metadata["events"].value
        for r in instance.fetch_materializations(dg.AssetKey("cloudtrail"), limit=50).records
        if r.asset_materialization is not None
    }
    assert recorded == dict(landed)


def test_objects_no_run_can_land_are_quarantined_and_the_source_stays_red(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lip_dagster.alerts.health import declared_sources, source_health
    from lip_dagster.s3stream.objects import LocalObjectSource

    populate_landing(home, hours=1, events_per_hour=10, seed=12)
    _, built, lip, instance = small_source(home, monkeypatch, max_batch_runs=2, keys_per_run=50)
    result = tick(built, lip, instance)
    (req,) = result.run_requests
    n = len(req.run_config["ops"]["cloudtrail"]["config"]["keys"])
    with monkeypatch.context() as m:
        m.setattr(LocalObjectSource, "head", _deny)
        for _ in range(2):
            (req,) = result.run_requests
            assert not launch(built, instance, req).success
            result = tick(built, lip, instance, result.cursor)
    assert result.run_requests == []  # bounded
    assert lip.quarantine.count("cloudtrail") == n
    spec = next(s for s in declared_sources(built.get_repository_def()) if s.name == "cloudtrail")
    health = source_health(instance, spec, lip)
    assert health.last_run_status == "FAILURE"  # the `run` incident stays open
    assert "quarantine_empty" in health.failing_checks  # and the quarantine is red now
    assert tick(built, lip, instance, result.cursor).run_requests == []


def ui_backfill(
    built: dg.Definitions, asset: str, instance: dg.DagsterInstance, hour: str | None = None
) -> dg.ExecuteInProcessResult:
    """Materialize ``hour`` (by default an hour three hours back) from the UI (a
    backfill): no keys, no ``lip/mode`` tag."""
    return built.resolve_implicit_job_def_def_for_assets([dg.AssetKey(asset)]).execute_in_process(
        partition_key=hour or hour_of(datetime.now(UTC) - timedelta(hours=3)),
        asset_selection=[dg.AssetKey(asset)],
        instance=instance,
        raise_on_error=False,
    )


def step_failure(run: dg.ExecuteInProcessResult) -> str:
    (failure,) = [e for e in run.all_events if e.event_type_value == "STEP_FAILURE"]
    return str(failure.step_failure_data.user_failure_data.description)


def test_a_backfill_of_an_hour_fails_saying_how_s3_sources_are_collected(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate_landing(home, hours=1, events_per_hour=10, seed=13)
    _, built, _, instance = small_source(home, monkeypatch)
    run = ui_backfill(built, "cloudtrail", instance)
    assert not run.success
    message = step_failure(run)
    assert "lip run cloudtrail" in message and "cloudtrail_transcode" in message
    assert lake_ids(home, "cloudtrail") == []
    # nothing was taken: `lip run` (or the sensor) still finds every object
    from lip_dagster.cli import run_source

    assert run_source("cloudtrail", None)["events"] > 0


def test_a_backfill_of_a_lake_layout_source_fails_instead_of_turning_green(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, built = lake_layout_partner(monkeypatch)
    instance = dg.DagsterInstance.ephemeral()
    hour = hour_of(datetime.now(UTC) - timedelta(hours=3))
    run = ui_backfill(built, "partner", instance, hour)
    assert not run.success
    assert instance.fetch_materializations(dg.AssetKey("partner"), limit=5).records == []
    message = step_failure(run)
    assert "partner_arrivals" in message
    assert hour in message


def test_a_long_settle_window_survives_the_sensor_cursor(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from lip_dagster.s3stream.pending import RunOutcome

    component, _, lip, _ = small_source(home, monkeypatch, settle_seconds=3600)
    landing = home / "landing" / "cloudtrail"
    t0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC).timestamp()

    def write(name: str, t: float, seed: int) -> str:
        key = f"AWSLogs/1/CloudTrail/r/2026/03/01/{name}.json.gz"
        write_object(landing, key, trail_file(cloudtrail_records(2, seed=seed)))
        os.utime(landing / key, (t, t))
        return key

    old = write("old", t0, 1)
    write("new", t0 + 1200, 2)  # 20 minutes after: `old` is within the hour's window

    def landed(ids):  # every requested run succeeded
        return {i: RunOutcome("landed") for i in ids}

    now = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    cursor = None
    for n in range(1, 5):
        result = component.evaluate_tick(lip, cursor, dg.AssetKey("cloudtrail"), now, landed)
        keys = requested(result)
        if n == 1:
            assert old in keys
        else:
            assert old not in keys  # not requested again on every tick
        cursor = result.cursor
        write(f"t{n}", t0 + 1200 + n, 10 + n)


def test_lip_run_stops_holding_the_listing_for_an_object_it_can_never_read(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lip run` in listing mode, one object denied on every run while newer ones keep
    landing: the stored listing state stays small (it is one DynamoDB item), and the
    object is put in quarantine once instead of being held as new forever."""
    import os

    from lip_dagster.components import s3 as s3component
    from lip_dagster.s3stream.objects import LocalObjectSource

    monkeypatch.setattr(s3component, "MAX_HELD_KEYS", 30)
    component, _, lip, _ = small_source(home, monkeypatch, settle_seconds=60)
    landing = home / "landing" / "cloudtrail"
    t0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC).timestamp()

    def write(name: str, t: float) -> str:
        key = f"AWSLogs/1/CloudTrail/r/2026/03/01/{name}.json.gz"
        write_object(landing, key, trail_file(cloudtrail_records(1, seed=int(t) % 9973)))
        os.utime(landing / key, (t, t))
        return key

    stuck = write("stuck", t0)
    real_head = LocalObjectSource.head

    def head(self: LocalObjectSource, key: str) -> object:
        if key == stuck:
            _deny(self, key)
        return real_head(self, key)

    monkeypatch.setattr(LocalObjectSource, "head", head)
    sizes: list[int] = []
    tried: list[bool] = []
    for run in range(8):
        for i in range(10):
            write(f"r{run}_{i}", t0 + 600 * (run + 1) + i)
        report, _ = component.land(lip, [])
        tried.append(stuck in [o.key for o in report.failed])
        stored = lip.cursors.get("cloudtrail", "s3-listing")
        sizes.append(len(orjson.loads(stored.value)["handled"]))
    assert max(sizes) <= 30 + 10  # the hold, plus one run's objects in the window
    # read again on the first runs, then given up, not retried on every run forever
    assert tried[:2] == [True, True] and tried[-2:] == [False, False]
    assert lip.quarantine.count("cloudtrail") == 1
    assert len(set(lake_ids(home, "cloudtrail"))) == 80  # everything readable landed


def _deny(self: object, key: str) -> None:
    from lip_dagster.s3stream.objects import ObjectReadError

    raise ObjectReadError(f"could not read {key}: permission denied", key=key, code="AccessDenied")


def _refuse(*_a: object, **_k: object) -> None:
    from lip_dagster.errors import LakeWriteError

    raise LakeWriteError("lake refused the put (simulated: disk full)")


def test_sensor_runs_page_as_live_collection_and_launchpad_runs_as_a_backfill(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The arrival sensor's runs are the source's live collection (``run|cloudtrail``).
    A backfill of an hour is refused by design (nothing to fetch, nothing lost) and
    pages nobody; a Launchpad run with object keys that fails is a backfill
    (``backfill|cloudtrail``), which the sensor's runs do not close."""
    from lip_dagster.alerts.health import declared_sources, source_health
    from lip_dagster.alerts.incidents import problems_of
    from lip_dagster.s3stream.objects import LocalObjectSource

    populate_landing(home, hours=1, events_per_hour=10, seed=21)
    _, built, lip, instance = small_source(home, monkeypatch, max_batch_runs=5)
    (spec,) = declared_sources(built.get_repository_def())

    def paging() -> list[str]:
        health = source_health(instance, spec, lip)
        now = datetime.now(UTC).timestamp()
        return sorted(p.key for p in problems_of(health, now) if p.kind != "check")

    def launchpad(keys: list[str]) -> dg.ExecuteInProcessResult:
        return built.resolve_job_def("cloudtrail_transcode").execute_in_process(
            run_config={"ops": {"cloudtrail": {"config": {"keys": keys}}}},
            partition_key=now_hour(),
            instance=instance,
            raise_on_error=False,
        )

    result = tick(built, lip, instance)
    (req,) = result.run_requests
    keys = requested(result)
    with monkeypatch.context() as m:
        m.setattr(LocalObjectSource, "head", _deny)
        assert not launch(built, instance, req).success
        assert paging() == ["run|cloudtrail"]
        assert not ui_backfill(built, "cloudtrail", instance).success  # refused
        assert paging() == ["run|cloudtrail"]
        assert not launchpad(keys).success
        assert paging() == ["backfill|cloudtrail", "run|cloudtrail"]
    result = tick(built, lip, instance, result.cursor)  # the sensor asks for them again
    (req,) = result.run_requests
    assert launch(built, instance, req).success
    assert paging() == ["backfill|cloudtrail"]  # the live collection is fine: still open
    health = source_health(instance, spec, lip)
    (problem,) = [p for p in problems_of(health, 0) if p.kind == "backfill"]
    assert "access denied" in problem.message and "Launchpad" in problem.message
    assert launchpad(keys).success
    assert paging() == []


def test_a_launchpad_run_whose_objects_cannot_be_read_says_to_launch_it_again(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Object keys given from the Launchpad (to read them again) that cannot be read:
    the sensor never requests a manual run's keys, so the error must not promise it
    would; it says how to read them again. The sensor's own runs still say it does."""
    from lip_dagster.cli import failure_message
    from lip_dagster.s3stream.objects import LocalObjectSource

    populate_landing(home, hours=1, events_per_hour=10, seed=23)
    _, built, lip, instance = small_source(home, monkeypatch, max_batch_runs=3)
    first = tick(built, lip, instance)
    (req,) = first.run_requests
    keys = requested(first)
    with monkeypatch.context() as m:
        m.setattr(LocalObjectSource, "head", _deny)
        sensor_run = launch(built, instance, req)
        assert not sensor_run.success
        said = failure_message(sensor_run)
        assert "The sensor requests them again, up to 3 runs" in said
        assert f"{len(keys)} of {len(keys)} objects could not be read, none was read" in said
        second = tick(built, lip, instance, first.cursor)
        assert requested(second) == keys  # as it said
        (req,) = second.run_requests
    assert launch(built, instance, req).success
    third = tick(built, lip, instance, second.cursor)
    assert third.run_requests == []  # all landed and acknowledged

    with monkeypatch.context() as m:  # someone reads them again by hand, and cannot
        m.setattr(LocalObjectSource, "head", _deny)
        manual = built.resolve_job_def("cloudtrail_transcode").execute_in_process(
            run_config={"ops": {"cloudtrail": {"config": {"keys": keys}}}},
            partition_key=now_hour(),
            instance=instance,
            raise_on_error=False,
        )
    assert not manual.success
    said = failure_message(manual)
    assert "could not be read" in said and "sensor requests them again" not in said
    assert "cloudtrail_transcode" in said and "again" in said
    assert tick(built, lip, instance, third.cursor).run_requests == []  # nobody asks again
    landed = lake_ids(home, "cloudtrail")
    again = built.resolve_job_def("cloudtrail_transcode").execute_in_process(
        run_config={"ops": {"cloudtrail": {"config": {"keys": keys}}}},
        partition_key=now_hour(),
        instance=instance,
        raise_on_error=False,
    )
    assert again.success and lake_ids(home, "cloudtrail") == landed  # as it says: no copy


S3_BLOCK = {"name": "trail", "format": "cloudtrail", "bucket_env": "LIP_TEST_TRAIL_BUCKET"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sensor_seconds", 0),  # a tick as often as the daemon can, listing the bucket
        ("sensor_seconds", -60),
        ("keys_per_run", 0),
        ("max_runs_per_tick", 0),
        ("max_keys_per_tick", -1),
        ("max_batch_runs", 0),
        ("settle_seconds", -1),
        ("content_check_minutes", -5),
        ("page_events", 0),
        ("freshness_fail_minutes", 0),
        ("freshness_warn_minutes", 0),  # read as "no warning" while it says 0 minutes
        ("freshness_warn_minutes", 60),  # not before the 60-minute failure
        ("step_retries", -1),
        ("step_retry_delay_seconds", -30),
    ],
)
def test_a_number_that_makes_no_sense_is_refused_as_the_yaml_loads_naming_it(
    field: str, value: int
) -> None:
    from lip_dagster.components.s3 import S3Source

    with pytest.raises(Exception, match=field):
        S3Source.resolve_from_dict({**S3_BLOCK, field: value})
    assert S3Source.resolve_from_dict(S3_BLOCK)


@pytest.mark.parametrize("value", ["0", "-1", "16MB"])
def test_a_record_size_limit_that_makes_no_sense_is_refused_naming_option_and_source(
    value: str,
) -> None:
    """max_record_bytes: 0 refused every record of every object as too large."""
    from lip_dagster.components.s3 import S3Source
    from lip_dagster.errors import ConfigError

    source = S3Source.resolve_from_dict({**S3_BLOCK, "options": {"max_record_bytes": value}})
    with pytest.raises(ConfigError, match="max_record_bytes") as info:
        source.build_defs(None)  # type: ignore[arg-type]
    assert "'trail'" in str(info.value)
    typo = S3Source.resolve_from_dict({**S3_BLOCK, "options": {"max_record_byte": 1024}})
    with pytest.raises(ConfigError, match=r"'trail'.*max_record_byte"):
        typo.build_defs(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"options": {"dataset": "audit"}},
        {"keys_per_run": 50},
        {"max_runs_per_tick": 4},
        {"max_batch_runs": 5},
        {"page_events": 1000},
    ],
)
def test_a_transcoding_setting_on_a_lake_layout_source_is_refused_at_load(change: dict) -> None:
    """A lake-layout source registers its producer's objects without a run: no run
    batches its keys or reads its records, so these were ignored as they loaded."""
    from lip_dagster.components.s3 import S3Source

    (field,) = change
    block = {"name": "partner", "lake_layout": True, "bucket_env": "T_BUCKET"}
    with pytest.raises(Exception, match=rf"{field}.*lake_layout"):
        S3Source.resolve_from_dict({**block, **change})
    assert S3Source.resolve_from_dict({**block, "content_check_minutes": 30})


def test_content_check_minutes_on_a_transcoded_source_is_refused_at_load() -> None:
    """Only lake-layout hours get a run of checks alone; a transcoded hour is checked
    by the run that landed it, so the setting did nothing."""
    from lip_dagster.components.s3 import S3Source

    with pytest.raises(Exception, match=r"content_check_minutes.*lake_layout"):
        S3Source.resolve_from_dict({**S3_BLOCK, "content_check_minutes": 30})
