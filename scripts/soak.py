#!/usr/bin/env python3
"""``make soak``: every demo source against the simulators at a sustained rate, then a
reconciliation of the lake against what the vendors emitted.

    .venv/bin/python scripts/soak.py                      # 30 minutes, >= 1 million events
    .venv/bin/python scripts/soak.py --minutes 4 --rate 60

Long-lived processes, each its own OS process so its memory is measured alone:

- the vendor simulator with its ledger (``lip_dagster.simulator.ledger``): Okta,
  1Password, Slack and Google Workspace, ``--rate`` new events per second on each of
  their nine endpoints;
- the webhook receiver, exactly as ``lip webhook serve`` runs it; this script POSTs
  Okta Event Hook, GitHub and Jamf deliveries to it at ``--webhook-rate`` events/s;
- the collector: one process that runs every source, over and over, through its
  Dagster job on a persistent instance (``$DAGSTER_HOME``, the local profile).
  Polling sources get the partition and tags their schedule's own evaluation
  returns; webhook sources drain their buffer; S3 sources sweep the vendor objects
  this script writes at ``--s3-rate`` events/s.

Why one collector process instead of ``dagster dev`` with the schedules on: the
schedules fire every five minutes and the daemon gives each run a fresh process.
Running the same jobs back to back drives the volume the soak is for, and one
process that executes thousands of runs is where a leak in LIP's run code would
show, where a fresh process per run would hide it.

When the time is up: the pushers stop, the simulator freezes (nothing new after
now), the collector catches up until a whole pass lands nothing, and the lake is
reconciled: every id each vendor emitted is in the lake exactly once, nothing else
is there, no dead letters, nothing left in a buffer, nothing in quarantine. Resident
memory of each process is sampled throughout; LIP's processes must stay flat after
warm-up. Exit status 0 only if all of that holds. The report (JSON) is written
under ``--home``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from lip_dagster.simulator.processes import free_port

REPO = Path(__file__).resolve().parent.parent
POLLING = ("okta", "onepassword", "slack", "google_workspace")
WEBHOOK = ("okta_hooks", "github", "jamf")
S3 = ("cloudtrail", "github_audit_stream", "cloudflare")
ADAPTER_OF_VENDOR = {v: v for v in POLLING}
FLAT_TOLERANCE = 0.10  # LIP processes: last-quarter median RSS within 10% of the second quarter's
FLAT_SLACK_BYTES = 24 * 1024 * 1024  # ... or within 24 MiB (allocator noise on small processes)
HTTP_TIMEOUT = 30.0


def log(msg: str) -> None:
    print(f"[soak {datetime.now(UTC):%H:%M:%S}] {msg}", flush=True)


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        return 0
    return 0


def open_files(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError:
        return 0


def http(method: str, url: str, timeout: float = HTTP_TIMEOUT) -> dict[str, Any]:
    resp = httpx.request(method, url, timeout=timeout)
    resp.raise_for_status()
    return resp.json()  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- processes


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    samples: list[tuple[float, int]] = field(default_factory=list)
    fds: list[tuple[float, int]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 30.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


def wait_for_port(port: int, proc: Process, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise SystemExit(f"soak: {proc.name} exited with {proc.popen.returncode}")
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"soak: {proc.name} did not listen on port {port} within {timeout:.0f}s")


class Sampler(threading.Thread):
    def __init__(self, processes: list[Process], every: float) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.processes = processes
        self.every = every
        self.stopped = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.stopped.is_set():
            now = time.monotonic() - self.t0
            for p in self.processes:
                if p.popen.poll() is None:
                    p.samples.append((now, rss_bytes(p.pid)))
                    p.fds.append((now, open_files(p.pid)))
            self.stopped.wait(self.every)


# --------------------------------------------------------------------------- pushers


class WebhookPusher(threading.Thread):
    """Vendors pushing: Okta Event Hooks (10 events a delivery), GitHub and Jamf (one
    event a delivery), signed as each vendor signs. Records the id LIP will give every
    event of every accepted delivery."""

    SHARE = {"okta_hooks": 0.6, "github": 0.2, "jamf": 0.2}

    def __init__(self, base_url: str, rate: float, seed: int) -> None:
        super().__init__(name="webhook-pusher", daemon=True)
        from lip_dagster.simulator.webhooks import WebhookSimulator
        from lip_dagster.webhook.spec import load_specs
        from lip_dagster.webhook.vendors import build_extractor

        self.sim = WebhookSimulator(seed)
        self.extractors = {n: build_extractor(s) for n, s in load_specs().items() if n in WEBHOOK}
        self.base_url = base_url
        self.rate = rate
        self.expected: dict[str, list[str]] = {s: [] for s in WEBHOOK}
        self.statuses: Counter[int] = Counter()
        self.refused_events = 0
        self.stopped = threading.Event()
        self._carry = dict.fromkeys(WEBHOOK, 0.0)

    def credentials(self) -> dict[str, str]:
        return self.sim.credentials()

    def verify(self) -> None:
        (status,) = self.sim.send(self.base_url, [self.sim.okta_verification()])
        if status != 200:
            raise SystemExit(f"soak: the receiver failed Okta's verification call: {status}")

    def _ids(self, d: Any) -> list[str]:
        from starlette.datastructures import Headers

        extractor = self.extractors[d.source]
        ctype = d.headers.get("Content-Type", "application/json").split(";")[0].lower()
        events = extractor.extract(d.body, ctype, Headers(d.headers))
        return [extractor.identity.event_id(e) for e in events]

    def batch(self, seconds: float) -> list[Any]:
        now = datetime.now(UTC)
        start = now - timedelta(seconds=seconds)
        out = []
        for source, share in self.SHARE.items():
            want = self.rate * share * seconds + self._carry[source]
            n = int(want)
            self._carry[source] = want - n
            if n <= 0:
                continue
            if source == "okta_hooks":
                out += self.sim.okta_deliveries(n, per_delivery=10, start=start, end=now)
            elif source == "github":
                out += self.sim.github_deliveries(n, start=start, end=now)
            else:
                out += self.sim.jamf_deliveries(n, start=start, end=now)
        return out

    def run(self) -> None:
        last = time.monotonic()
        while not self.stopped.wait(1.0):
            now = time.monotonic()
            deliveries = self.batch(now - last)
            last = now
            pending = deliveries
            for _attempt in range(5):  # a vendor retries what was not acknowledged
                if not pending:
                    break
                statuses = self.sim.send(self.base_url, pending, concurrency=4)
                retry = []
                for d, status in zip(pending, statuses, strict=True):
                    self.statuses[status] += 1
                    if status in (200, 204):
                        self.expected[d.source] += self._ids(d)
                    else:
                        retry.append(d)
                pending = retry
            for d in pending:
                self.refused_events += len(d.events)


class S3Writer(threading.Thread):
    """Vendors writing objects in their own layouts into the buckets (landing
    directories), every 30 seconds; records each record's id as LIP computes it."""

    EVERY = 30.0

    def __init__(self, home: Path, rate: float, seed: int) -> None:
        super().__init__(name="s3-writer", daemon=True)
        from lip_dagster.s3stream.formats import vendor_format

        self.home = home
        self.rate = rate
        self.rng = random.Random(seed)
        self.identity = {
            "cloudtrail": vendor_format("cloudtrail").identity,
            "github_audit_stream": vendor_format("github_audit_stream").identity,
            "cloudflare": vendor_format("cloudflare_logpush", {"dataset": "audit"}).identity,
        }
        self.expected: dict[str, list[str]] = {s: [] for s in S3}
        self.stopped = threading.Event()

    def write_once(self, seconds: float) -> None:
        from lip_dagster.s3stream.demo import landing_dir
        from lip_dagster.simulator import s3objects as sim

        end = datetime.now(UTC)
        start = end - timedelta(seconds=seconds)
        n = max(1, int(self.rate * seconds / len(S3)))
        seed = self.rng.getrandbits(32)
        recs = sim.cloudtrail_records(n, start, end, seed, region=sim.REGIONS[0])
        key = sim.cloudtrail_key(end, self.rng, region=sim.REGIONS[0])
        sim.write_object(landing_dir(self.home, "cloudtrail"), key, sim.cloudtrail_file(recs))
        self.expected["cloudtrail"] += [self.identity["cloudtrail"].event_id(r) for r in recs]
        evs = sim.github_stream_events(n, start, end, seed)
        key = sim.github_stream_key(start, self.rng)
        sim.write_object(
            landing_dir(self.home, "github_audit_stream"), key, sim.github_stream_file(evs)
        )
        self.expected["github_audit_stream"] += [
            self.identity["github_audit_stream"].event_id(e) for e in evs
        ]
        recs = sim.cloudflare_audit_events(n, start, end, seed)
        key = sim.logpush_key(start, end, self.rng)
        sim.write_object(landing_dir(self.home, "cloudflare"), key, sim.logpush_file(recs))
        self.expected["cloudflare"] += [self.identity["cloudflare"].event_id(r) for r in recs]

    def run(self) -> None:
        last = time.monotonic()
        while not self.stopped.wait(self.EVERY):
            now = time.monotonic()
            self.write_once(now - last)
            last = now


