"""Vendor JSON with lone UTF-16 surrogate escapes: read with U+FFFD in their place,
everything else exactly as orjson reads it."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from lip_dagster.jsontext import dumps_deep, loads, loads_repairing_surrogates, repair_surrogates

FIXTURES = Path(__file__).parent / "fixtures"
EVENT = (FIXTURES / "okta/system_log_event.json").read_bytes()
MESSAGE = b'"displayMessage": "User logout from Okta"'


def with_message(text: bytes) -> bytes:
    """The recorded Okta event with ``text`` (raw JSON string content) as its message."""
    assert EVENT.count(MESSAGE) == 1
    return EVENT.replace(MESSAGE, b'"displayMessage": "' + text + b'"')


def test_valid_json_is_read_by_orjson_unchanged() -> None:
    assert loads(EVENT) == (orjson.loads(EVENT), 0)
    assert repair_surrogates(EVENT) == (EVENT, 0)


@pytest.mark.parametrize(
    "text",
    [
        rb"party \ud83d\ude00",  # an escaped pair
        rb"party \uD83D\uDE00",  # upper-case hex
        "party \U0001f600".encode(),  # the emoji as UTF-8
        rb"\\ud83d is how it is escaped",  # an escaped backslash, then text
    ],
)
def test_paired_surrogates_and_emoji_are_untouched(text: bytes) -> None:
    body = with_message(text)
    assert loads(body) == (json.loads(body), 0)
    assert repair_surrogates(body) == (body, 0)


@pytest.mark.parametrize(
    ("text", "expected", "count"),
    [
        (rb"party \ud83d", "party \ufffd", 1),  # high, cut before its low half
        (rb"\ude00 party", "\ufffd party", 1),  # low without its high half
        (rb"\uD83Dx", "\ufffdx", 1),
        (rb"\ud83d\ud83d\ude00", "\ufffd\U0001f600", 1),  # a high, then a pair
        (rb"\ude00\ud83d", "\ufffd\ufffd", 2),  # the halves in the wrong order
        (rb"\\\ud83d", "\\\ufffd", 1),  # an escaped backslash, then a lone high
    ],
)
def test_lone_surrogates_become_the_replacement_character(
    text: bytes, expected: str, count: int
) -> None:
    body = with_message(text)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)
    want = json.loads(body)
    want["displayMessage"] = expected
    assert loads(body) == (want, count)
    orjson.dumps(loads(body)[0])  # the writer can serialize what was read


def test_keys_and_nested_strings_are_repaired_and_the_result_is_stable() -> None:
    body = EVENT.replace(b'"browser": "FIREFOX"', rb'"browser\udc00": ["FIRE\ud800FOX"]')
    doc, count = loads(body)
    assert count == 2
    assert doc["client"]["userAgent"]["browser\ufffd"] == ["FIRE\ufffdFOX"]
    assert loads(body) == (doc, count)


@pytest.mark.parametrize(
    "body",
    [
        b'{"uuid": "a",',  # cut short
        rb'{"uuid": "\ud83d",',  # cut short, with a lone surrogate before the cut
        rb'{"m": "\ud83d", "n": NaN}',  # NaN is not JSON, whatever else is in the body
        b'{"m": "\xed\xa0\xbd"}',  # a surrogate encoded as UTF-8 bytes: not UTF-8
        b"<html>sign in</html>",
    ],
)
def test_invalid_json_still_raises_orjsons_error(body: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError) as first:
        orjson.loads(body)
    with pytest.raises(orjson.JSONDecodeError) as ours:
        loads(body)
    assert ours.value.msg == first.value.msg and ours.value.pos == first.value.pos
    assert loads_repairing_surrogates(body) is None


def test_what_orjson_reads_but_cannot_write_is_kept_whole_for_quarantine() -> None:
    """1,024 levels: orjson's reading limit, four times what it writes and past the
    interpreter's default recursion limit."""
    body = b'{"a":' * 1023 + b'"\\ud83d\\ude00 caf\\u00e9"' + b"}" * 1023
    value = orjson.loads(body)
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(value)
    assert dumps_deep(value) == body  # the same document: compact, non-ASCII escaped
