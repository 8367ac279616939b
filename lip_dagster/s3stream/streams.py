"""Streaming readers for vendor objects: gunzip, NDJSON lines and JSON arrays, each
holding at most a chunk (and one record) in memory, whatever the object's size.

A vendor object can be hundreds of MB; reading it whole would make memory a function
of the vendor's batch size. Everything here consumes an iterator of byte chunks and
yields records as it goes, so the caller can hand pages to the writer while the rest of
the object is still on the wire.

Damage is reported, never hidden: a reader notes what was wrong in a ``Problems`` log
and keeps the records it could read. The caller decides (quarantine the object, turn a
check red); nothing here drops a record silently. A record orjson refuses only for lone
UTF-16 surrogate escapes (valid JSON: a string cut mid-emoji) is not damage: it is read
with each one as U+FFFD and counted in ``Problems.surrogates_replaced``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from isal import isal_zlib

from lip_dagster.errors import LipError
from lip_dagster.jsontext import loads_repairing_surrogates, repair_surrogates

GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_OUT_CHUNK = 1 << 20
DEFAULT_MAX_RECORD_BYTES = 16 << 20
_MAX_PROBLEMS = 20


class BadObjectError(LipError):
    """A vendor object cannot be read at all (not gzip, unknown format). Raised by the
    readers and caught by the transcoder, which quarantines the object; it never ends
    a run."""


@dataclass
class Problems:
    """What was wrong with one object, bounded so a garbage object cannot fill memory
    with messages. ``bad_records`` counts every bad line or array element.
    ``surrogates_replaced`` counts lone surrogate escapes read as U+FFFD: worth a
    warning, not a quarantine, so it leaves ``bool(problems)`` false."""

    messages: list[str] = field(default_factory=list)
    bad_records: int = 0
    fatal: bool = False
    surrogates_replaced: int = 0

    def add(self, message: str, *, bad_records: int = 0, fatal: bool = False) -> None:
        self.bad_records += bad_records
        self.fatal = self.fatal or fatal
        if len(self.messages) < _MAX_PROBLEMS:
            self.messages.append(message)
        elif len(self.messages) == _MAX_PROBLEMS:
            self.messages.append("... more problems not listed")

    def __bool__(self) -> bool:
        return bool(self.messages) or self.bad_records > 0


# ----------------------------------------------------------------------------- gzip


def gunzip_chunks(
    raw: Iterable[bytes], problems: Problems, out_chunk: int = DEFAULT_OUT_CHUNK
) -> Iterator[bytes]:
    """Decompress a gzip stream chunk by chunk (isal, about twice zlib's speed);
    concatenated members are one stream, as gzip defines it.

    Output comes in pieces of at most ``out_chunk`` bytes, so a small object that
    expands to gigabytes costs time, not memory. Not gzip at all raises
    ``BadObjectError``; a truncated or corrupt stream ends with a fatal problem after
    everything before the damage was yielded."""
    d = isal_zlib.decompressobj(wbits=31)
    consumed = 0
    head = b""
    started = False
    for chunk in raw:
        if not started:
            head += chunk
            if len(head) < 2:
                continue
            if head[:2] != GZIP_MAGIC:
                raise BadObjectError("not gzip: the object does not start with 1f 8b")
            started, chunk, head = True, head, b""
        data = chunk
        while data:
            if d.eof:
                if not data.strip(b"\x00"):
                    break  # zero padding after the last member
                if data[:2] != GZIP_MAGIC[: min(2, len(data))]:
                    problems.add(
                        f"{len(data)} bytes that are not gzip after compressed offset {consumed}",
                        fatal=True,
                    )
                    return
                d = isal_zlib.decompressobj(wbits=31)
            try:
                out = d.decompress(data, out_chunk)
            except isal_zlib.error as exc:
                problems.add(f"corrupt gzip near compressed offset {consumed}: {exc}", fatal=True)
                return
            rest = d.unused_data if d.eof else d.unconsumed_tail
            consumed += len(data) - len(rest)
            data = rest
            if out:
                yield out
    if not started:
        raise BadObjectError("not gzip: the object is empty" if not head else "not gzip")
    while not d.eof:  # output held back by the out_chunk bound
        try:
            out = d.decompress(b"", out_chunk)
        except isal_zlib.error as exc:
            problems.add(f"corrupt gzip at the end of the stream: {exc}", fatal=True)
            return
        if not out:
            break
        yield out
    if not d.eof:
        problems.add(
            f"truncated gzip: the stream ends after {consumed} compressed bytes", fatal=True
        )


# ---------------------------------------------------------------------------- NDJSON


def iter_lines(
    chunks: Iterable[bytes], problems: Problems, max_line_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> Iterator[tuple[int, bytes]]:
    """``(line number, line)`` for every non-blank line, without its newline.

    A line longer than ``max_line_bytes`` is skipped (noted as a bad record) while the
    rest of it streams past, so one runaway line cannot hold the object in memory."""
    buf = b""
    n = 0
    skipping = False
    for chunk in chunks:
        if skipping:
            nl = chunk.find(b"\n")
            if nl < 0:
                continue
            chunk = chunk[nl + 1 :]
            skipping = False
        buf = buf + chunk if buf else chunk
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            n += 1
            line = buf[start:nl]
            start = nl + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if line.strip():
                yield n, line
        buf = buf[start:]
        if len(buf) > max_line_bytes:
            n += 1
            problems.add(f"line {n}: longer than {max_line_bytes} bytes, skipped", bad_records=1)
            buf = b""
            skipping = True
    if buf.strip():
        n += 1
        yield n, buf[:-1] if buf.endswith(b"\r") else buf


def iter_ndjson(
    chunks: Iterable[bytes], problems: Problems, max_line_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> Iterator[dict[str, Any]]:
    """One JSON object per line. A line that is not a JSON object is noted and
    skipped; every other line is kept."""
    loads = orjson.loads
    for n, line in iter_lines(chunks, problems, max_line_bytes):
        try:
            rec = loads(line)
        except orjson.JSONDecodeError as exc:
            repaired = loads_repairing_surrogates(line)
            if repaired is None:
                problems.add(f"line {n}: not JSON ({exc.msg})", bad_records=1)
                continue
            rec, count = repaired
            problems.surrogates_replaced += count
        if not isinstance(rec, dict):
            problems.add(f"line {n}: a JSON {type(rec).__name__}, not an object", bad_records=1)
            continue
        yield rec


# ----------------------------------------------------------------------- JSON arrays

# A '}' that may close an array element: followed (after whitespace) by ',' or ']'.
_CANDIDATE = re.compile(rb"\}[ \t\r\n]*(?=[,\]])")
_KEY_PREFIX = re.compile(rb'\{[ \t\r\n]*"(?:[^"\\]|\\.){1,100}"[ \t\r\n]*:')
_WS = b" \t\r\n"
_CLOSE, _COMMA, _OPEN = 0x5D, 0x2C, 0x7B

RECORDS_HEADER = re.compile(rb'[ \t\r\n]*\{[ \t\r\n]*"Records"[ \t\r\n]*:[ \t\r\n]*\[')
ARRAY_HEADER = re.compile(rb"[ \t\r\n]*\[")
_HEADER_BYTES = 256


def _byte_offset(segment: bytes, char_pos: int) -> int:
    """orjson reports error positions in characters; the splitter works in bytes."""
    text = segment.decode("utf-8", "surrogateescape")
    return len(text[:char_pos].encode("utf-8", "surrogateescape"))


def _loads_run(run: bytes, problems: Problems) -> Any:
    """``orjson.loads(run)``; when that fails and ``run`` holds lone surrogate escapes,
    the value read with each as U+FFFD (counted in ``problems``). Whatever else is
    wrong raises the error found with the escapes replaced: it lies at the same offset
    in ``run`` (the repair keeps the length), so a prefix cut inside a string after a
    lone surrogate still reads as cut short, not as damaged."""
    try:
        return orjson.loads(run)
    except orjson.JSONDecodeError:
        fixed, count = repair_surrogates(run)
        if not count:
            raise
    value = orjson.loads(fixed)
    problems.surrogates_replaced += count
    return value


def _parse_one(segment: bytes, problems: Problems) -> tuple[Any, tuple[str, int] | None]:
    """``(value, None)`` if ``segment`` is one JSON value (lone surrogate escapes read
    as U+FFFD), else ``(None, (message, byte offset of the error))``."""
    try:
        return _loads_run(segment, problems), None
    except orjson.JSONDecodeError as exc:
        return None, (exc.msg, _byte_offset(segment, exc.pos))


@dataclass
class _Ok:
    end: int


@dataclass
class _Bad:
    at: int
    why: str


class _Eof:
    pass


class _ArraySplitter:
    """The elements of one JSON array of objects, from a stream of chunks.

    Elements are found without a byte-by-byte Python scanner: candidate ends are
    ``}`` followed by ``,`` or ``]`` (a regex, in C); a candidate is a *probable* end
    when the braces and brackets before it balance (``bytes.count``, in C); and the run
    of elements up to the last probable end is parsed by one
    ``orjson.loads(b"[" + run + b"]")``. A run that parses can only end on a true
    element end (the bytes fix the JSON structure), so the fast path is exact, not a
    guess: braces inside strings only send it to the slow path, which parses one
    element at a time. A syntax error is located by orjson's error position; the
    elements before it are kept, the damaged one is noted, and reading resumes at the
    next element that opens the way the first one did (``{"eventVersion":``).
    """

    def __init__(
        self, chunks: Iterator[bytes], buf: bytes, problems: Problems, max_record_bytes: int
    ) -> None:
        self.chunks = chunks
        self.buf = buf
        self.base = 0  # offset of buf[0] in the decompressed stream
        self.problems = problems
        self.max_record_bytes = max_record_bytes
        self.item_prefix: bytes | None = None
        self.boundary: re.Pattern[bytes] | None = None

    def _fill(self) -> bool:
        for chunk in self.chunks:
            if chunk:
                self.buf += chunk
                return True
        return False

    def _drop(self, upto: int) -> None:
        if upto:
            self.buf = self.buf[upto:]
            self.base += upto

    def items(self) -> Iterator[dict[str, Any]]:
        """Every element; ``self.buf`` then starts just after the closing ``]``
        (or is empty when the stream ended first)."""
        pos = 0
        need_comma = False
        while True:
            n = len(self.buf)
            while pos < n and self.buf[pos] in _WS:
                pos += 1
            if pos >= n:
                self._drop(pos)
                pos = 0
                if not self._fill():
                    self.problems.add(
                        f"truncated JSON: the array is not closed (the stream ends at byte "
                        f"{self.base})",
                        fatal=True,
                    )
                    return
                continue
            c = self.buf[pos]
            if c == _CLOSE:
                self._drop(pos + 1)
                return
            if need_comma:
                if c == _COMMA:
                    pos += 1
                    need_comma = False
                    continue
                if not self._resync(pos, f"expected ',' or ']' at byte {self.base + pos}"):
                    return
                pos, need_comma = 0, False
                continue
            self._drop(pos)
            pos = 0
            outcome = yield from self._elements()
            if isinstance(outcome, _Ok):
                pos, need_comma = outcome.end, True
            elif isinstance(outcome, _Bad):
                if not self._resync(outcome.at, outcome.why):
                    return
                pos, need_comma = 0, False
            else:
                self.problems.add(
                    f"truncated JSON: the stream ends inside an array element at byte "
                    f"{self.base + len(self.buf)}",
                    bad_records=1,
                    fatal=True,
                )
                self.buf = b""
                return

    def _elements(self) -> Iterator[dict[str, Any]]:
        """Elements from ``buf[0]`` on; returns where the last one ended, where a
        damaged one is, or that the stream ended inside one."""
        if self.buf[0] != _OPEN:
            return _Bad(0, "an array element is not a JSON object")
        scanned = 0
        cands: list[int] = []
        probable: list[int] = []
        depth = 0
        fast_tried = 0
        slow_next = 0
        if self.boundary is None:
            # guess how elements open from the first one; the parse below checks it
            self._remember_prefix(self.buf)
        while True:
            buf = self.buf
            if self.boundary is not None:
                # the usual case: '},' before an element that opens like the first one
                end = self._last_boundary(buf)
                if end > fast_tried:
                    fast_tried = end
                    try:
                        parsed = _loads_run(b"[" + buf[:end] + b"]", self.problems)
                    except orjson.JSONDecodeError:
                        parsed = None  # a lookalike inside a string, or damage
                    if parsed is not None:
                        yield from self._objects(parsed)
                        return _Ok(end)
            for m in _CANDIDATE.finditer(buf, scanned):
                end = m.start() + 1
                prev = cands[-1] if cands else 0
                depth += (
                    buf.count(b"{", prev, end)
                    - buf.count(b"}", prev, end)
                    + buf.count(b"[", prev, end)
                    - buf.count(b"]", prev, end)
                )
                cands.append(end)
                if depth == 0:
                    probable.append(end)
            if cands:
                scanned = cands[-1]
            if probable and probable[-1] > fast_tried:
                fast_tried = end = probable[-1]
                run = b"[" + buf[:end] + b"]"
                try:
                    parsed = _loads_run(run, self.problems)
                except orjson.JSONDecodeError as exc:
                    err_at = _byte_offset(run, exc.pos) - 1
                    good = [p for p in probable if p <= err_at] if err_at < end else []
                    if good:
                        try:
                            parsed = _loads_run(b"[" + buf[: good[-1]] + b"]", self.problems)
                            end = good[-1]
                        except orjson.JSONDecodeError:
                            parsed = None
                    else:
                        parsed = None
                if parsed is not None:
                    self._remember_prefix(buf)
                    yield from self._objects(parsed)
                    return _Ok(end)
            while slow_next < len(cands):
                end = cands[slow_next]
                slow_next += 1
                value, err = _parse_one(buf[:end], self.problems)
                if err is None:
                    self._remember_prefix(buf)
                    yield from self._objects([value])
                    return _Ok(end)
                msg, at = err
                if at < end:
                    return _Bad(at, f"invalid JSON ({msg})")
            if len(buf) > self.max_record_bytes:
                return _Bad(0, f"an array element is larger than {self.max_record_bytes} bytes")
            if not self._fill():
                return _Eof()

    def _objects(self, parsed: list[Any]) -> Iterator[dict[str, Any]]:
        for rec in parsed:
            if isinstance(rec, dict):
                yield rec
            else:
                self.problems.add(
                    f"an array element is a JSON {type(rec).__name__}, not an object",
                    bad_records=1,
                )

    def _remember_prefix(self, buf: bytes) -> None:
        if self.item_prefix is None:
            m = _KEY_PREFIX.match(buf)
            if m:
                self.item_prefix = m.group(0)
                self.boundary = re.compile(
                    rb"\}[ \t\r\n]*,[ \t\r\n]*(?=" + re.escape(self.item_prefix) + rb")"
                )

    def _last_boundary(self, buf: bytes) -> int:
        """End of the last element in ``buf`` that is followed by one opening like the
        first (0 if none): found in the buffer's tail first, so the cost per chunk does
        not grow with the number of elements in it."""
        assert self.boundary is not None
        n = len(buf)
        window = 1 << 16
        while True:
            lo = max(0, n - window)
            last = None
            for m in self.boundary.finditer(buf, lo):
                last = m
            if last is not None:
                return last.start() + 1
            if lo == 0:
                return 0
            window <<= 3

    def _resync(self, at: int, why: str) -> bool:
        """Skip to the next element that opens like the first one did, noting the
        damaged stretch. False when there is none (the rest of the array is noted as
        unread)."""
        where = self.base + at
        if self.item_prefix is None:
            self.problems.add(
                f"{why} at byte {where}; the rest of the array cannot be read",
                bad_records=1,
                fatal=True,
            )
            self.buf = b""
            return False
        pat = self.boundary
        assert pat is not None
        search_from = at
        keep = len(self.item_prefix) + 64
        while True:
            m = pat.search(self.buf, search_from)
            if m is not None:
                self.problems.add(
                    f"{why} at byte {where}; skipped {self.base + m.end() - where} bytes "
                    "to the next element",
                    bad_records=1,
                    fatal=True,
                )
                self._drop(m.end())
                return True
            tail = max(0, len(self.buf) - keep)
            self._drop(tail)
            search_from = 0
            if not self._fill():
                self.problems.add(
                    f"{why} at byte {where}; no element follows", bad_records=1, fatal=True
                )
                self.buf = b""
                return False


def iter_json_array(
    chunks: Iterable[bytes],
    problems: Problems,
    *,
    header: re.Pattern[bytes] = ARRAY_HEADER,
    trailer: bytes = b"",
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    head: bytes = b"",
) -> Iterator[dict[str, Any]]:
    """The objects of a JSON array (``header=ARRAY_HEADER``) or of the array under a
    top-level key (``RECORDS_HEADER``, then ``trailer=b"}"``), streamed.

    ``head`` is data already read from ``chunks`` (a sniffed prefix). Anything but the
    expected opening raises ``BadObjectError``; damage later on is noted in
    ``problems`` and every readable element is still yielded."""
    it = iter(chunks)
    buf = head
    while len(buf) < _HEADER_BYTES:
        nxt = next(it, None)
        if nxt is None:
            break
        buf += nxt
    m = header.match(buf)
    if m is None:
        raise BadObjectError(f"unknown format: the content does not open with {header.pattern!r}")
    splitter = _ArraySplitter(it, buf[m.end() :], problems, max_record_bytes)
    yield from splitter.items()
    rest = splitter.buf.strip(_WS)
    while not rest:
        nxt = next(it, None)
        if nxt is None:
            break
        rest = nxt.strip(_WS)
    if trailer and rest.startswith(trailer):
        rest = rest[len(trailer) :].strip(_WS)
    elif trailer and not problems.fatal:
        problems.add(f"the array is not followed by {trailer.decode()!r}", fatal=True)
        return
    extra = len(rest)
    for chunk in it:
        extra += len(chunk.strip(_WS))
    if extra and not problems.fatal:
        problems.add(f"{extra} bytes of unexpected data after the JSON", fatal=True)