# --------------------------------------------------------------------------- collector


def collector(home: Path, stop_file: Path, out: Path, max_passes: int) -> int:
    """Runs inside its own process: every source, again and again, until ``stop_file``
    appears; then passes until one lands nothing and the buffers are empty."""
    import dagster as dg

    from lip_dagster.components.common import MODE_POLL, MODE_TAG, SOURCE_TAG
    from lip_dagster.definitions import defs
    from lip_dagster.errors import LipError
    from lip_dagster.lake.layout import hour_of
    from lip_dagster.resources import backend_from_env

    d = defs()
    repo = d.get_repository_def()
    instance = dg.DagsterInstance.get()
    backend = backend_from_env()
    sources = (*POLLING, *WEBHOOK, *S3)
    jobs = {  # each source's partitioned asset job (not, say, a webhook replay job)
        j.tags[SOURCE_TAG]: j
        for j in d.resolve_all_job_defs()
        if SOURCE_TAG in j.tags and j.partitions_def is not None
    }
    schedules = {}
    for s in d.schedules or []:
        tags = d.resolve_job_def(s.job_name).tags
        if tags.get(SOURCE_TAG) in POLLING:
            schedules[tags[SOURCE_TAG]] = s
    stats = {s: {"runs": 0, "events": 0, "duplicates": 0, "failures": 0} for s in sources}
    errors: list[str] = []
    run_log = (home / "collector-runs.ndjson").open("ab")

    def run_one(source: str) -> int:
        now = datetime.now(UTC)
        if source in schedules:  # what the schedule's tick would request now
            ctx = dg.build_schedule_context(
                scheduled_execution_time=now, instance=instance, repository_def=repo
            )
            (req,) = schedules[source].evaluate_tick(ctx).run_requests
            partition, tags = req.partition_key, dict(req.tags)
        else:
            partition, tags = hour_of(now), {SOURCE_TAG: source, MODE_TAG: MODE_POLL}
        t0 = time.monotonic()
        result = jobs[source].execute_in_process(
            partition_key=partition,
            tags=tags,
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        )
        st = stats[source]
        st["runs"] += 1
        events = duplicates = 0
        if result.success:
            for mat in result.asset_materializations_for_node(source):
                md = mat.metadata
                if "events_total" in md:
                    events = int(md["events_total"].value)  # type: ignore[arg-type]
                    duplicates = int(md["duplicates_total"].value)  # type: ignore[arg-type]
        else:
            from lip_dagster.cli import failure_message

            st["failures"] += 1
            errors.append(f"{source}: {failure_message(result)}"[:500])
        st["events"] += events
        st["duplicates"] += duplicates
        run_log.write(
            orjson.dumps(
                {
                    "source": source,
                    "ok": result.success,
                    "events": events,
                    "duplicates": duplicates,
                    "seconds": round(time.monotonic() - t0, 3),
                }
            )
            + b"\n"
        )
        run_log.flush()
        return events

    passes = 0
    while not stop_file.exists():
        for source in sources:
            run_one(source)
        passes += 1
    # Catch up until nothing changes: a pass that lands nothing, or one that lands
    # exactly what the previous pass did (a source re-reading a stable overlap window
    # rewrites the same objects under the same keys: no new event can be arriving, as
    # the vendors are frozen), with every buffer empty.
    catch_up = 0
    previous: dict[str, int] | None = None
    steady_rewrites: dict[str, int] = {}
    for catch_up in range(1, max_passes + 1):  # noqa: B007 - reported below
        landed = {s: run_one(s) for s in sources}
        buffered = 0
        for s in WEBHOOK:
            try:
                buffered += backend.buffer.depth(s).messages
            except LipError as exc:
                errors.append(f"{s}: buffer depth: {exc}")
        if buffered == 0 and (sum(landed.values()) == 0 or landed == previous):
            steady_rewrites = {s: n for s, n in landed.items() if n}
            break
        previous = landed
    out.write_bytes(
        orjson.dumps(
            {
                "passes": passes,
                "catch_up_passes": catch_up,
                "stats": stats,
                "steady_rewrites": steady_rewrites,
                "errors": errors[-50:],
            },
            option=orjson.OPT_INDENT_2,
        )
    )
    run_log.close()
    instance.dispose()
    return 0


