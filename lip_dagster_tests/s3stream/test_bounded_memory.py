"""A 200 MB vendor object is transcoded with bounded memory: the transcode runs in a
child process whose peak resident set (VmHWM, else ``getrusage``) is measured,
against a moto server of its own (so the object's bytes live in neither the test
process nor the child)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import orjson
import pytest
from boto3.s3.transfer import TransferConfig

from lip_dagster.simulator.processes import moto_server
from lip_dagster.simulator.s3objects import stream_cloudtrail_file

OBJECT_BYTES = 200 * 1024 * 1024
KEY = (
    "AWSLogs/111122223333/CloudTrail/us-east-2/2026/03/01/"
    "111122223333_CloudTrail_us-east-2_20260301T1200Z_BigBigBigBigBig0.json.gz"
)

CHILD = r"""
import json, resource, sys

def peak_kb():
    # VmHWM belongs to this program's own address space; ru_maxrss on Linux keeps
    # the peak of the process image before exec (the forking test runner)
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

from pathlib import Path
import boto3
from lip_dagster.lake.backends import LocalLake, LocalQuarantine
from lip_dagster.lake.writer import LakeWriter
from lip_dagster.s3stream.formats import vendor_format
from lip_dagster.s3stream.objects import S3ObjectSource
from lip_dagster.s3stream.transcode import Transcoder
from lip_dagster.state.sqlite import SqliteDedupeStore

endpoint, bucket, key, home = sys.argv[1:5]
home = Path(home)
s3 = boto3.session.Session(region_name="us-east-1").client("s3", endpoint_url=endpoint)
writer = LakeWriter(LocalLake(home / "lake", home / "tmp"), SqliteDedupeStore(home / "state.db"))
tc = Transcoder("cloudtrail", vendor_format("cloudtrail"), S3ObjectSource(s3, bucket),
                writer, LocalQuarantine(home / "quarantine"))
s3.head_bucket(Bucket=bucket)
before = peak_kb()
report = tc.run([key])
writer.close()
peak = peak_kb()
print(json.dumps({"events": report.result.events, "status": report.objects[0].status,
                  "rss_before_kb": before, "rss_peak_kb": peak}))
"""


@pytest.fixture(scope="module")
def private_moto() -> Iterator[str]:
    with moto_server() as url:
        yield url


def test_a_200_mb_object_is_transcoded_in_bounded_memory(
    private_moto: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    path = tmp_path / "big.json.gz"
    start = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    # ~6 KB records of mostly incompressible content: 52k records, ~210 MB gzipped
    n = 52_000
    size = stream_cloudtrail_file(path, n, start, start + timedelta(hours=3), pad_bytes=5000)
    assert size >= OBJECT_BYTES * 0.95, size
    s3 = boto3.session.Session(region_name="us-east-1").client("s3", endpoint_url=private_moto)
    s3.create_bucket(Bucket="vendor-big")
    s3.upload_file(
        str(path), "vendor-big", KEY, Config=TransferConfig(multipart_chunksize=64 << 20)
    )
    path.unlink()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, private_moto, "vendor-big", KEY, str(tmp_path / "home")],
        check=True,
        capture_output=True,
        timeout=300,
        env={**os.environ},
    )
    got = orjson.loads(out.stdout.splitlines()[-1])
    assert got["status"] == "landed" and got["events"] == n
    growth = (got["rss_peak_kb"] - got["rss_before_kb"]) * 1024
    print(f"object {size} B gzipped; child RSS {got}")
    # the object never sits whole in memory: growth is a small fraction of its size
    assert growth < size / 3, (growth, size, got)
    assert got["rss_peak_kb"] * 1024 < size * 0.75, got
