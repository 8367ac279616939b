"""A lake-layout producer's objects answer to the SAM content checks like LIP's own:
the arrival sensor asks for a run of the content checks for every hour it registered
objects in, that run reads the objects where the producer wrote them (its landing
directory; its bucket and prefix on AWS, with their KMS key), and a bad object turns
the check red, naming it."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import dagster as dg
import orjson
import pytest

from lip_dagster.components.s3 import CHECKS_TAG, S3Source
from lip_dagster.config import Settings
from lip_dagster.lake.backends import LakeBackend, LocalLake, S3Lake
from lip_dagster.lake.envelope import EventIdentity
from lip_dagster.lake.layout import hour_of, object_key, partition_start
from lip_dagster.lake.writer import LakeWriter
from lip_dagster.resources import AwsBackend, EmbeddedBackend
from lip_dagster.s3stream.objects import ObjectLocation
from lip_dagster.s3stream.producer_lake import ProducerLake
from lip_dagster.sam.checks import content_outcomes
from lip_dagster.simulator.s3objects import write_object
from lip_dagster.state.sqlite import SqliteDedupeStore
from lip_dagster_tests.conftest import aws_settings

FIXTURES = Path(__file__).parent.parent / "fixtures"
OKTA = EventIdentity(id_fields=("uuid",), time_field="published")
ASSET = dg.AssetKey("partner")
CONTENT = {"lake_content", "sam_object_encryption"}


def okta_events(n: int, start: datetime) -> list[dict[str, Any]]:
    base = orjson.loads((FIXTURES / "lake" / "okta_event.json").read_bytes())
    out = []
    for i in range(n):
        t = start + timedelta(seconds=7 * i)
        out.append(
            {**base, "uuid": str(uuid.uuid4()), "published": t.strftime("%Y-%m-%dT%H:%M:%S.000Z")}
        )
    return out


def produce(lake: LakeBackend, state: Path, events: list[dict[str, Any]]) -> None:
    """What a producer in the lake layout writes: here, LIP's own writer."""
    dedupe = SqliteDedupeStore(state)
    try:
        LakeWriter(lake, dedupe).write("partner", events, OKTA, "polling")
    finally:
        dedupe.close()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("LIP_HOME", str(h))
    monkeypatch.setenv("T_BUCKET", "unused-on-embedded")
    monkeypatch.delenv("LIP_BACKEND", raising=False)
    return h


def partner(**options: Any) -> tuple[S3Source, EmbeddedBackend, dg.Definitions]:
    component = S3Source(name="partner", lake_layout=True, bucket_env="T_BUCKET", **options)
    lip = EmbeddedBackend(Settings.from_env())
    built = dg.Definitions.merge(
        component.build_defs(dg.ComponentTree.for_test().load_context),
        dg.Definitions(resources={"lip": lip}),
    )
    return component, lip, built


