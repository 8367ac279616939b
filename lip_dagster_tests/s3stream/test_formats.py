"""Vendor formats: records found where each vendor puts them, housekeeping objects
skipped on purpose, ids and times read from the vendor's own fields."""

from __future__ import annotations

import orjson
import pytest

from lip_dagster.errors import ConfigError
from lip_dagster.lake.layout import hour_of
from lip_dagster.s3stream.formats import vendor_format
from lip_dagster.s3stream.streams import BadObjectError, Problems

from .conftest import FIXTURES, cloudflare_audit, fixture, github_events, gz, ndjson

TRAIL_KEY = (
    "AWSLogs/111122223333/CloudTrail/us-east-2/2014/07/16/"
    "111122223333_CloudTrail_us-east-2_20140716T1555Z_Mu0KsOhtH1ar15ZZ.json.gz"
)


def test_cloudtrail_file_yields_its_records_with_id_and_time() -> None:
    fmt = vendor_format("cloudtrail")
    body = gz((FIXTURES / "cloudtrail/console_login.json").read_bytes())
    problems = Problems()
    (rec,) = list(fmt.records(iter([body]), problems))
    assert not problems
    assert fmt.identity.event_id(rec) == "3fcfb182-98f8-4744-bd45-10aEXAMPLE"
    assert hour_of(fmt.identity.event_time(rec)) == "2014-07-16-15:00"


@pytest.mark.parametrize(
    "key",
    [
        TRAIL_KEY,
        "trails/AWSLogs/o-aa111bb222/111122223333/CloudTrail/eu-west-1/2026/03/01/"
        "111122223333_CloudTrail_eu-west-1_20260301T1005Z_Mu0KsOhtH1ar15ZZ.json.gz",
        "o-aa111bb222/AWSLogs/o-aa111bb222/111122223333/CloudTrail/eu-west-1/2026/03/01/"
        "111122223333_CloudTrail_eu-west-1_20260301T1005Z_Mu0KsOhtH1ar15ZZ.json.gz",
        "AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2026/03/01/"
        "111122223333_CloudTrail-Insight_us-east-1_20260301T1005Z_Mu0KsOhtH1ar15ZZ.json.gz",
    ],
)
def test_cloudtrail_log_keys_are_read_in_any_trail_layout(key: str) -> None:
    assert vendor_format("cloudtrail").housekeeping(key) is None


def test_cloudtrail_digests_are_skipped() -> None:
    digest = fixture("cloudtrail/digest.json")
    assert vendor_format("cloudtrail").housekeeping(digest["digestS3Object"])
    assert vendor_format("cloudtrail").housekeeping(
        "AWSLogs/o-aa111bb222/111122223333/CloudTrail-Digest/us-east-1/2026/03/01/x.json.gz"
    )


def test_a_digest_body_is_not_a_trail_file() -> None:
    body = gz((FIXTURES / "cloudtrail/digest.json").read_bytes())
    with pytest.raises(BadObjectError, match="unknown format"):
        list(vendor_format("cloudtrail").records(iter([body]), Problems()))


@pytest.mark.parametrize("shape", ["ndjson", "array"])
def test_github_stream_reads_ndjson_or_an_array(shape: str) -> None:
    fmt = vendor_format("github_audit_stream")
    events = github_events(5)
    raw = ndjson(events) if shape == "ndjson" else orjson.dumps(events, option=orjson.OPT_INDENT_2)
    problems = Problems()
    got = list(fmt.records(iter([gz(raw)]), problems))
    assert got == events and not problems
    assert fmt.identity.event_id(got[0]) == "doc-0-0"
    assert fmt.identity.event_time(got[0]).isoformat().startswith("2026-03-01T10:00:00")


def test_github_stream_key_depth_is_not_assumed() -> None:
    fmt = vendor_format("github_audit_stream")
    for key in ("2026/03/10/15/a.json.gz", "stream/2026/03/01/10/15/b.json.gz", "c.json.gz"):
        assert fmt.housekeeping(key) is None


def test_logpush_challenge_is_skipped_and_logs_are_read() -> None:
    fmt = vendor_format("cloudflare_logpush", {"dataset": "audit"})
    challenge = fixture("cloudflare/ownership_challenge_response.json")["result"]["filename"]
    assert fmt.housekeeping(challenge)
    assert (
        fmt.housekeeping("logs/20260301/20260301T100000Z_20260301T100500Z_d4ad58a8.log.gz") is None
    )
    events = cloudflare_audit(3)
    got = list(fmt.records(iter([gz(ndjson(events))]), Problems()))
    assert [fmt.identity.event_id(e) for e in got] == [e["ID"] for e in events]


def test_logpush_identity_follows_the_dataset() -> None:
    fmt = vendor_format("cloudflare_logpush", {"dataset": "http_requests"})
    rec = fixture("cloudflare/http_request.json")
    assert fmt.identity.event_id(rec) == "6b70b5f3ec9f0a1c"
    assert hour_of(fmt.identity.event_time(rec)) == "2021-11-30-20:00"


def test_unknown_formats_and_datasets_fail_at_load() -> None:
    with pytest.raises(ConfigError, match="unknown S3 format"):
        vendor_format("syslog")
    with pytest.raises(ConfigError, match="dataset"):
        vendor_format("cloudflare_logpush", {"dataset": "firewall"})
    with pytest.raises(ConfigError, match="does not take options"):
        vendor_format("cloudtrail", {"dataset": "audit"})
