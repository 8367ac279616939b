"""Poll -> lake throughput: the framework (OktaPoller through BasePoller: budget,
cursor compare-and-set, retries, rate-limit pacing, dedupe claims) versus a plain httpx
loop that fetches the same Okta pages and writes them with the same writer. The
simulator runs in its own process so it does not share our interpreter's GIL."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from benchmarks.common import free_port
from lip_dagster.config import Settings
from lip_dagster.demo import write_secrets
from lip_dagster.lake.envelope import EventIdentity
from lip_dagster.polling.base import PollerConfig
from lip_dagster.polling.http import HttpClient
from lip_dagster.resources import EmbeddedBackend
from lip_dagster.sources.okta import OktaPoller

OKTA = EventIdentity(id_fields=("uuid",), time_field="published")
HISTORY_HOURS = 10


def _simulator(events_per_hour: int) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    port = free_port()
    creds = Path(tempfile.mkdtemp(prefix="lip-bench-sim-")) / "creds.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lip_dagster.simulator",
            "--port",
            str(port),
            "--credentials-out",
            str(creds),
            "--history-hours",
            str(HISTORY_HOURS),
            "--events-per-hour",
            str(events_per_hour),
            "--live-rate",
            "0",
            "--okta-rate-limit",
            "1000000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not creds.exists() or not creds.stat().st_size:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the vendor simulator did not start")
        time.sleep(0.2)
    return proc, f"http://127.0.0.1:{port}", orjson.loads(creds.read_bytes())


def _backend(tmp: Path, creds: dict[str, str]) -> EmbeddedBackend:
    settings = Settings.from_env({"LIP_HOME": str(tmp)})
    write_secrets(settings.secrets_file, creds)
    return EmbeddedBackend(settings)


def framework(base: str, creds: dict[str, str], tmp: Path) -> int:
    b = _backend(tmp, creds)
    writer = b.writer()
    with HttpClient() as http:
        poller = OktaPoller(
            PollerConfig(
                source="okta",
                base_url=f"{base}/okta",
                endpoints=("logs",),
                page_size=1000,
                time_budget_seconds=3600,
                initial_lookback_hours=HISTORY_HOURS + 1,
            ),
            http=http,
            secrets=b.secrets,
            cursors=b.cursors,
            writer=writer,
        )
        report = poller.run()
    writer.close()
    return report.result.events


def plain_loop(base: str, creds: dict[str, str], tmp: Path) -> int:
    """What one would write by hand: GET, follow rel=next, write each page."""
    b = _backend(tmp, creds)
    writer = b.writer()
    since = time.strftime(
        "%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - (HISTORY_HOURS + 1) * 3600)
    )
    n = 0
    with httpx.Client(
        timeout=30, headers={"Authorization": "SSWS " + creds["okta/api-token"]}
    ) as c:
        url: str | None = f"{base}/okta/api/v1/logs?limit=1000&since={since}"
        while url:
            resp = c.get(url)
            resp.raise_for_status()
            events = resp.json()
            if not events:
                break
            n += writer.write("okta", events, OKTA, "polling").events
            url = resp.links.get("next", {}).get("url")
    writer.close()
    return n


def run(events_per_hour: int = 6000, repeats: int = 3) -> list[dict[str, Any]]:
    proc, base, creds = _simulator(events_per_hour)
    try:
        ours: list[float] = []
        plain: list[float] = []
        counts = set()
        for _ in range(repeats):  # alternate, so drift in the machine hits both
            for fn, out in ((framework, ours), (plain_loop, plain)):
                tmp = Path(tempfile.mkdtemp(prefix="lip-bench-poll-"))
                try:
                    t0 = time.perf_counter()
                    n = fn(base, creds, tmp)
                    out.append(n / (time.perf_counter() - t0))
                    counts.add(n)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    if len(counts) != 1:
        raise RuntimeError(f"the two loops landed different counts: {counts}")
    med = sorted(ours)[len(ours) // 2]
    base_med = sorted(plain)[len(plain) // 2]
    return [
        {
            "name": "poll okta -> lake (simulator, pages of 1000)",
            "events": counts.pop(),
            "events_per_s": med,
            "baseline_events_per_s": base_med,
            "ratio": med / base_med,
            "runs_events_per_s": ours,
            "baseline_runs_events_per_s": plain,
            "target": "ratio >= 0.9",
        }
    ]