def run_checks(
    built: dg.Definitions,
    request: dg.RunRequest,
    *,
    passes: bool,
    instance: dg.DagsterInstance | None = None,
) -> dict[str, dg.AssetCheckEvaluation]:
    """Run what the sensor asked for, as the daemon would: the checks alone. The
    content check is blocking, so a failing one fails the run, as it fails the run
    of a source LIP collects."""
    job = built.resolve_job_def("partner_transcode").get_subset(
        asset_selection=set(), asset_check_selection=set(request.asset_check_keys or [])
    )
    result = job.execute_in_process(
        partition_key=request.partition_key,
        tags=request.tags,
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert result.success is passes
    assert result.get_asset_materialization_events() == []  # nothing is collected
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_registered_hours_get_their_content_checked_where_the_producer_wrote(
    home: Path,
) -> None:
    _, lip, built = partner()
    landing = home / "landing" / "partner"
    now = datetime.now(UTC)
    good_hour = hour_of(now - timedelta(hours=1))
    bad_hour = hour_of(now)
    produce(
        LocalLake(landing, home / "producer-tmp"),
        home / "producer.db",
        okta_events(40, partition_start(good_hour))
        + okta_events(3, now.replace(minute=0, second=0, microsecond=0)),
    )
    broken = object_key("partner", bad_hour, now, str(uuid.uuid4()))
    write_object(landing, broken, b'{"not": "gzip"}\n')

    result = built.resolve_sensor_def("partner_arrivals").evaluate_tick(
        dg.build_sensor_context(definitions=built, resources={"lip": lip})
    )
    registered = {
        e.partition for e in result.asset_events if isinstance(e, dg.AssetMaterialization)
    }
    assert registered == {good_hour, bad_hour}
    requests = {r.partition_key: r for r in result.run_requests}
    assert set(requests) == {good_hour, bad_hour}  # one run of checks per hour
    for r in requests.values():
        assert r.asset_selection == []  # nothing to collect: checks alone
        assert {k.name for k in r.asset_check_keys or []} == CONTENT
        assert r.tags[CHECKS_TAG] == "content" and r.tags["lip/source"] == "partner"

    good = run_checks(built, requests[good_hour], passes=True)
    assert good["lake_content"].passed
    assert good["lake_content"].metadata["events"].value == 40
    bad = run_checks(built, requests[bad_hour], passes=False)
    assert not bad["lake_content"].passed
    problems = bad["lake_content"].metadata["problems"].value
    assert any(broken in p and "not valid gzip" in p for p in problems)
    assert bad["lake_content"].metadata["events"].value == 3  # the good object was read too


def test_an_hour_is_checked_at_once_then_at_most_once_per_window(home: Path) -> None:
    component, lip, _ = partner(content_check_minutes=10)
    landing = home / "landing" / "partner"
    t0 = datetime.now(UTC).replace(minute=5, second=0, microsecond=0)
    hour = hour_of(t0)

    def write_one(at: datetime) -> None:
        key = object_key("partner", hour, at, str(uuid.uuid4()))
        write_object(landing, key, b"")  # an empty object: registration only

    def tick(at: datetime, cursor: str | None) -> dg.SensorResult:
        return component.evaluate_tick(lip, cursor, ASSET, at, lambda ids: {})

    write_one(t0)
    first = tick(t0, None)
    assert [r.partition_key for r in first.run_requests] == [hour]

    write_one(t0 + timedelta(minutes=1))
    second = tick(t0 + timedelta(minutes=1), first.cursor)
    assert len(second.asset_events) == 1  # registered now, checked later
    assert second.run_requests == []

    third = tick(t0 + timedelta(minutes=9), second.cursor)
    assert third.run_requests == []
    # ten minutes after the last check run: the object that came since gets one,
    # though nothing new arrived in between
    fourth = tick(t0 + timedelta(minutes=10, seconds=1), third.cursor)
    assert [r.partition_key for r in fourth.run_requests] == [hour]
    assert tick(t0 + timedelta(minutes=30), fourth.cursor).run_requests == []


def test_an_object_filed_in_the_next_hour_does_not_fail_the_sensor(home: Path) -> None:
    """A producer whose clock runs a little ahead (or that files an event stamped a
    minute in the future) writes into the hour that has not started: that hour is no
    partition yet, and registering it or asking for its checks failed every tick until
    it started, holding back the objects of the hour that had."""
    _, lip, built = partner()
    landing = home / "landing" / "partner"
    now = datetime.now(UTC)
    this_hour, next_hour = hour_of(now), hour_of(now + timedelta(hours=1))
    write_object(landing, object_key("partner", this_hour, now, str(uuid.uuid4())), b"")
    write_object(landing, object_key("partner", next_hour, now, str(uuid.uuid4())), b"")
    sensor = built.resolve_sensor_def("partner_arrivals")

    result = sensor.evaluate_tick(
        dg.build_sensor_context(definitions=built, resources={"lip": lip})
    )
    assert {e.partition for e in result.asset_events} == {this_hour}
    assert [r.partition_key for r in result.run_requests] == [this_hour]

    # once the next hour has started, its objects get their content checked
    component = S3Source(name="partner", lake_layout=True, bucket_env="T_BUCKET")
    later = component.evaluate_tick(
        lip, result.cursor, ASSET, now + timedelta(hours=1), lambda ids: {}
    )
    assert [r.partition_key for r in later.run_requests] == [next_hour]


# ------------------------------------------------------------------------- on AWS


@pytest.fixture
def aws(aws_env: str, tmp_path: Path) -> Iterator[tuple[AwsBackend, str, str]]:
    run = uuid.uuid4().hex[:8]
    backend = AwsBackend(aws_settings(aws_env, tmp_path / "home", run))
    kms = backend.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=f"alias/lip-{run}-partner", TargetKeyId=key_id)
    backend.client("s3").create_bucket(Bucket=f"lake-{run}-partner")
    producer_bucket = f"producer-{run}"
    backend.client("s3").create_bucket(Bucket=producer_bucket)
    yield backend, producer_bucket, key_id


