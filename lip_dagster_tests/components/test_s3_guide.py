"""docs/s3-sources.md, "Declaring one", followed as written: its YAML block, taken from
the guide itself, makes a source whose sensor finds the objects the vendor writes into
the landing directory (the embedded backend's bucket) and whose run lands them."""

from __future__ import annotations

import gzip
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import orjson
import pytest
import yaml

from lip_dagster.components.s3 import S3Source
from lip_dagster.config import Settings
from lip_dagster.lake.layout import hour_of
from lip_dagster.resources import EmbeddedBackend
from lip_dagster.simulator.s3objects import write_object
from lip_dagster_tests.s3stream.conftest import cloudtrail_records, trail_file

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "s3-sources.md"


def guide_block() -> dict:
    (block,) = re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    doc = yaml.safe_load(block)
    assert doc["type"] == "lip_dagster.components.s3.S3Source"
    return doc["attributes"]


def test_the_guides_s3_source_finds_and_lands_what_the_vendor_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attrs = guide_block()
    landing = tmp_path / "trail-bucket"
    monkeypatch.setenv("LIP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LIP_BACKEND", raising=False)
    monkeypatch.setenv(attrs["landing_dir_env"], str(landing))
    for var in (attrs["prefix_env"], attrs["queue_env"]):
        monkeypatch.delenv(var, raising=False)
    name = attrs["name"]
    lip = EmbeddedBackend(Settings.from_env())
    d = dg.Definitions.merge(
        S3Source.resolve_from_dict(attrs).build_defs(None),  # type: ignore[arg-type]
        dg.Definitions(resources={"lip": lip}),
    )
    node = d.resolve_asset_graph().get(dg.AssetKey(name))
    assert node.tags["lip/pattern"] == "s3" and node.freshness_policy is not None
    assert {"lake_content", "quarantine_empty"} <= {c.name for c in node.check_keys}
    assert d.resolve_job_def(f"{name}_transcode").tags["lip/source"] == name

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    records = cloudtrail_records(5, hour + timedelta(minutes=10))
    key = f"AWSLogs/111122223333/CloudTrail/us-east-1/{hour:%Y/%m/%d}/trail_{hour:%H}00Z.json.gz"
    write_object(landing, key, trail_file(records))
    write_object(landing, "AWSLogs/111122223333/CloudTrail-Digest/x.json.gz", b"{}")

    instance = dg.DagsterInstance.ephemeral()
    sensor = d.resolve_sensor_def(f"{name}_arrivals")
    tick = sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, resources={"lip": lip}, definitions=d)
    )
    (request,) = tick.run_requests or []
    keys = request.run_config["ops"][name]["config"]["keys"]
    assert keys == [key]  # the digest is vendor housekeeping, not requested
    result = d.resolve_job_def(f"{name}_transcode").execute_in_process(
        run_config=request.run_config,
        tags=request.tags,
        partition_key=hour_of(datetime.now(UTC)),
        instance=instance,
        raise_on_error=False,
    )
    assert result.success
    lake = Settings.from_env().lake_dir
    (obj,) = lake.rglob("*.ndjson.gz")
    assert (
        obj.relative_to(lake)
        .as_posix()
        .startswith(f"source={name}/year={hour:%Y}/month={hour:%m}/day={hour:%d}/hour={hour:%H}/")
    )
    lines = [orjson.loads(x) for x in gzip.decompress(obj.read_bytes()).splitlines()]
    assert sorted(e["_lip"]["id"] for e in lines) == sorted(r["eventID"] for r in records)
    assert {e["_lip"]["origin"] for e in lines} == {key}


def test_a_vendor_format_written_as_the_guide_shows_is_one_class_and_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/s3-sources.md, "Adding a vendor format": the guide's class, registered with
    one line, is usable by a source's ``format:``; its housekeeping key is skipped and
    its records land under their own id and hour."""
    from dataclasses import dataclass

    from lip_dagster.lake.envelope import EventIdentity
    from lip_dagster.s3stream import formats

    (code,) = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    scope = {
        "dataclass": dataclass,
        "VendorFormat": formats.VendorFormat,
        "EventIdentity": EventIdentity,
    }
    exec(code, scope)  # noqa: S102 - the guide's own example, as a reader would paste it
    monkeypatch.setitem(formats.FORMATS, "acme_export", scope["AcmeFormat"])

    attrs = {**guide_block(), "name": "acme", "format": "acme_export"}
    attrs.update(bucket_env="LIP_ACME_BUCKET", landing_dir_env="LIP_ACME_LANDING")
    attrs.update(prefix_env="LIP_ACME_PREFIX")
    attrs.update(queue_env="LIP_ACME_QUEUE", options={})
    landing = tmp_path / "acme-bucket"
    monkeypatch.setenv("LIP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LIP_BACKEND", raising=False)
    monkeypatch.setenv("LIP_ACME_LANDING", str(landing))
    lip = EmbeddedBackend(Settings.from_env())
    d = dg.Definitions.merge(
        S3Source.resolve_from_dict(attrs).build_defs(None),  # type: ignore[arg-type]
        dg.Definitions(resources={"lip": lip}),
    )
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    events = [
        {"event_id": f"acme-{i}", "occurred_at": f"{hour:%Y-%m-%dT%H}:1{i}:00Z", "actor": "ada"}
        for i in range(3)
    ]
    body = gzip.compress(b"".join(orjson.dumps(e) + b"\n" for e in events))
    write_object(landing, f"exports/{hour:%Y/%m/%d}/batch-1.json.gz", body)
    write_object(landing, f"exports/{hour:%Y/%m/%d}/_SUCCESS", b"")

    instance = dg.DagsterInstance.ephemeral()
    tick = d.resolve_sensor_def("acme_arrivals").evaluate_tick(
        dg.build_sensor_context(instance=instance, resources={"lip": lip}, definitions=d)
    )
    (request,) = tick.run_requests or []
    assert request.run_config["ops"]["acme"]["config"]["keys"] == [
        f"exports/{hour:%Y/%m/%d}/batch-1.json.gz"
    ]
    result = d.resolve_job_def("acme_transcode").execute_in_process(
        run_config=request.run_config,
        tags=request.tags,
        partition_key=hour_of(datetime.now(UTC)),
        instance=instance,
    )
    assert result.success
    lake = Settings.from_env().lake_dir
    (obj,) = lake.rglob("*.ndjson.gz")
    assert f"source=acme/year={hour:%Y}/month={hour:%m}/day={hour:%d}/hour={hour:%H}/" in str(obj)
    lines = [orjson.loads(x) for x in gzip.decompress(obj.read_bytes()).splitlines()]
    assert sorted(e["_lip"]["id"] for e in lines) == ["acme-0", "acme-1", "acme-2"]
