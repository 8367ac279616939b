"""The S3Source component through Dagster itself: definitions, the arrival sensor
(build_sensor_context + evaluate_tick), runless registration of lake-layout objects,
transcoding runs, and the quarantine check turning red."""

from __future__ import annotations

import gzip
import uuid
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
    result = sensor.evaluate_tick(dg.build_sensor_context(resources={"lip": lip}, definitions=d))
    keys = [
        k for r in result.run_requests for k in r.run_config["ops"]["cloudtrail"]["config"]["keys"]
    ]
    assert len(keys) == 6  # three regions x two hours; the digests are skipped
    assert not any("CloudTrail-Digest" in k for k in keys)
    assert any("/o-aa111bb222/" in k for k in keys)  # the organization trail's layout
    listing = orjson.loads(result.cursor)["listing"]
    assert listing["since"] is not None
    assert len(listing["handled"]) == 6 + 2  # the digests were seen, and skipped

    again = sensor.evaluate_tick(
        dg.build_sensor_context(cursor=result.cursor, resources={"lip": lip}, definitions=d)
    )
    assert again.run_requests == [] and again.skip_message
    assert orjson.loads(again.cursor)["listing"] == listing
    stored = lip.cursors.get("cloudtrail", "s3-listing")
    assert stored is not None and orjson.loads(stored.value) == listing

    # the runs the sensor asked for land every record
    job = d.resolve_job_def("cloudtrail_transcode")
    for req in result.run_requests:
        run = job.execute_in_process(
            run_config=req.run_config,
            partition_key=req.partition_key,
            tags=req.tags,
            instance=dg.DagsterInstance.ephemeral(),
        )
        assert run.success
    assert len(lake_ids(home, "cloudtrail")) == counts["cloudtrail"]


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
        tags={"lip/source": "github_audit_stream"},
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
    from lip_dagster.components.s3 import S3Source

    monkeypatch.setenv("T_BUCKET", "unused-on-embedded")
    component = S3Source(name="partner", lake_layout=True, bucket_env="T_BUCKET")
    lip = EmbeddedBackend(Settings.from_env())
    built = dg.Definitions.merge(
        component.build_defs(dg.ComponentTree.for_test().load_context),
        dg.Definitions(resources={"lip": lip}),
    )
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
    assert result.run_requests == []
    (mat,) = result.asset_events
    assert isinstance(mat, dg.AssetMaterialization)
    assert mat.asset_key == dg.AssetKey("partner") and mat.partition == hour
    assert mat.metadata["object"].value.endswith(good)
    assert lip.quarantine.count("partner") == 2  # another source's object, a stray file
    again = sensor.evaluate_tick(
        dg.build_sensor_context(cursor=result.cursor, resources={"lip": lip}, definitions=built)
    )
    assert again.asset_events == []  # a key seen again is not registered again


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
