"""Group commit as the buffer sees it: one message per group and arrival hour for
small deliveries, each large delivery on its own, nothing lost or reordered."""

from __future__ import annotations

import asyncio

from lip_dagster.lake.identity_keys import event_key
from lip_dagster.resources import EmbeddedBackend
from lip_dagster.simulator.webhooks import WebhookSimulator
from lip_dagster.webhook.intake import Intake, Outcome
from lip_dagster.webhook.message import decode
from lip_dagster.webhook.vendors import OKTA_EVENT_IDENTITY

HOUR_END = 1_780_002_000.0  # a whole hour (UTC): 494,445 * 3600


def submit_all(intake: Intake, batches: list[tuple[list[dict], float]]) -> list[Outcome]:
    async def run() -> list[Outcome]:
        calls = []
        for events, arrival in batches:
            keys = [
                event_key(e, OKTA_EVENT_IDENTITY, intake.dedupe.key_resolution).dedupe_key
                for e in events
            ]
            calls.append(intake.submit("okta_hooks", events, keys, arrival))
        outcomes = await asyncio.gather(*calls)
        await intake.flush_marks()
        return list(outcomes)

    try:
        return asyncio.run(run())
    finally:
        intake.close()


def test_a_group_of_small_deliveries_is_one_message_per_arrival_hour(
    backend: EmbeddedBackend, sim: WebhookSimulator
) -> None:
    assert HOUR_END % 3600 == 0
    deliveries = sim.okta_deliveries(12, per_delivery=1)
    arrivals = [HOUR_END - 0.5 + 0.1 * i for i in range(12)]  # 5 before the hour, 7 after
    outcomes = submit_all(
        Intake(backend.buffer, backend.dedupe),
        [(d.events, a) for d, a in zip(deliveries, arrivals, strict=True)],
    )
    assert outcomes == [Outcome(1, 0)] * 12
    messages = [decode(m.body, "okta_hooks") for m in backend.buffer.receive("okta_hooks", 50, 0)]
    assert len(messages) < 12, "every delivery paid for its own buffer row"
    by_hour: dict[int, list[str]] = {}
    for m in messages:
        hour = int(m.arrival.timestamp() // 3600)
        by_hour.setdefault(hour, []).extend(e["uuid"] for e in m.events)
    before, after = int(HOUR_END // 3600) - 1, int(HOUR_END // 3600)
    assert sorted(by_hour) == [before, after]
    expected = [d.events[0]["uuid"] for d in deliveries]
    assert sorted(by_hour[before]) == sorted(expected[:5])
    assert sorted(by_hour[after]) == sorted(expected[5:])


def test_a_large_delivery_keeps_its_own_messages(
    backend: EmbeddedBackend, sim: WebhookSimulator
) -> None:
    large = sim.okta_deliveries(300, per_delivery=300)[0]
    small = sim.okta_deliveries(2, per_delivery=1)
    batches = [(large.events, HOUR_END + 1), *((d.events, HOUR_END + 2) for d in small)]
    outcomes = submit_all(Intake(backend.buffer, backend.dedupe), batches)
    assert outcomes == [Outcome(300, 0), Outcome(1, 0), Outcome(1, 0)]
    messages = [decode(m.body, "okta_hooks") for m in backend.buffer.receive("okta_hooks", 50, 0)]
    events = sorted(e["uuid"] for m in messages for e in m.events)
    assert events == sorted(e["uuid"] for b, _ in batches for e in b)
    assert any(len(m.events) == 300 for m in messages)


def test_marks_go_in_bounded_chunks_and_all_ids_get_marked(
    backend: EmbeddedBackend, sim: WebhookSimulator, monkeypatch
) -> None:
    sizes: list[int] = []
    real_accept = backend.dedupe.accept

    def counting(source: str, keys: list) -> list[bool]:
        sizes.append(len(keys))
        return real_accept(source, keys)

    monkeypatch.setattr(backend.dedupe, "accept", counting)
    deliveries = sim.okta_deliveries(40, per_delivery=4)
    intake = Intake(backend.buffer, backend.dedupe, mark_delay=0.01, mark_chunk=7)
    submit_all(intake, [(d.events, HOUR_END + i) for i, d in enumerate(deliveries)])
    assert sum(sizes) == 40 and max(sizes) <= 7
    resolution = backend.dedupe.key_resolution
    keys = [
        event_key(e, OKTA_EVENT_IDENTITY, resolution).dedupe_key
        for d in deliveries
        for e in d.events
    ]
    states = backend.dedupe.get("okta_hooks", keys)
    assert len(states) == 40 and {s.status for s in states.values()} == {"accepted"}