# --------------------------------------------------------------------------- reconcile


def lake_ids(lake: Path) -> tuple[dict[str, Counter[str]], int]:
    """Every ``_lip.id`` per source, repeats counted, and the lake's raw (unzipped) size."""
    landed: dict[str, Counter[str]] = {}
    raw = 0
    for path in lake.glob("source=*/year=*/month=*/day=*/hour=*/*.ndjson.gz"):
        source = path.parts[len(lake.parts)].split("=", 1)[1]
        counter = landed.setdefault(source, Counter())
        with gzip.open(path, "rb") as fh:
            for line in fh:
                raw += len(line)
                counter[orjson.loads(line)["_lip"]["id"]] += 1
    return landed, raw


def polled_expected(ledger_file: Path) -> dict[str, list[str]]:
    from lip_dagster.sources import poller_class

    identity = {v: poller_class(ADAPTER_OF_VENDOR[v]).identity for v in POLLING}
    field_of = {"okta": "uuid", "slack": "id", "onepassword": "uuid", "google_workspace": "id"}
    expected: dict[str, list[str]] = {s: [] for s in POLLING}
    with gzip.open(ledger_file, "rb") as fh:
        for line in fh:
            row = orjson.loads(line)
            vendor = row["vendor"]
            expected[vendor].append(identity[vendor].event_id({field_of[vendor]: row["id"]}))
    return expected