def test_on_aws_the_producer_bucket_is_read_under_its_prefix_with_its_kms_keys(
    aws: tuple[AwsBackend, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, bucket, key_id = aws
    s3 = backend.client("s3")
    start = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    hour = hour_of(start)
    produce(
        S3Lake(s3, lambda _s: bucket, lambda _s: key_id, prefix="out/"),
        tmp_path / "producer.db",
        okta_events(25, start),
    )
    # and one object the producer put without the source's key
    stray = object_key("partner", hour, start + timedelta(minutes=30), str(uuid.uuid4()))
    other_key = backend.client("kms").create_key()["KeyMetadata"]["KeyId"]
    s3.put_object(
        Bucket=bucket,
        Key="out/" + stray,
        Body=gzip.compress(b""),  # valid gzip, no events: only its encryption is wrong
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=other_key,
    )
    monkeypatch.setenv("P_BUCKET", bucket)
    monkeypatch.setenv("P_PREFIX", "out/")
    location = ObjectLocation("partner", bucket_env="P_BUCKET", prefix_env="P_PREFIX")
    lake = ProducerLake(lambda: backend.object_source(location))
    content, encryption = content_outcomes(backend, "partner", hour, lake=lake)
    assert content.passed, content.summary
    assert content.metadata["objects"] == 2 and content.metadata["events"] == 25
    assert not encryption.passed
    assert stray in encryption.summary and "1 more" not in encryption.summary

    # LIP's own lake holds nothing of this source: checking it finds no objects
    own, _ = content_outcomes(backend, "partner", hour)
    assert own.metadata["objects"] == 0


def test_lip_check_reads_a_producer_where_it_writes(home: Path) -> None:
    from lip_dagster.sam.cli import run_all
    from lip_dagster.sam.sources import declared_sources

    _, lip, built = partner()
    (declared,) = declared_sources(built)
    assert declared.producer is not None and declared.producer.bucket_env == "T_BUCKET"
    landing = home / "landing" / "partner"
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    produce(LocalLake(landing, home / "producer-tmp"), home / "producer.db", okta_events(12, start))
    results, partitions = run_all(lip, [declared], None)
    assert partitions["partner"] == hour_of(start)  # the newest hour the producer wrote
    content = next(o for o in results["partner"] if o.name == "lake_content")
    assert content.passed and content.metadata["events"] == 12


def test_a_producer_location_not_configured_fails_the_check_naming_the_variable(
    aws: tuple[AwsBackend, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, _, _ = aws
    monkeypatch.delenv("P_NOT_SET", raising=False)
    location = ObjectLocation("partner", bucket_env="P_NOT_SET")
    lake = ProducerLake(partial(backend.object_source, location))
    content, _ = content_outcomes(backend, "partner", "2026-03-01-10:00", lake=lake)
    assert not content.passed
    assert "P_NOT_SET" in content.summary


def test_a_bad_hour_pages_once_as_its_check_not_again_as_a_failed_run(home: Path) -> None:
    """The check run fails because its blocking check did: the check's incident names
    the hour and resolves when it passes; a run incident too would page twice for one
    bad object and send on-call to a collection that worked."""
    from lip_dagster.alerts.health import declared_sources, source_health
    from lip_dagster.alerts.incidents import problems_of

    _, lip, built = partner()
    now = datetime.now(UTC)
    hour = hour_of(now)
    broken = object_key("partner", hour, now, str(uuid.uuid4()))
    write_object(home / "landing" / "partner", broken, b"not gzip")
    instance = dg.DagsterInstance.ephemeral()
    result = built.resolve_sensor_def("partner_arrivals").evaluate_tick(
        dg.build_sensor_context(instance=instance, definitions=built, resources={"lip": lip})
    )
    run_checks(built, result.run_requests[0], passes=False, instance=instance)

    (spec,) = declared_sources(built.get_repository_def())
    health = source_health(instance, spec, lip)
    assert health.last_run_status == "FAILURE" and health.last_run_failed_by_checks
    keys = [p.key for p in problems_of(health, now.timestamp())]
    assert "check|partner:lake_content" in keys
    assert "run|partner" not in keys
