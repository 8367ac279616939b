"""Vendor JSON that orjson refuses only for a lone UTF-16 surrogate escape.

RFC 8259's grammar allows any ``\\uXXXX`` escape in a string, so a vendor that cuts a
user-controlled string in the middle of an emoji sends ``"party \\ud83d"``: valid JSON
that stdlib ``json`` reads, but orjson refuses it ("no low surrogate in string"), and a
Python str holding a lone surrogate could not be written to the lake anyway (it has no
UTF-8 form, and orjson.dumps refuses it). Refusing would block a polled endpoint on that
page forever, make the vendor drop a webhook delivery, and keep an S3 record out of the
lake. Instead each lone surrogate escape becomes U+FFFD, the Unicode replacement
character, and the event lands.

The repair rewrites the escapes in the raw bytes and parses them with orjson again, so
everything else orjson refuses (invalid UTF-8, ``NaN``, numbers that overflow, nesting
deeper than 1024 levels) is still refused with the same error. It is deterministic: the
same bytes give the same events, so event ids stay stable and redeliveries deduplicate.

Callers keep ``orjson.loads`` as their fast path and call ``loads_repairing_surrogates``
only after it raised; ``loads`` bundles both for callers that parse once per page.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from typing import Any

import orjson

__all__ = [
    "MAX_WRITE_DEPTH",
    "REPLACEMENT_ESCAPE",
    "dumps_deep",
    "loads",
    "loads_repairing_surrogates",
    "repair_surrogates",
    "writable",
]

MAX_WRITE_DEPTH = 254
"""Levels of nested arrays and objects ``orjson.dumps`` writes; one more raises
"Recursion limit reached". Its reader takes 1,024, so a document between the two is
read and cannot be written back: not to the lake, not to a webhook buffer."""

REPLACEMENT_ESCAPE = b"\\ufffd"

# One JSON escape, left to right: a surrogate pair (kept), a lone surrogate (group 1,
# replaced), or any other escape (kept; consuming it means the "\\" of an escaped
# backslash never starts an escape of its own). Backslashes occur only inside strings
# in valid JSON; anywhere else the second parse refuses the document as before.
_ESCAPE = re.compile(
    rb"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb"|(u[dD][89a-fA-F][0-9a-fA-F]{2})"
    rb"|.)",
    re.DOTALL,
)
# Any surrogate escape at all: a search in C that spares the escape-by-escape pass for
# bytes that hold none.
_ANY_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def repair_surrogates(data: bytes) -> tuple[bytes, int]:
    """``data`` with every lone surrogate escape (``\\ud800``-``\\udfff`` not part of a
    high-low pair) replaced by ``\\ufffd``, and how many were replaced. Paired escapes,
    literal characters and every other escape are left byte for byte, and the length
    does not change (six bytes for six), so a parser's error offsets in the result are
    offsets in ``data`` too."""
    count = 0

    def fix(m: re.Match[bytes]) -> bytes:
        nonlocal count
        if m.group(1) is None:
            return m.group(0)
        count += 1
        return REPLACEMENT_ESCAPE

    if _ANY_SURROGATE.search(data) is None:
        return data, 0
    fixed = _ESCAPE.sub(fix, data)
    return (fixed, count) if count else (data, 0)


def loads_repairing_surrogates(data: bytes) -> tuple[Any, int] | None:
    """The second try after ``orjson.loads(data)`` failed: the parsed value with lone
    surrogates replaced by U+FFFD and how many escapes were replaced, or None when
    ``data`` holds no lone surrogate escape or is still not JSON once they are replaced
    (the caller then reports orjson's first error, as it always did)."""
    fixed, count = repair_surrogates(data)
    if not count:
        return None
    try:
        return orjson.loads(fixed), count
    except orjson.JSONDecodeError:
        return None


def loads(data: bytes) -> tuple[Any, int]:
    """``orjson.loads(data)`` and 0; when orjson refuses ``data`` only for lone
    surrogate escapes, the repaired value and how many were replaced. Any other
    refusal raises orjson's ``JSONDecodeError`` for the original bytes, unchanged."""
    try:
        return orjson.loads(data), 0
    except orjson.JSONDecodeError:
        repaired = loads_repairing_surrogates(data)
        if repaired is None:
            raise
        return repaired


def writable(value: Any, levels: int = 0) -> bool:
    """Whether orjson can write ``value`` once it sits ``levels`` arrays or objects
    deep (an event inside the message or line that carries it): false when it is
    nested past ``MAX_WRITE_DEPTH``, which ``orjson.loads`` reads without complaint."""
    for _ in range(levels):
        value = [value]
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True


_DEEP_LOCK = threading.Lock()
_DEEP_RECURSION_LIMIT = 8_000


def dumps_deep(value: Any) -> bytes:
    """``value`` as compact JSON however deep orjson read it (up to 1,024 levels),
    for keeping what the lake cannot hold in quarantine, byte for byte in meaning.
    Stdlib ``json`` writes any depth its recursion limit allows, which is raised for
    the call (the interpreter's default, 1,000, is just below orjson's 1,024). Slow,
    and only for the rare value orjson refused."""
    with _DEEP_LOCK:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, _DEEP_RECURSION_LIMIT))
        try:
            # ASCII escapes: a string may hold what has no UTF-8 form (a lone surrogate)
            return json.dumps(value, separators=(",", ":")).encode()
        finally:
            sys.setrecursionlimit(limit)
