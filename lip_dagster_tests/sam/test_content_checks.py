"""The content checks of one partition on the local moto server (DESIGN §6.1 and
§6.6): an object with a bad key, one that is not gzip, one with a non-JSON line, one
without SSE-KMS or with a key that does not exist each turn exactly the matching
check red, with the fix. moto accepts SSE-KMS puts with a nonexistent key, so the
check looks each object's key up instead of relying on the put failing."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from lip_dagster_tests.sam.conftest import Stack, okta_events

HOUR_PREFIX = "lake/source=okta/year=2026/month=03/day=01/hour=10/"


def layout_key() -> str:
    return f"{HOUR_PREFIX}20260301T100500Z_{uuid.uuid4()}.ndjson.gz"


def envelope_line(seed: int) -> bytes:
    ev = okta_events(1, datetime(2026, 3, 1, 10, 5, tzinfo=UTC), seed=seed)[0]
    ev["_lip"] = {
        "source": "okta",
        "id": ev["uuid"],
        "pattern": "polling",
        "ingested_at": "2026-03-01T10:20:00.000000Z",
    }
    return orjson.dumps(ev) + b"\n"


def put(stack: Stack, key: str, body: bytes, **encryption: Any) -> None:
    if not encryption:
        encryption = {
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": stack.deployment.key_arn(),
        }
    stack.deployment.client("s3").put_object(
        Bucket=stack.deployment.bucket(), Key=key, Body=body, **encryption
    )


def put_bad_key(stack: Stack) -> None:
    put(stack, f"{HOUR_PREFIX}events.json.gz", gzip.compress(envelope_line(7)))


def put_not_gzip(stack: Stack) -> None:
    put(stack, layout_key(), envelope_line(8))


def put_empty_object(stack: Stack) -> None:
    """Zero bytes: stdlib gzip reads it as empty, zcat refuses it."""
    put(stack, layout_key(), b"")


def put_non_json_line(stack: Stack) -> None:
    put(stack, layout_key(), gzip.compress(envelope_line(9) + b"{not json\n"))


def put_without_sse_kms(stack: Stack) -> None:
    put(stack, layout_key(), gzip.compress(envelope_line(10)), ServerSideEncryption="AES256")


def put_with_missing_key(stack: Stack) -> None:
    put(
        stack,
        layout_key(),
        gzip.compress(envelope_line(11)),
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId="arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
    )


BREAKS: list[tuple[Callable[[Stack], None], str, str, str]] = [
    # breaker, the one check that must fail, words of the problem, words of the fix
    (put_bad_key, "lake_content", "does not match the lake layout", "move the objects"),
    (put_not_gzip, "lake_content", "not valid gzip", "re-run the partition"),
    (put_empty_object, "lake_content", "not valid gzip", "re-run the partition"),
    (put_non_json_line, "lake_content", "line is not JSON", "re-run the partition"),
    (put_without_sse_kms, "sam_object_encryption", "not encrypted with SSE-KMS", "--sse aws:kms"),
    (put_with_missing_key, "sam_object_encryption", "does not exist", "--sse-kms-key-id"),
]


@pytest.mark.parametrize(
    ("breaker", "check", "problem", "fix"), BREAKS, ids=[b[0].__name__ for b in BREAKS]
)
def test_a_bad_object_fails_exactly_its_check(
    stack: Stack, breaker: Callable[[Stack], None], check: str, problem: str, fix: str
) -> None:
    breaker(stack)
    failing = stack.failing()
    assert list(failing) == [check]
    outcome = failing[check]
    assert problem in outcome.summary and HOUR_PREFIX.removeprefix("lake/") in outcome.summary
    assert outcome.fix is not None and fix in outcome.fix


def test_objects_of_another_hour_are_not_this_partitions_problem(stack: Stack) -> None:
    put(stack, HOUR_PREFIX.replace("hour=10", "hour=11") + "junk.bin", b"junk")
    assert stack.failing() == {}