def reconcile(
    expected: dict[str, list[str]], landed: dict[str, Counter[str]]
) -> dict[str, dict[str, int]]:
    out = {}
    for source in (*POLLING, *WEBHOOK, *S3):
        want = Counter(expected.get(source, []))
        got = landed.get(source, Counter())
        out[source] = {
            "emitted": sum(want.values()),
            "emitted_unique": len(want),
            "landed_lines": sum(got.values()),
            "missing": sum(1 for i in want if i not in got),
            "duplicates": sum(c - 1 for c in got.values() if c > 1),
            "unexpected": sum(1 for i in got if i not in want),
        }
    return out


def s3_objects_never_landed(home: Path, lake: Path) -> dict[str, list[str]]:
    """Vendor objects in the landing directories that no lake line names as its
    origin: where S3 events went missing, if any did."""
    from lip_dagster.s3stream.demo import landing_dir

    origins: set[str] = set()
    for source in S3:
        for path in lake.glob(f"source={source}/year=*/month=*/day=*/hour=*/*.ndjson.gz"):
            with gzip.open(path, "rb") as fh:
                origins.update(orjson.loads(line)["_lip"].get("origin", "") for line in fh)
    out = {}
    for source in S3:
        root = landing_dir(home, source)
        keys = sorted(str(p.relative_to(root)) for p in root.rglob("*.gz"))
        never = [k for k in keys if k not in origins and "CloudTrail-Digest" not in k]
        if never:
            out[source] = never
    return out


