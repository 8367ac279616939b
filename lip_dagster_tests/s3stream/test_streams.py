"""The streaming readers: every record of any chunking, damage located and noted,
readable records kept."""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterator

import orjson
import pytest

from lip_dagster.s3stream.streams import (
    RECORDS_HEADER,
    BadObjectError,
    Problems,
    gunzip_chunks,
    iter_json_array,
    iter_ndjson,
)

from .conftest import cloudtrail_records

TRICKY = ["plain", "br}ace", "{open", 'q"uote}],{', "é ü 漢", "\\}", '},{"eventVersion":']


def chunked(
    data: bytes, rng: random.Random, sizes: tuple[int, ...] = (1, 7, 300, 8192)
) -> Iterator[bytes]:
    i = 0
    while i < len(data):
        n = rng.choice(sizes)
        yield data[i : i + n]
        i += n


def tricky_records(rng: random.Random, n: int) -> list[dict]:
    recs = cloudtrail_records(n, seed=rng.randint(0, 1000))
    for r in recs:
        r["requestParameters"] = {
            "policy": rng.choice(TRICKY),
            "list": [{"a": rng.choice(TRICKY)}, {"b": [1, {"c": "}"}]}],
        }
    return recs


@pytest.mark.parametrize("seed", range(25))
def test_records_survive_any_chunking_and_formatting(seed: int) -> None:
    rng = random.Random(seed)
    recs = tricky_records(rng, rng.randint(0, 30))
    doc = json.dumps({"Records": recs}, indent=rng.choice([None, 2]), ensure_ascii=seed % 2 == 0)
    problems = Problems()
    got = list(
        iter_json_array(chunked(doc.encode(), rng), problems, header=RECORDS_HEADER, trailer=b"}")
    )
    assert got == recs
    assert not problems


def test_a_bare_json_array_streams_too() -> None:
    rng = random.Random(3)
    recs = tricky_records(rng, 40)
    problems = Problems()
    assert list(iter_json_array(chunked(json.dumps(recs).encode(), rng), problems)) == recs
    assert not problems


def test_a_damaged_record_is_skipped_and_the_rest_kept() -> None:
    recs = cloudtrail_records(10)
    doc = json.dumps({"Records": recs}).encode()
    broken = doc.replace(f'"{recs[4]["eventID"]}"'.encode(), b"nope", 1)
    problems = Problems()
    got = list(
        iter_json_array(
            iter([broken[i : i + 64] for i in range(0, len(broken), 64)]),
            problems,
            header=RECORDS_HEADER,
            trailer=b"}",
        )
    )
    assert [r["eventID"] for r in got] == [r["eventID"] for i, r in enumerate(recs) if i != 4]
    assert problems.fatal and problems.bad_records == 1
    assert "invalid JSON" in problems.messages[0]


CUT_EMOJI = ["party \ud83d", "\ude00 party", 'q"uote}],{\ud83d', '},{"eventVersion":\udbff']


@pytest.mark.parametrize("seed", range(10))
def test_lone_surrogates_are_read_as_the_replacement_character_not_damage(seed: int) -> None:
    """A string cut in the middle of an emoji (a lone ``\\ud83d``) is valid JSON that
    orjson refuses; every record is kept, with U+FFFD in place of the lone half."""
    rng = random.Random(seed)
    recs = tricky_records(rng, 20)
    cut = sorted(rng.sample(range(20), 3))
    for i in cut:
        recs[i]["requestParameters"]["policy"] = rng.choice(CUT_EMOJI)
    doc = json.dumps({"Records": recs}, indent=rng.choice([None, 2])).encode()
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(doc)
    problems = Problems()
    got = list(iter_json_array(chunked(doc, rng), problems, header=RECORDS_HEADER, trailer=b"}"))
    for i in cut:
        policy = recs[i]["requestParameters"]["policy"]
        recs[i]["requestParameters"]["policy"] = "".join(
            "\ufffd" if "\ud800" <= c <= "\udfff" else c for c in policy
        )
    assert got == recs
    assert not problems and problems.surrogates_replaced == 3


def test_ndjson_reads_lone_surrogates_as_the_replacement_character() -> None:
    problems = Problems()
    lines = [b'{"a":"x\\ud83d"}\n{"b":"\\ud83d\\ude00"}\n{"c":"\\ude00', b'y"}\n{bad\n']
    got = list(iter_ndjson(iter(lines), problems))
    assert got == [{"a": "x\ufffd"}, {"b": "\U0001f600"}, {"c": "\ufffdy"}]
    assert problems.surrogates_replaced == 2 and problems.bad_records == 1


def test_a_truncated_array_keeps_the_records_before_the_cut() -> None:
    recs = cloudtrail_records(10)
    doc = json.dumps({"Records": recs}).encode()
    cut = doc[: len(doc) * 2 // 3]
    problems = Problems()
    got = list(iter_json_array(iter([cut]), problems, header=RECORDS_HEADER, trailer=b"}"))
    assert 0 < len(got) < 10
    assert got == recs[: len(got)]
    assert problems.fatal and "truncated" in problems.messages[0]


def test_unknown_content_is_refused_with_a_reason() -> None:
    with pytest.raises(BadObjectError, match="unknown format"):
        list(iter_json_array(iter([b'{"events":[]}']), Problems(), header=RECORDS_HEADER))


def test_gunzip_streams_multi_member_and_flags_truncation_and_garbage() -> None:
    a, b = b'{"x":1}\n' * 1000, b'{"y":2}\n' * 1000
    data = gzip.compress(a) + gzip.compress(b)
    problems = Problems()
    pieces = list(
        gunzip_chunks(
            iter([data[i : i + 100] for i in range(0, len(data), 100)]), problems, out_chunk=512
        )
    )
    assert b"".join(pieces) == a + b and max(map(len, pieces)) <= 512
    assert not problems

    problems = Problems()
    out = b"".join(gunzip_chunks(iter([data[: len(data) // 3]]), problems))
    assert a.startswith(out) and problems.fatal and "truncated gzip" in problems.messages[0]

    problems = Problems()
    assert b"".join(gunzip_chunks(iter([gzip.compress(a) + b"trailing"]), problems)) == a
    assert problems.fatal

    with pytest.raises(BadObjectError, match="not gzip"):
        list(gunzip_chunks(iter([b'{"Records":[]}']), Problems()))


def test_a_gzip_bomb_costs_time_not_memory() -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB of zeros in ~64 KiB
    largest = 0
    total = 0
    for piece in gunzip_chunks(iter([bomb]), Problems(), out_chunk=1 << 20):
        largest = max(largest, len(piece))
        total += len(piece)
    assert total == 64 << 20 and largest <= 1 << 20


def test_ndjson_keeps_good_lines_around_bad_ones() -> None:
    problems = Problems()
    lines = [b'{"a":1}\n{bad\n', b'[1]\n{"b":', b"2}\r\n\n" + b'{"c":3}']
    assert list(iter_ndjson(iter(lines), problems)) == [{"a": 1}, {"b": 2}, {"c": 3}]
    assert problems.bad_records == 2 and not problems.fatal
    assert problems.messages[0].startswith("line 2:")


def test_an_overlong_line_is_skipped_without_holding_it() -> None:
    problems = Problems()
    huge = [b'{"a":1}\n', b'{"x":"' + b"y" * 5000, b"z" * 5000, b'"}\n{"b":2}\n']
    assert list(iter_ndjson(iter(huge), problems, max_line_bytes=4096)) == [{"a": 1}, {"b": 2}]
    assert problems.bad_records == 1 and "longer than 4096" in problems.messages[0]
