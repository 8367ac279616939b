"""What the receiver puts in a source's buffer, and how the drain reads it back.

One message holds events of one delivery and the time the receiver accepted it,
or the events of small deliveries committed together within one hour, under the
first one's time (``merge``)::

    {"lip": 1, "source": <name>, "arrival": <unix seconds>, "events": [...]}

gzip-compressed, except a message under ``COMPRESS_FROM`` bytes, which is kept as
plain JSON: compressing a one-event delivery costs more time than the bytes it
saves (the decoder tells the two apart by gzip's magic bytes).

The arrival time travels with the events because an event without a usable
timestamp lands under the hour it *arrived*, and the drain may run in the next hour.
Messages are compressed (JSON shrinks 6-12x) and cut below ``MAX_MESSAGE_BYTES``
so one fits SQS's 256 KiB limit after base64; a delivery larger than that is split
into several messages. The drain refuses anything else as poison (quarantine).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from isal import igzip

from lip_dagster.webhook.errors import PoisonMessage, WebhookRejected

__all__ = ["MAX_MESSAGE_BYTES", "BufferedDelivery", "decode", "encode", "finish", "merge", "pack"]

FORMAT_VERSION = 1
MAX_MESSAGE_BYTES = 180_000
"""Compressed bytes per message: base64 makes it 240,000, under SQS's 262,144 with
room for the message attributes."""
MAX_DECODED_BYTES = 64 * 1_048_576
COMPRESS_FROM = 4096
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class BufferedDelivery:
    source: str
    arrival: datetime
    events: list[dict[str, Any]]


def pack(source: str, arrival: float, events: list[dict[str, Any]]) -> bytes:
    """The message holding ``events`` as plain JSON: the half of ``encode`` that holds
    the GIL (the receiver runs it on its event loop, ``finish`` in a thread)."""
    doc = {"lip": FORMAT_VERSION, "source": source, "arrival": arrival, "events": events}
    return orjson.dumps(doc)


def finish(
    packed: bytes,
    source: str,
    arrival: float,
    events: list[dict[str, Any]],
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> list[bytes]:
    """``encode(source, arrival, events, max_bytes)`` given ``packed``, what ``pack``
    made of the same arguments: compressed (zlib and isal let other threads run
    meanwhile), and split only if it does not fit."""
    data = _compressed(packed)
    if len(data) <= max_bytes:
        return [data]
    if len(events) == 1:
        raise WebhookRejected(
            413, f"one event is larger than the buffer allows ({max_bytes} bytes compressed)"
        )
    half = len(events) // 2
    return encode(source, arrival, events[:half], max_bytes) + encode(
        source, arrival, events[half:], max_bytes
    )


def merge(packed: list[bytes], max_bytes: int = MAX_MESSAGE_BYTES) -> list[bytes]:
    """Messages holding the events of several ``pack(source, arrival, ...)`` of one
    source and arrival hour, in order, under the first one's arrival: one buffer row
    where there were many, and rows are what a group commit pays for. The drain
    files events by arrival *hour* only, so nothing it lands changes. Events are
    spliced in as bytes, not serialized again; a message holds at most half of
    ``max_bytes`` before compression, so it fits once compressed."""
    out: list[bytes] = []
    chunk: list[bytes] = []
    head = b""
    size = 0
    for data in packed:
        # ``pack`` writes the events last, after a source name and a number that
        # cannot contain this marker: the first one opens the events array.
        start = data.index(_EVENTS) + len(_EVENTS)
        events = data[start:-2]
        if chunk and size + 1 + len(events) > max_bytes // 2:
            out.append(_compressed(head + b",".join(chunk) + b"]}"))
            chunk = []
        if not chunk:
            head = data[:start]
            size = len(head) + 1
        chunk.append(events)
        size += 1 + len(events)
    if chunk:
        out.append(_compressed(head + b",".join(chunk) + b"]}"))
    return out


_EVENTS = b'"events":['


def _compressed(raw: bytes) -> bytes:
    return raw if len(raw) < COMPRESS_FROM else igzip.compress(raw, compresslevel=1, mtime=0)


def encode(
    source: str,
    arrival: float,
    events: list[dict[str, Any]],
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> list[bytes]:
    """Messages holding ``events`` in order, each at most ``max_bytes``. One event
    that cannot fit alone is refused with 413: nothing of the delivery is stored."""
    if not events:
        return []
    return finish(pack(source, arrival, events), source, arrival, events, max_bytes)


def decode(body: bytes, source: str) -> BufferedDelivery:
    """The delivery a message holds, or ``PoisonMessage`` saying why it cannot be."""
    raw = _inflate(body) if body[:2] == _GZIP_MAGIC else body
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise PoisonMessage(f"message is not JSON: {err.msg}") from None
    if not isinstance(doc, dict) or doc.get("lip") != FORMAT_VERSION:
        raise PoisonMessage("message is not a LIP webhook message (format version 1)")
    if doc.get("source") != source:
        raise PoisonMessage(f"message belongs to source {doc.get('source')!r}, not {source!r}")
    arrival = doc.get("arrival")
    events = doc.get("events")
    if not isinstance(arrival, int | float) or isinstance(arrival, bool):
        raise PoisonMessage("message has no arrival time")
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise PoisonMessage("message events must be a list of JSON objects")
    try:
        when = datetime.fromtimestamp(float(arrival), tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise PoisonMessage(f"message arrival time {arrival!r} is out of range") from None
    return BufferedDelivery(source, when, events)


def _inflate(body: bytes) -> bytes:
    try:
        inflater = zlib.decompressobj(wbits=31)
        raw = inflater.decompress(body, MAX_DECODED_BYTES)
        if inflater.unconsumed_tail:
            raise PoisonMessage(f"message inflates past {MAX_DECODED_BYTES} bytes")
        if not inflater.eof:
            raise PoisonMessage("message is truncated gzip")
    except zlib.error as err:
        raise PoisonMessage(f"message is damaged gzip: {err}") from None
    return raw
