"""The simulator's ledger, which the soak test reconciles the lake against: what it
counts and dumps is exactly what the simulator's vendors hold, and a frozen
simulator emits nothing more."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import orjson

from lip_dagster.simulator import SimConfig, VendorSimulator
from lip_dagster.simulator.ledger import Ledger, identity_of


def test_the_ledger_dumps_every_emitted_id_and_a_frozen_simulator_emits_no_more(
    tmp_path: Path,
) -> None:
    config = SimConfig(live_rate_per_s=200, history_hours=0.5, events_per_hour=40)
    with VendorSimulator(config) as sim:
        ledger = Ledger(sim)
        time.sleep(0.3)  # live events accumulate; the ledger brings streams up to now
        frozen = ledger.freeze()
        assert frozen["okta/logs"] > 20  # 20 history events plus the live ones
        time.sleep(0.2)
        assert ledger.counts() == frozen  # frozen: nothing new appears
        dumped = ledger.dump(tmp_path / "ids.ndjson.gz")
        assert dumped == frozen
        rows = [
            orjson.loads(x)
            for x in gzip.decompress((tmp_path / "ids.ndjson.gz").read_bytes()).splitlines()
        ]
        for vendor, endpoint in (("okta", "logs"), ("google_workspace", "drive")):
            truth = [identity_of(vendor, e) for e in sim.events(vendor, endpoint)]
            got = [r["id"] for r in rows if (r["vendor"], r["endpoint"]) == (vendor, endpoint)]
            assert got == truth
        assert len(rows) == sum(frozen.values())
