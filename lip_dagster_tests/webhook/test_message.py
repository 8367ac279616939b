"""What the buffer holds: small deliveries as JSON, large ones gzip-compressed and
split so each message fits SQS, and anything else refused as poison."""

from __future__ import annotations

import gzip
import random

import orjson
import pytest

from lip_dagster.simulator.webhooks import WebhookSimulator
from lip_dagster.webhook.errors import PoisonMessage, WebhookRejected
from lip_dagster.webhook.message import (
    COMPRESS_FROM,
    MAX_MESSAGE_BYTES,
    decode,
    encode,
    finish,
    merge,
    pack,
)

from .conftest import fixture

ARRIVAL = 1_780_000_000.5


def test_a_small_delivery_is_one_plain_json_message() -> None:
    events = fixture("okta/event_hook_delivery.json")["data"]["events"]
    (msg,) = encode("okta_hooks", ARRIVAL, events)
    assert len(msg) < COMPRESS_FROM and orjson.loads(msg)["events"] == events
    got = decode(msg, "okta_hooks")
    assert got.events == events and got.arrival.timestamp() == ARRIVAL


def test_a_large_delivery_is_compressed_and_split_to_fit_sqs(sim: WebhookSimulator) -> None:
    events = [e for d in sim.okta_deliveries(2000, per_delivery=2000) for e in d.events]
    messages = encode("okta_hooks", ARRIVAL, events)
    assert len(messages) > 1 and all(len(m) <= MAX_MESSAGE_BYTES for m in messages)
    assert all(m[:2] == b"\x1f\x8b" for m in messages)
    assert gzip.decompress(messages[0])  # readable by stdlib gzip
    back = [e for m in messages for e in decode(m, "okta_hooks").events]
    assert back == events  # nothing lost, order kept


def test_one_event_that_cannot_fit_is_refused_with_413() -> None:
    event = {"uuid": "u", "blob": random.randbytes(20_000).hex()}  # does not compress
    with pytest.raises(WebhookRejected) as info:
        encode("okta_hooks", ARRIVAL, [event], max_bytes=1000)
    assert info.value.status == 413


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x1f\x8b\x08\x00garbage", "gzip"),
        (gzip.compress(b"x" * 10, mtime=0)[:-4], "gzip"),  # mtime 0: same test id everywhere
        (b"{not json", "not JSON"),
        (b'{"lip": 2, "source": "okta_hooks", "arrival": 1, "events": []}', "format"),
        (b'{"lip": 1, "source": "okta_hooks", "events": []}', "arrival"),
        (b'{"lip": 1, "source": "okta_hooks", "arrival": 1, "events": [1]}', "JSON objects"),
        (b'{"lip": 1, "source": "okta_hooks", "arrival": 1e300, "events": []}', "range"),
    ],
)
def test_anything_else_is_poison_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(PoisonMessage, match=reason):
        decode(body, "okta_hooks")


def test_a_message_of_another_source_is_poison() -> None:
    (msg,) = encode("github", ARRIVAL, [{"guid": "g"}])
    with pytest.raises(PoisonMessage, match="belongs to source 'github'"):
        decode(msg, "okta_hooks")


def test_packing_and_finishing_apart_makes_the_same_messages(sim: WebhookSimulator) -> None:
    """The receiver serializes on its event loop and compresses in its committer
    thread; the two halves together must be ``encode``, splits and refusals included."""
    small = fixture("okta/event_hook_delivery.json")["data"]["events"]
    large = [e for d in sim.okta_deliveries(2000, per_delivery=2000) for e in d.events]
    for events, limit in (
        (small, MAX_MESSAGE_BYTES),
        (large[:40], MAX_MESSAGE_BYTES),
        (large, 50_000),
    ):
        packed = pack("okta_hooks", ARRIVAL, events)
        assert finish(packed, "okta_hooks", ARRIVAL, events, limit) == encode(
            "okta_hooks", ARRIVAL, events, limit
        )
    assert len(encode("okta_hooks", ARRIVAL, large, 50_000)) > 2
    event = {"uuid": "u", "blob": random.randbytes(20_000).hex()}
    with pytest.raises(WebhookRejected) as info:
        finish(pack("okta_hooks", ARRIVAL, [event]), "okta_hooks", ARRIVAL, [event], 1000)
    assert info.value.status == 413


def test_small_deliveries_merge_into_one_message_of_the_first_arrival(
    sim: WebhookSimulator,
) -> None:
    deliveries = sim.okta_deliveries(30, per_delivery=3)
    packed = [pack("okta_hooks", ARRIVAL + i, d.events) for i, d in enumerate(deliveries)]
    (msg,) = merge(packed)
    got = decode(msg, "okta_hooks")
    assert got.events == [e for d in deliveries for e in d.events]
    assert got.arrival.timestamp() == ARRIVAL
    # bounded: each merged message stays well inside the limit, and none is lost
    parts = merge(packed, max_bytes=12_000)
    assert len(parts) > 1 and all(len(m) <= 12_000 for m in parts)
    assert [e for m in parts for e in decode(m, "okta_hooks").events] == got.events
