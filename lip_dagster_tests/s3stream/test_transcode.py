"""Transcoding vendor objects into the lake through the one writer: origin recorded,
nothing landed twice, damage quarantined without losing readable records, vendor
objects untouched."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import orjson
import pytest

from lip_dagster.errors import StateError
from lip_dagster.lake.layout import OBJECT_KEY_RE
from lip_dagster.resources import EmbeddedBackend
from lip_dagster.s3stream.formats import vendor_format
from lip_dagster.s3stream.objects import LocalObjectSource, ObjectLocation
from lip_dagster.s3stream.transcode import Transcoder
from lip_dagster.simulator.s3objects import write_object

from .conftest import (
    cloudflare_audit,
    cloudtrail_records,
    github_events,
    gz,
    lake_records,
    ndjson,
    trail_file,
)

KEY = (
    "AWSLogs/111122223333/CloudTrail/us-east-2/2026/03/01/"
    "111122223333_CloudTrail_us-east-2_20260301T1105Z_Mu0KsOhtH1ar15ZZ.json.gz"
)


def transcoder(lip: EmbeddedBackend, source: str, fmt: str, **opts: str) -> Transcoder:
    objects = lip.object_source(ObjectLocation(source=source))
    return Transcoder(
        source, vendor_format(fmt, opts), objects, lip.writer(), lip.quarantine, page_events=50
    )


def landing(home: Path, source: str) -> Path:
    return home / "landing" / source


def digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_every_record_lands_once_with_its_origin(home: Path, embedded: EmbeddedBackend) -> None:
    recs = cloudtrail_records(180)  # three hours, a minute apart
    write_object(landing(home, "cloudtrail"), KEY, trail_file(recs))
    report = transcoder(embedded, "cloudtrail", "cloudtrail").run([KEY])
    assert [o.status for o in report.objects] == ["landed"]
    assert set(report.result.hours) == {"2026-03-01-10:00", "2026-03-01-11:00", "2026-03-01-12:00"}
    lines = lake_records(home, "cloudtrail")
    assert sorted(r["eventID"] for r in lines) == sorted(r["eventID"] for r in recs)
    for r in lines:
        lip = r["_lip"]
        assert lip["origin"] == KEY and lip["pattern"] == "s3" and lip["id"] == r["eventID"]
    for p in (home / "lake").rglob("*.ndjson.gz"):
        assert OBJECT_KEY_RE.match(p.relative_to(home / "lake").as_posix())


def test_reprocessing_the_same_key_lands_nothing_twice(
    home: Path, embedded: EmbeddedBackend
) -> None:
    write_object(landing(home, "cloudtrail"), KEY, trail_file(cloudtrail_records(120)))
    tc = transcoder(embedded, "cloudtrail", "cloudtrail")
    first = tc.run([KEY])
    files = sorted(p.name for p in (home / "lake").rglob("*.ndjson.gz"))
    second = tc.run([KEY, KEY])
    assert first.result.events == 120 and second.result.events == 0
    assert second.result.duplicates == 240
    assert sorted(p.name for p in (home / "lake").rglob("*.ndjson.gz")) == files
    ids = Counter(r["_lip"]["id"] for r in lake_records(home, "cloudtrail"))
    assert len(ids) == 120 and set(ids.values()) == {1}


def test_a_malformed_object_is_quarantined_and_the_others_land(
    home: Path, embedded: EmbeddedBackend
) -> None:
    root = landing(home, "github_audit_stream")
    write_object(root, "2026/03/10/15/aaaa.json.gz", gz(ndjson(github_events(10, seed=1))))
    write_object(root, "2026/03/10/15/bbbb.json.gz", b"<html>AccessDenied</html>")
    write_object(root, "2026/03/10/15/cccc.json.gz", gz(ndjson(github_events(10, seed=2))))
    before = digests(root)
    tc = transcoder(embedded, "github_audit_stream", "github_audit_stream")
    report = tc.run(sorted(k for k in before))
    assert [o.status for o in report.objects] == ["landed", "quarantined", "landed"]
    assert "not gzip" in (report.objects[1].reason or "")
    assert report.result.events == 20
    assert embedded.quarantine.count("github_audit_stream") == 1
    qdir = home / "quarantine" / "github_audit_stream"
    (data,) = qdir.glob("*.data")
    assert data.read_bytes() == b"<html>AccessDenied</html>"  # a copy of the object as found
    (reason,) = qdir.glob("*.reason.json")
    assert "bbbb.json.gz" in orjson.loads(reason.read_bytes())["reason"]
    assert digests(root) == before  # vendor objects are never modified or deleted


def test_valid_lines_of_a_partly_bad_object_are_not_lost(
    home: Path, embedded: EmbeddedBackend
) -> None:
    events = cloudflare_audit(6)
    raw = ndjson(events[:3]) + b'{"ID": "broken\n' + ndjson(events[3:])
    body = gz(raw)
    write_object(landing(home, "cloudflare"), "logs/20260301/b.log.gz", body)
    tc = transcoder(embedded, "cloudflare", "cloudflare_logpush", dataset="audit")
    report = tc.run(["logs/20260301/b.log.gz"])
    (outcome,) = report.objects
    assert outcome.status == "partial" and outcome.records == 6 and outcome.bad_records == 1
    assert "line 4" in (outcome.reason or "")
    assert {r["ID"] for r in lake_records(home, "cloudflare")} == {e["ID"] for e in events}
    assert embedded.quarantine.count("cloudflare") == 1


def test_a_lone_surrogate_lands_as_the_replacement_character_not_in_quarantine(
    home: Path, embedded: EmbeddedBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """A user agent cut in the middle of an emoji (``\\ud83d`` without its low half) is
    valid JSON: the record lands with U+FFFD, the object is not quarantined."""
    recs = cloudtrail_records(5)
    agent = recs[0]["userAgent"]  # the same in every record: the first one is cut
    raw = orjson.dumps({"Records": recs})
    assert raw.count(agent.encode()) == 5
    raw = raw.replace(agent.encode(), agent.encode() + b" \\ud83d", 1)
    write_object(landing(home, "cloudtrail"), KEY, gz(raw))
    report = transcoder(embedded, "cloudtrail", "cloudtrail").run([KEY])
    (outcome,) = report.objects
    assert outcome.status == "landed" and outcome.records == 5
    got = {r["eventID"]: r["userAgent"] for r in lake_records(home, "cloudtrail")}
    assert got == {r["eventID"]: agent for r in recs} | {recs[0]["eventID"]: agent + " \ufffd"}
    assert embedded.quarantine.count("cloudtrail") == 0
    (warning,) = [r.getMessage() for r in caplog.records if "surrogate" in r.getMessage()]
    assert "cloudtrail" in warning and KEY in warning and agent not in warning


@pytest.mark.parametrize("fmt", ["cloudtrail", "cloudflare_logpush"])
def test_a_record_nested_too_deep_to_write_is_quarantined_and_the_rest_land(
    home: Path, embedded: EmbeddedBackend, fmt: str
) -> None:
    """orjson reads 1,024 levels of nesting but writes 254: a record between the two
    was read and then crashed the writer, so its whole page stayed out of the lake,
    the run failed and every retry failed the same way. It is a bad record now."""
    deep = b'{"a":' * 300 + b"1" + b"}" * 300
    if fmt == "cloudtrail":
        recs = cloudtrail_records(5)
        recs[2]["requestParameters"] = "DEEP"
        key, opts, source, id_key = KEY, {}, "cloudtrail", "eventID"
        body = gz(orjson.dumps({"Records": recs}).replace(b'"DEEP"', deep))
    else:
        recs = cloudflare_audit(5)
        recs[2]["Metadata"] = "DEEP"
        key, opts, source, id_key = (
            "logs/20260301/d.log.gz",
            {"dataset": "audit"},
            "cloudflare",
            "ID",
        )
        body = gz(ndjson(recs).replace(b'"DEEP"', deep))
    write_object(landing(home, source), key, body)
    report = transcoder(embedded, source, fmt, **opts).run([key])
    (outcome,) = report.objects
    assert outcome.status == "partial" and outcome.records == 4 and outcome.bad_records == 1
    assert "nested deeper than" in (outcome.reason or "")
    landed = {r[id_key] for r in lake_records(home, source)}
    assert landed == {r[id_key] for i, r in enumerate(recs) if i != 2}
    assert embedded.quarantine.count(source) == 1


def test_a_truncated_trail_file_lands_what_it_holds(home: Path, embedded: EmbeddedBackend) -> None:
    body = trail_file(cloudtrail_records(200))
    write_object(landing(home, "cloudtrail"), KEY, body[: len(body) // 2])
    report = transcoder(embedded, "cloudtrail", "cloudtrail").run([KEY])
    (outcome,) = report.objects
    assert outcome.status == "partial" and 0 < outcome.records < 200
    assert "truncated" in (outcome.reason or "")
    assert len(lake_records(home, "cloudtrail")) == outcome.records


def test_housekeeping_objects_are_skipped_not_quarantined(
    home: Path, embedded: EmbeddedBackend
) -> None:
    root = landing(home, "cloudflare")
    write_object(root, "logs/ownership-challenge.txt", b"eyJhbGciOiJFUzI1NiJ9.e30.c2ln")
    report = transcoder(embedded, "cloudflare", "cloudflare_logpush", dataset="audit").run(
        ["logs/ownership-challenge.txt"]
    )
    assert [o.status for o in report.objects] == ["skipped"]
    assert embedded.quarantine.count("cloudflare") == 0
    assert lake_records(home, "cloudflare") == []


def test_an_announced_object_that_vanished_is_recorded(
    home: Path, embedded: EmbeddedBackend
) -> None:
    report = transcoder(embedded, "cloudtrail", "cloudtrail").run([KEY])
    assert [o.status for o in report.objects] == ["missing"]
    assert embedded.quarantine.count("cloudtrail") == 1


def test_local_keys_cannot_leave_the_landing_directory(home: Path) -> None:
    src = LocalObjectSource(home / "landing" / "x")
    for bad in ("../secrets.json", "/etc/passwd", "a/../../b"):
        with pytest.raises(StateError, match="refusing"):
            list(src.iter_bytes(bad))


def test_extra_envelope_keys_cannot_replace_the_fixed_ones(embedded: EmbeddedBackend) -> None:
    writer = embedded.writer()
    identity = vendor_format("cloudtrail").identity
    try:
        with pytest.raises(ValueError, match="may not replace"):
            writer.write(
                "cloudtrail", cloudtrail_records(1), identity, "s3", extra_envelope={"id": "x"}
            )
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("key", "body"),
    [
        (
            "o-aa111bb222/AWSLogs/111122223333/Config/us-east-1/2026/3/1/ConfigSnapshot/"
            "111122223333_Config_us-east-1_ConfigSnapshot_20260301T100000Z_a1b2.json.gz",
            gz(orjson.dumps({"fileVersion": "1.0", "configurationItems": [{"a": 1}]})),
        ),
        ("o-aa111bb222/AWSLogs/111122223333/Config/ConfigWritabilityCheckFile", b""),
        (
            "o-aa111bb222/AWSLogs/111122223333/elasticloadbalancing/us-east-1/ELBAccessLogTestFile",
            b"Enable AccessLog for ELB: test\n",
        ),
    ],
    ids=["config-snapshot", "config-check-file", "elb-test-file"],
)
def test_other_aws_services_sharing_the_trail_bucket_are_not_quarantined(
    home: Path, embedded: EmbeddedBackend, key: str, body: bytes
) -> None:
    """A log-archive bucket (AWS Control Tower's, or any central `AWSLogs/` bucket)
    holds AWS Config and load balancer files beside the trail, under the same
    prefix: they are not CloudTrail's, and must not turn the source red."""
    trail_key = (
        "o-aa111bb222/AWSLogs/o-aa111bb222/111122223333/CloudTrail/us-east-1/2026/03/01/"
        "111122223333_CloudTrail_us-east-1_20260301T1005Z_Mu0KsOhtH1ar15ZZ.json.gz"
    )
    root = landing(home, "cloudtrail")
    write_object(root, key, body)
    write_object(root, trail_key, trail_file(cloudtrail_records(3)))
    report = transcoder(embedded, "cloudtrail", "cloudtrail").run([key, trail_key])
    assert [o.status for o in report.objects] == ["skipped", "landed"]
    assert "Config" in (report.objects[0].reason or "") or "elastic" in (
        report.objects[0].reason or ""
    )
    assert embedded.quarantine.count("cloudtrail") == 0
    assert len(lake_records(home, "cloudtrail")) == 3
