"""A GitHub audit-stream object that starts with a long run of blank space (a small
gzip that expands to 64 MB of newlines, then events) is read with bounded memory:
the format sniff drops blank space chunk by chunk instead of gathering it."""

from __future__ import annotations

import tracemalloc
import zlib
from collections.abc import Iterator

from lip_dagster.s3stream.formats import vendor_format
from lip_dagster.s3stream.streams import Problems

from .conftest import github_events, ndjson

MB = 1 << 20
BLANK_MB = 64


def blank_then_events(events: bytes) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    parts = [z.compress(b"\n" * MB) for _ in range(BLANK_MB)]
    parts += [z.compress(events), z.flush()]
    return b"".join(parts)


def chunks(data: bytes, size: int = MB) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_leading_blank_space_costs_no_memory() -> None:
    events = github_events(3)
    obj = blank_then_events(ndjson(events))
    assert len(obj) < MB  # a small object ...
    fmt = vendor_format("github_audit_stream")
    problems = Problems()
    tracemalloc.start()
    try:
        got = list(fmt.records(chunks(obj), problems))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [e["_document_id"] for e in got] == [e["_document_id"] for e in events]
    assert not problems
    assert peak < 8 * MB  # ... expanding to 64 MB of newlines: a few chunks, not the run


def test_a_json_array_after_blank_space_is_still_an_array() -> None:
    import orjson

    events = github_events(2)
    obj = blank_then_events(b" \t\r\n" + orjson.dumps(events))
    got = list(vendor_format("github_audit_stream").records(chunks(obj), Problems()))
    assert [e["_document_id"] for e in got] == [e["_document_id"] for e in events]
