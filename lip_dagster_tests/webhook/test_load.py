"""Under load, over real HTTP (uvicorn, httptools + uvloop): several concurrent
senders, duplicate deliveries and forged signatures mixed in, and afterwards the lake
holds every valid event exactly once and nothing that was forged."""

from __future__ import annotations

import random
import threading
from collections import Counter

from lip_dagster.resources import EmbeddedBackend
from lip_dagster.simulator.webhooks import Delivery, WebhookSimulator
from lip_dagster.webhook.receiver import create_app
from lip_dagster.webhook.server import BackgroundServer
from lip_dagster.webhook.vendors import JAMF_IDENTITY

from .test_drain import drainer, lake_ids

SENDERS = 4


def event_ids(d: Delivery) -> set[str]:
    if d.source == "github":
        return {d.headers["X-GitHub-Delivery"]}
    if d.source == "jamf":
        return {JAMF_IDENTITY.event_id(e) for e in d.events}
    return {e["uuid"] for e in d.events}


def test_concurrent_senders_with_duplicates_and_forgeries_land_each_valid_event_once(
    specs, backend: EmbeddedBackend, secrets, sim: WebhookSimulator
) -> None:
    valid = sim.github_deliveries(900) + sim.okta_deliveries(1000, per_delivery=10)
    valid += sim.jamf_deliveries(300)
    rng = random.Random(11)
    duplicates = rng.sample(valid, len(valid) // 10)
    forged_sources = sim.github_deliveries(60) + sim.okta_deliveries(100, per_delivery=10)
    forged = [sim.tampered(d) for d in forged_sources[: len(valid) // 20]]
    assert len(forged) == len(valid) // 20  # 5% of the deliveries carry a bad signature
    traffic = valid + duplicates + forged
    rng.shuffle(traffic)
    expected = set().union(*(event_ids(d) for d in valid))
    assert len(expected) == 900 + 1000 + 300

    app = create_app(specs, buffer=backend.buffer, dedupe=backend.dedupe, secrets=secrets)
    statuses: dict[int, list[int]] = {}
    with BackgroundServer(app) as server:

        def sender(k: int) -> None:  # each sender its own connections, 4 in flight
            statuses[k] = sim.send(server.base_url, traffic[k::SENDERS], concurrency=4)

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(SENDERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    got = Counter(s for k in statuses for s in statuses[k])
    assert got == Counter({204: len(valid) + len(duplicates), 401: len(forged)}), got

    for source in ("github", "okta_hooks", "jamf"):
        d, w = drainer(backend, specs, source, batch=200)
        assert d.run().error is None
        w.close()
    ids = lake_ids(backend.settings.lake_dir)
    assert set(ids) == expected, "lost events, or forged ones landed"
    assert max(ids.values()) == 1, "an event landed twice"
    assert all(backend.buffer.depth(s).messages == 0 for s in ("github", "okta_hooks", "jamf"))
