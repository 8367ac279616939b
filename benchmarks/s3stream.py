"""S3 streaming throughput: LIP's transcoder (streamed GET, isal gunzip, the JSON
array splitter, pages of 1,000 to the writer, ``_lip.origin``) versus a plain loop
(whole GET, gunzip, ``orjson.loads`` of the whole object, the same writer, the same
pages), on the same CloudTrail objects from a local moto server, in the same run.

The plain loop holds each object whole in memory; the transcoder never does. The
target is that streaming costs at most 10%: ratio >= 0.9.
"""

from __future__ import annotations

import gzip
import random
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import orjson

from lip_dagster.lake.backends import LocalLake, LocalQuarantine
from lip_dagster.lake.writer import LakeWriter
from lip_dagster.s3stream.formats import vendor_format
from lip_dagster.s3stream.objects import S3ObjectSource
from lip_dagster.s3stream.transcode import PAGE_EVENTS, Transcoder
from lip_dagster.simulator.s3objects import cloudtrail_file, cloudtrail_key, cloudtrail_records
from lip_dagster.state.sqlite import SqliteDedupeStore

SOURCE = "cloudtrail"


def _client(endpoint: str) -> Any:
    session = boto3.session.Session(
        aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
    )
    return session.client("s3", endpoint_url=endpoint)


def _upload(s3: Any, bucket: str, files: int, per_file: int) -> tuple[list[str], int, int]:
    rng = random.Random(11)
    end = datetime(2026, 11, 1, tzinfo=UTC)
    keys = []
    size = 0
    for i in range(files):
        t1 = end - timedelta(minutes=5 * (files - i))
        recs = cloudtrail_records(per_file, t1 - timedelta(minutes=5), t1, seed=i)
        body = cloudtrail_file(recs)
        key = cloudtrail_key(t1, rng)
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        keys.append(key)
        size += len(body)
    return keys, files * per_file, size


def _writer(tmp: Path) -> tuple[LakeWriter, SqliteDedupeStore]:
    dedupe = SqliteDedupeStore(tmp / "state.db")
    return LakeWriter(LocalLake(tmp / "lake", tmp / "tmp"), dedupe), dedupe


def _ours(s3: Any, bucket: str, keys: list[str], tmp: Path) -> tuple[float, int]:
    writer, dedupe = _writer(tmp)
    fmt = vendor_format("cloudtrail")
    tc = Transcoder(
        SOURCE, fmt, S3ObjectSource(s3, bucket), writer, LocalQuarantine(tmp / "quarantine")
    )
    t0 = time.perf_counter()
    try:
        report = tc.run(keys)
    finally:
        writer.close()
        dedupe.close()
    return time.perf_counter() - t0, report.result.events


def _plain(s3: Any, bucket: str, keys: list[str], tmp: Path) -> tuple[float, int]:
    writer, dedupe = _writer(tmp)
    identity = vendor_format("cloudtrail").identity
    events = 0
    t0 = time.perf_counter()
    try:
        for key in keys:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            records = orjson.loads(gzip.decompress(body))["Records"]
            for i in range(0, len(records), PAGE_EVENTS):
                res = writer.write(
                    SOURCE,
                    records[i : i + PAGE_EVENTS],
                    identity,
                    "s3",
                    extra_envelope={"origin": key},
                )
                events += res.events
    finally:
        writer.close()
        dedupe.close()
    return time.perf_counter() - t0, events


def run(
    moto_endpoint: str | None = None, files: int = 40, per_file: int = 2500, repeats: int = 5
) -> list[dict[str, Any]]:
    if moto_endpoint is None:
        from benchmarks.common import moto_server

        with moto_server() as endpoint:
            return run(endpoint, files, per_file, repeats)
    s3 = _client(moto_endpoint)
    bucket = f"bench-trail-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    keys, n, size = _upload(s3, bucket, files, per_file)
    ours_s: list[float] = []
    plain_s: list[float] = []
    for i in range(repeats):
        for name, fn, out in (("ours", _ours, ours_s), ("plain", _plain, plain_s))[
            :: 1 - 2 * (i % 2)
        ]:
            tmp = Path(tempfile.mkdtemp(prefix=f"lip-bench-s3-{name}-"))
            try:
                secs, landed = fn(s3, bucket, keys, tmp)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            if landed != n:
                raise RuntimeError(f"{name} landed {landed} of {n} records")
            out.append(secs)
    ours, plain = statistics.median(ours_s), statistics.median(plain_s)
    return [
        {
            "name": "S3 transcode, CloudTrail (local moto)",
            "events": n,
            "objects": files,
            "bytes_gzip": size,
            "events_per_s": n / ours,
            "baseline_events_per_s": n / plain,
            # each pair ran back to back: the median of pair ratios resists the drift
            # of a shared machine better than a ratio of medians
            "ratio": statistics.median(p / o for o, p in zip(ours_s, plain_s, strict=True)),
            "seconds": ours,
            "baseline_seconds": plain,
            "runs": {"ours": ours_s, "plain": plain_s},
            "target": "ratio >= 0.9",
        }
    ]


if __name__ == "__main__":
    for row in run():
        print(orjson.dumps(row, option=orjson.OPT_INDENT_2).decode())