def memory_figures(
    processes: list[Process], warmup: float, load_end: float
) -> dict[str, dict[str, Any]]:
    """Steady state is judged under load only (after warm-up, before the catch-up):
    the median RSS of the second quarter of that window against the last quarter's.
    The peak covers the whole run, catch-up included."""
    figures = {}
    for p in processes:
        samples = [(t, r) for t, r in p.samples if r > 0]
        steady = [r for t, r in samples if warmup <= t <= load_end] or [r for _, r in samples]
        q = max(1, len(steady) // 4)
        early = statistics.median(steady[q : 2 * q] or steady[:q])
        late = statistics.median(steady[-q:])
        growth = late - early
        figures[p.name] = {
            "pid": p.pid,
            "samples": len(samples),
            "rss_start_mib": round(samples[0][1] / 2**20, 1) if samples else None,
            "rss_steady_mib": round(early / 2**20, 1),
            "rss_end_mib": round(late / 2**20, 1),
            "rss_peak_mib": round(max(r for _, r in samples) / 2**20, 1) if samples else None,
            "growth_mib": round(growth / 2**20, 1),
            "growth_pct": round(100 * growth / early, 1) if early else None,
            "flat": growth <= max(FLAT_TOLERANCE * early, FLAT_SLACK_BYTES),
            "open_files_start": p.fds[0][1] if p.fds else None,
            "open_files_end_of_load": max((n for t, n in p.fds if t <= load_end), default=None),
        }
    return figures


# --------------------------------------------------------------------------- driver


def drive(args: argparse.Namespace) -> int:
    home = (
        Path(args.home).resolve()
        if args.home
        else Path(tempfile.mkdtemp(prefix=f"lip-soak-{datetime.now(UTC):%Y%m%dT%H%M}-"))
    )
    home.mkdir(parents=True, exist_ok=True)
    dagster_home = home / "dagster"
    dagster_home.mkdir(exist_ok=True)
    (dagster_home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    py = sys.executable
    env = {
        **os.environ,
        "LIP_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "LIP_BACKEND": "embedded",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("LIP_SCHEDULES_ON", None)
    log(
        f"home {home}; {args.minutes} min at {args.rate} events/s per polled endpoint (x9), "
        f"{args.webhook_rate}/s pushed, {args.s3_rate}/s to S3"
    )

    ledger_file = home / "ledger.ndjson.gz"
    sim_proc = Process(
        "vendor-simulator",
        subprocess.Popen(
            [
                py,
                "-m",
                "lip_dagster.simulator.ledger",
                "--live-rate",
                str(args.rate),
                "--history-hours",
                "0.1",
                "--events-per-hour",
                "0",
                "--seed",
                str(args.seed),
                "--okta-rate-limit",
                "6000",
                "--credentials-out",
                str(home / "vendor-creds.json"),
                "--ledger-out",
                str(ledger_file),
            ],
            env=env,
            stdout=subprocess.PIPE,
            cwd=REPO,
        ),
    )
    assert sim_proc.popen.stdout is not None
    ready, _, _ = select.select([sim_proc.popen.stdout], [], [], 60)  # bounded wait
    hello = json.loads(sim_proc.popen.stdout.readline() or b"{}") if ready else {}
    if "base_url" not in hello:
        sim_proc.stop()
        raise SystemExit("soak: the simulator did not start")
    from lip_dagster.demo import demo_env, write_secrets

    env.update(demo_env(hello["base_url"]))
    os.environ.update({k: env[k] for k in ("LIP_HOME", "DAGSTER_HOME", "LIP_BACKEND")})
    creds = json.loads((home / "vendor-creds.json").read_text())

    receiver_port = free_port()
    pusher = WebhookPusher(f"http://127.0.0.1:{receiver_port}", args.webhook_rate, args.seed)
    write_secrets(home / "secrets.json", {**creds, **pusher.credentials()})
    receiver = Process(
        "webhook-receiver",
        subprocess.Popen(
            [
                py,
                "-c",
                "import argparse, sys\n"
                "from lip_dagster.webhook.cli import register\n"
                "p = argparse.ArgumentParser(prog='lip'); register(p.add_subparsers())\n"
                "a = p.parse_args(['webhook', 'serve', '--port', sys.argv[1]])\n"
                "sys.exit(a.fn(a))",
                str(receiver_port),
            ],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
        ),
    )
    wait_for_port(receiver_port, receiver)
    pusher.verify()
    stop_file = home / "collector.stop"
    collector_out = home / "collector.json"
    collector_proc = Process(
        "collector",
        subprocess.Popen(
            [
                py,
                str(Path(__file__).resolve()),
                "--collect",
                "--home",
                str(home),
                "--max-passes",
                str(args.max_passes),
            ],
            env=env,
            cwd=REPO,
        ),
    )
    s3 = S3Writer(home, args.s3_rate, args.seed)
    processes = [sim_proc, receiver, collector_proc]
    sampler = Sampler(processes, args.sample_seconds)
    sampler.start()
    pusher.start()
    s3.start()

    deadline = time.monotonic() + args.minutes * 60
    load_end = args.minutes * 60
    try:
        while time.monotonic() < deadline:
            time.sleep(min(30.0, max(0.0, deadline - time.monotonic())))
            if collector_proc.popen.poll() is not None:
                raise SystemExit(f"soak: the collector died ({collector_proc.popen.returncode})")
            stats = http("GET", f"{hello['control_url']}/ledger/stats")
            remaining = max(0, deadline - time.monotonic())
            rss = ", ".join(
                f"{p.name} {p.samples[-1][1] / 2**20:.0f} MiB" for p in processes if p.samples
            )
            log(
                f"{sum(stats['emitted'].values()):,} polled events emitted; "
                f"{sum(len(v) for v in pusher.expected.values()):,} pushed; "
                f"{sum(len(v) for v in s3.expected.values()):,} to S3; RSS {rss}; "
                f"{remaining / 60:.1f} min left"
            )

        load_end = time.monotonic() - sampler.t0
        log("time is up: stopping the pushers, freezing the simulator, catching up")
        pusher.stopped.set()
        s3.stopped.set()
        pusher.join(60)
        s3.join(60)
        s3.write_once(5.0)  # the last objects, written after the final listing of the run
        frozen = http("POST", f"{hello['control_url']}/ledger/freeze")["emitted"]
        log(f"vendors emitted {sum(frozen.values()):,} polled events in total")
        stop_file.touch()
        try:
            collector_proc.popen.wait(args.catch_up_minutes * 60)
        except subprocess.TimeoutExpired:
            log("the collector did not finish catching up in time")
            collector_proc.stop()
        dumped = http("POST", f"{hello['control_url']}/ledger/dump", timeout=600)["emitted"]
    finally:
        sampler.stopped.set()
        pusher.stopped.set()
        s3.stopped.set()
        receiver.stop()
        collector_proc.stop()
        sim_proc.stop()

    log("reconciling the lake")
    from lip_dagster.config import Settings
    from lip_dagster.resources import backend_from_settings

    settings = Settings.from_env({**os.environ, "LIP_HOME": str(home)})
    backend = backend_from_settings(settings)
    expected: dict[str, list[str]] = {**polled_expected(ledger_file)}
    expected.update(pusher.expected)
    expected.update(s3.expected)
    landed, lake_raw_bytes = lake_ids(settings.lake_dir)
    table = reconcile(expected, landed)
    dead = {s: backend.buffer.depth(s).dead_letters for s in WEBHOOK}
    buffered = {s: backend.buffer.depth(s).messages for s in WEBHOOK}
    quarantined = {s: backend.quarantine.count(s) for s in (*POLLING, *WEBHOOK, *S3)}
    collected = json.loads(collector_out.read_text()) if collector_out.exists() else {}
    memory = memory_figures(processes, min(120.0, args.minutes * 60 * 0.2), load_end)

    total = sum(r["emitted"] for r in table.values())
    missing = sum(r["missing"] for r in table.values())
    dups = sum(r["duplicates"] for r in table.values())
    unexpected = sum(r["unexpected"] for r in table.values())
    lip_flat = all(memory[p]["flat"] for p in ("webhook-receiver", "collector"))
    ok = (
        collector_out.exists()
        and missing == 0
        and dups == 0
        and unexpected == 0
        and sum(dead.values()) == 0
        and sum(buffered.values()) == 0
        and sum(quarantined.values()) == 0
        and pusher.refused_events == 0
        and lip_flat
    )
    report = {
        "ok": ok,
        "minutes": args.minutes,
        "rates": {
            "per_polled_endpoint": args.rate,
            "webhook": args.webhook_rate,
            "s3": args.s3_rate,
        },
        "events_emitted": total,
        "ledger_dump": dumped,
        "reconciliation": table,
        "dead_letters": dead,
        "buffered_after_catch_up": buffered,
        "quarantined": quarantined,
        "webhook_statuses": {str(k): v for k, v in sorted(pusher.statuses.items())},
        "collector": collected,
        "memory": memory,
        "lake_bytes": sum(p.stat().st_size for p in settings.lake_dir.rglob("*.ndjson.gz")),
        "lake_raw_bytes": lake_raw_bytes,
        "home": str(home),
    }
    report["s3_objects_never_landed"] = s3_objects_never_landed(home, settings.lake_dir)
    report_path = Path(args.report) if args.report else home / "soak-report.json"
    report_path.write_text(json.dumps(report, indent=2))

    print()
    print(f"{'SOURCE':<20} {'EMITTED':>10} {'LANDED':>10} {'MISSING':>8} {'DUPS':>6} {'EXTRA':>6}")
    for source, r in table.items():
        print(
            f"{source:<20} {r['emitted']:>10,} {r['landed_lines']:>10,} {r['missing']:>8} "
            f"{r['duplicates']:>6} {r['unexpected']:>6}"
        )
    print(
        f"{'total':<20} {total:>10,} {sum(r['landed_lines'] for r in table.values()):>10,} "
        f"{missing:>8} {dups:>6} {unexpected:>6}"
    )
    for source, keys in report["s3_objects_never_landed"].items():
        print(f"{source}: vendor objects never landed: {', '.join(keys[:5])}")
    print(
        f"dead letters {sum(dead.values())}, still buffered {sum(buffered.values())}, "
        f"quarantined {sum(quarantined.values())}, deliveries never accepted "
        f"{pusher.refused_events}"
    )
    if collected:
        runs = sum(s["runs"] for s in collected["stats"].values())
        fails = sum(s["failures"] for s in collected["stats"].values())
        print(
            f"collector: {collected['passes']} passes, {runs} runs ({fails} failed and "
            f"retried by the next pass), {collected['catch_up_passes']} catch-up passes"
        )
        if collected.get("steady_rewrites"):
            print(
                "rewritten under the same key on every catch-up pass (no new events, no "
                f"duplicates in the lake): {collected['steady_rewrites']}"
            )
    print()
    print(
        f"{'PROCESS':<18} {'START':>8} {'STEADY':>8} {'END':>8} {'PEAK':>8} {'GROWTH':>9} "
        f"{'FILES':>11}  FLAT"
    )
    for name, m in memory.items():
        note = "" if name != "vendor-simulator" else "  (stores every event it emits)"
        print(
            f"{name:<18} {m['rss_start_mib']:>7}M {m['rss_steady_mib']:>7}M "
            f"{m['rss_end_mib']:>7}M {m['rss_peak_mib']:>7}M {m['growth_mib']:>+8}M "
            f"{m['open_files_start']:>5}->{m['open_files_end_of_load']:<5} "
            f"{'yes' if m['flat'] else 'NO'}{note}"
        )
    print()
    print(f"report: {report_path}")
    reconciled = (
        missing == 0
        and dups == 0
        and unexpected == 0
        and sum(dead.values()) == 0
        and sum(buffered.values()) == 0
        and sum(quarantined.values()) == 0
        and pusher.refused_events == 0
        and collector_out.exists()
    )
    print(
        f"RECONCILED: {total:,} events, zero loss, zero duplicates, no dead letters"
        if reconciled
        else f"NOT RECONCILED: {missing} missing, {dups} duplicates, {unexpected} unexpected"
    )
    grown = [p for p in ("webhook-receiver", "collector") if not memory[p]["flat"]]
    print("MEMORY: flat" if not grown else f"MEMORY: not flat under load: {', '.join(grown)}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="how long to push (default 30)")
    p.add_argument(
        "--rate",
        type=float,
        default=60.0,
        help="new events/s on each of the 9 polled endpoints (default 60)",
    )
    p.add_argument("--webhook-rate", type=float, default=40.0, help="pushed events/s")
    p.add_argument("--s3-rate", type=float, default=20.0, help="events/s written to S3")
    p.add_argument("--sample-seconds", type=float, default=5.0, help="RSS sampling period")
    p.add_argument("--catch-up-minutes", type=float, default=20.0)
    p.add_argument("--max-passes", type=int, default=30, help="catch-up passes at most")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--home", help="LIP_HOME for the soak (default: a new temporary directory)")
    p.add_argument("--report", help="where to write the JSON report")
    p.add_argument("--collect", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.collect:
        home = Path(args.home)
        return collector(home, home / "collector.stop", home / "collector.json", args.max_passes)
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
