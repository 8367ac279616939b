"""End to end without loss: a vendor that throttles, fails and stalls, a collector
killed (SIGKILL) at random points and re-run, and a lake that then holds every event
the vendor emitted exactly once."""

from __future__ import annotations

import gzip
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from lip_dagster.config import Settings
from lip_dagster.demo import demo_env, write_secrets
from lip_dagster.simulator import Faults, SimConfig, VendorSimulator

COLLECT = """
import sys
from lip_dagster.components.polling import PollingSource
from lip_dagster.resources import backend_from_env
adapter, env_var = sys.argv[1], sys.argv[2]
source = PollingSource(name=adapter, adapter=adapter, base_url_env=env_var, page_size=100,
                       time_budget_seconds=600, initial_lookback_hours=6)
report = source.poll(backend_from_env(), partition_key=None, live=True)
print("done", report.result.events)
"""

CASES = {
    "okta": ("LIP_OKTA_BASE_URL", "okta", "logs", "uuid"),
    "slack": ("LIP_SLACK_BASE_URL", "slack", "logs", "id"),
    "onepassword": ("LIP_ONEPASSWORD_BASE_URL", "onepassword", "auditevents", None),
    "google_workspace": ("LIP_GOOGLE_BASE_URL", "google_workspace", "login", None),
}


def expected_ids(sim: VendorSimulator, adapter: str) -> set[str]:
    if adapter == "onepassword":
        return {
            e["uuid"]
            for ep in ("auditevents", "itemusages", "signinattempts")
            for e in sim.events("onepassword", ep)
        }
    if adapter == "google_workspace":
        return {
            "|".join(
                str(e["id"][k])
                for k in ("time", "uniqueQualifier", "applicationName", "customerId")
            )
            for app in ("admin", "login", "drive", "token")
            for e in sim.events("google_workspace", app)
        }
    _, vendor, endpoint, field = CASES[adapter]
    return {str(e[field]) for e in sim.events(vendor, endpoint)}


@pytest.mark.parametrize("adapter", sorted(CASES))
def test_killed_and_rerun_under_faults_lands_every_event_once(adapter: str, tmp_path: Path) -> None:
    rng = random.Random(adapter)
    faults = Faults(rate_429=0.1, rate_5xx=0.08, slow_rate=0.05, slow_seconds=0.4, seed=7)
    config = SimConfig(live_rate_per_s=0, history_hours=4, events_per_hour=400, faults=faults)
    with VendorSimulator(config) as sim:
        sim.script(CASES[adapter][1], [429, 429, 429, 503])  # a storm to open with
        home = tmp_path / "home"
        env = {**os.environ, "LIP_HOME": str(home), **demo_env(sim.base_url)}
        env.pop("LIP_BACKEND", None)
        write_secrets(Settings.from_env({"LIP_HOME": str(home)}).secrets_file, sim.credentials())
        cmd = [sys.executable, "-c", COLLECT, adapter, CASES[adapter][0]]
        kills = 0
        for _ in range(3):  # killed at a random point, three times
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(rng.uniform(0.8, 2.5))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
            proc.wait(timeout=30)
        final = subprocess.run(cmd, env=env, capture_output=True, timeout=300, check=False)
        assert final.returncode == 0, final.stderr.decode()[-2000:]
        expected = expected_ids(sim, adapter)
    assert kills >= 1, "the collector finished before it could be killed; raise the volume"
    lake = home / "lake"
    ids: Counter[str] = Counter()
    for p in lake.rglob("*"):
        if p.is_file():
            assert p.name.endswith(".ndjson.gz"), f"non-object file in the lake: {p}"
            ids.update(
                orjson.loads(x)["_lip"]["id"] for x in gzip.decompress(p.read_bytes()).splitlines()
            )
    assert set(ids) == expected, (
        f"lost {len(expected - set(ids))}, extra {len(set(ids) - expected)}"
    )
    assert max(ids.values()) == 1, "an event landed twice"
