#!/usr/bin/env python3
"""The cost and throughput model behind docs/scale.md: the demo's volume times 1, 10,
100 and 1000 on AWS, from the measured benchmark figures.

    .venv/bin/python scripts/scale_model.py [--results benchmarks/results/latest.json]
                                            [--soak <soak-report.json>] [--markdown]

Every price is a constant below (us-east-1 list prices; change them to yours), every
volume follows from the demo's rate, and every throughput is either measured (the
benchmark results file) or a stated estimate. Nothing here calls AWS.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------ the demo's volume
DEMO_RATE_PER_ENDPOINT = 2.0  # the model's 1x, events/s per endpoint (`lip demo` runs at half)
ENDPOINTS = {"okta": 1, "onepassword": 3, "slack": 1, "google_workspace": 4}
POLL_MINUTES = 5
RETENTION_DAYS = 365  # `lip provision` default
DEDUPE_TTL_DAYS = 30  # LIP_DEDUPE_TTL_DAYS default
WRITES_PER_EVENT = 2  # claim (conditional UpdateItem) + landed (BatchWriteItem); webhook: 3
# Google re-reads a 30-minute overlap on every 5-minute poll (it publishes late): each
# event is claimed again about 6 times, and a failed conditional write is still billed.
GOOGLE_OVERLAP_MINUTES = 30
RECLAIMS = {"google_workspace": GOOGLE_OVERLAP_MINUTES / POLL_MINUTES}
DEDUPE_ITEM_BYTES = 300  # id "hour#event_id", status, object key, expiry, DynamoDB overhead
DAYS = 30

# ------------------------------------------------------------------ vendor ceilings (VENDORS.md)
PAGE = 1000
VENDOR_CEILING = {  # events/s one LIP deployment can poll, at pages of PAGE events
    "okta": 60 / 60 * PAGE,  # /api/v1/logs: 120 req/min bucket, one token may use 50%
    "onepassword": 600 / 60 * PAGE,  # 600 req/min, shared by the three endpoints
    "slack": 50 / 60 * PAGE,  # Tier 3, ~50 calls/min org-wide (limit can go to 9,999)
    "google_workspace": 2400 / 60 * PAGE,  # 2,400 queries/min per user per project
}

# ------------------------------------------------------------------ prices (USD, us-east-1)
FARGATE_VCPU_H = 0.04048
FARGATE_GB_H = 0.004445
RDS_T4G_SMALL_H = 0.032
RDS_GP3_GB_MONTH = 0.115
ALB_MONTH = 0.0225 * 730 + 0.008 * 730  # one LCU
NAT_H = 0.045
NAT_GB = 0.045
S3_GB_MONTH = 0.023
S3_PUT_1K = 0.005
DDB_WRU_M = 0.625  # on-demand, per million write request units
DDB_WCU_H = 0.00065  # provisioned, per WCU-hour
DDB_GB_MONTH = 0.25
KMS_KEY_MONTH = 1.0
SECRET_MONTH = 0.40
LOGS_MONTH = 5.0  # CloudWatch Logs for the control plane and runs, a few GB
HOURS = 730

# ------------------------------------------------------------------ control plane sizes
ALWAYS_ON = 3  # code server, daemon, webserver: 0.5 vCPU / 1 GB each
RUN_VCPU, RUN_GB = 1.0, 2.0
RUN_FIXED_S = 60.0  # billed per run besides polling: image pull, start, checks (estimate)
SOURCES, SECRETS = 10, 12

# ------------------------------------------------------------------ per-run throughput on AWS
# Measured: the poll->lake path (benchmarks, local) is CPU-bound at ~11,600 events/s.
# Estimated: on AWS each id's claim is one conditional DynamoDB write, 8 in flight per
# run; at 4-8 ms per write that is 1,000-2,000 ids/s per run. Take the low end.
DDB_CLAIMS_PER_S = 1000.0


@dataclass
class Figures:
    event_raw_bytes: float
    event_gz_bytes: float
    poll_events_per_s: float
    land_s3_events_per_s: float


def figures(results: Path, soak: Path | None) -> Figures:
    rows = {r["name"]: r for r in json.loads(results.read_text())}
    land = next(r for n, r in rows.items() if n.startswith("landing to directory"))
    s3 = next(r for n, r in rows.items() if n.startswith("landing to S3"))
    poll = next(r for n, r in rows.items() if n.startswith("poll okta"))
    raw = land["bytes_raw"] / land["events"]
    gz = land["bytes_gzip"] / land["events"]
    if soak is not None:  # the demo's own events, as the soak landed them
        report = json.loads(soak.read_text())
        landed = sum(r["landed_lines"] for r in report["reconciliation"].values())
        if landed:
            gz = report["lake_bytes"] / landed
            raw = report.get("lake_raw_bytes", raw * landed) / landed
    return Figures(raw, gz, poll["events_per_s"], s3["events_per_s"])


def scale(k: int, f: Figures) -> dict[str, Any]:
    per_endpoint = DEMO_RATE_PER_ENDPOINT * k
    rate = per_endpoint * sum(ENDPOINTS.values())
    month_events = rate * 86400 * DAYS
    per_source_rate = {s: per_endpoint * n for s, n in ENDPOINTS.items()}
    run_capacity = min(f.poll_events_per_s, DDB_CLAIMS_PER_S)
    month_writes = sum(
        r * 86400 * DAYS * (WRITES_PER_EVENT + RECLAIMS.get(s, 0))
        for s, r in per_source_rate.items()
    )
    writes_per_s = month_writes / (86400 * DAYS)
    poll_seconds = {s: r * POLL_MINUTES * 60 / run_capacity for s, r in per_source_rate.items()}
    over_vendor = [s for s, r in per_source_rate.items() if r > VENDOR_CEILING[s]]
    over_budget = [s for s, sec in poll_seconds.items() if sec > 240 - 15]

    runs_per_h = len(ENDPOINTS) * 60 / POLL_MINUTES
    run_seconds_h = sum(
        (RUN_FIXED_S + min(sec, POLL_MINUTES * 60)) * 60 / POLL_MINUTES
        for sec in poll_seconds.values()
    )
    run_task_h = run_seconds_h / 3600
    cost = {
        "control plane (Fargate, 3 always-on tasks)": ALWAYS_ON
        * (0.5 * FARGATE_VCPU_H + 1 * FARGATE_GB_H)
        * HOURS,
        "runs (Fargate, 1 vCPU / 2 GB)": run_task_h
        * (RUN_VCPU * FARGATE_VCPU_H + RUN_GB * FARGATE_GB_H)
        * HOURS,
        "instance database (RDS t4g.small, 20 GB)": RDS_T4G_SMALL_H * HOURS + 20 * RDS_GP3_GB_MONTH,
        "UI load balancer": ALB_MONTH,
        "NAT gateway (+ vendor responses, gzip)": NAT_H * HOURS
        + month_events * f.event_gz_bytes / 1e9 * NAT_GB,
        "commit log (DynamoDB on-demand writes)": month_writes / 1e6 * DDB_WRU_M,
        "commit log storage (30-day TTL)": rate
        * 86400
        * DEDUPE_TTL_DAYS
        * DEDUPE_ITEM_BYTES
        / 1e9
        * DDB_GB_MONTH,
        "lake storage (S3, 365-day retention)": rate
        * 86400
        * RETENTION_DAYS
        * f.event_gz_bytes
        / 1e9
        * S3_GB_MONTH,
        "lake PUTs": (runs_per_h * 1.5 * HOURS + month_events * f.event_gz_bytes / 5e6)
        / 1000
        * S3_PUT_1K,
        "KMS keys, secrets, logs": SOURCES * KMS_KEY_MONTH + SECRETS * SECRET_MONTH + LOGS_MONTH,
    }
    provisioned = writes_per_s / 0.7 * DDB_WCU_H * HOURS  # auto scaling at 70%
    return {
        "k": k,
        "events_per_s": rate,
        "events_per_day": rate * 86400,
        "raw_gb_per_day": rate * 86400 * f.event_raw_bytes / 1e9,
        "gz_gb_per_day": rate * 86400 * f.event_gz_bytes / 1e9,
        "lake_tb_at_retention": rate * 86400 * RETENTION_DAYS * f.event_gz_bytes / 1e12,
        "dynamodb_writes_per_s": writes_per_s,
        "poll_seconds_per_run": poll_seconds,
        "over_vendor_ceiling": over_vendor,
        "over_run_budget": over_budget,
        "cost": cost,
        "total": sum(cost.values()),
        "commit_log_provisioned": provisioned,
    }


def markdown(rows: list[dict[str, Any]], f: Figures) -> str:
    head = "| | " + " | ".join(f"{r['k']}x" for r in rows) + " |"
    sep = "|---|" + "---:|" * len(rows)
    out = [head, sep]

    def line(label: str, fn: Any) -> None:
        out.append(f"| {label} | " + " | ".join(fn(r) for r in rows) + " |")

    line("events/s (all sources)", lambda r: f"{r['events_per_s']:,.0f}")
    line("events/day", lambda r: f"{r['events_per_day'] / 1e6:,.1f} M")
    line(
        "raw / gzipped GB per day",
        lambda r: f"{r['raw_gb_per_day']:,.1f} / {r['gz_gb_per_day']:,.2f}",
    )
    line("lake at 365 days", lambda r: f"{r['lake_tb_at_retention']:,.2f} TB")
    line("DynamoDB writes/s", lambda r: f"{r['dynamodb_writes_per_s']:,.0f}")
    line(
        "longest poll per 5-min run",
        lambda r: (
            f"{max(r['poll_seconds_per_run'].values()):,.0f} s "
            f"({max(r['poll_seconds_per_run'], key=r['poll_seconds_per_run'].get)})"
        ),
    )
    line("over a vendor's rate limit", lambda r: ", ".join(r["over_vendor_ceiling"]) or "none")
    line("over a run's 225 s budget", lambda r: ", ".join(r["over_run_budget"]) or "none")
    for name in rows[0]["cost"]:
        line(name, lambda r, n=name: f"${r['cost'][n]:,.0f}")
    line("**total per month**", lambda r: f"**${r['total']:,.0f}**")
    line(
        "commit log if provisioned (70% target)",
        lambda r: f"${r['commit_log_provisioned']:,.0f}",
    )
    out.append("")
    out.append(
        f"Per event: {f.event_raw_bytes:,.0f} B raw, {f.event_gz_bytes:,.0f} B in the lake; "
        f"poll->lake {f.poll_events_per_s:,.0f} events/s per run (measured, local); "
        f"landing to S3 {f.land_s3_events_per_s:,.0f} events/s (measured, local S3 server); "
        f"claims on DynamoDB {DDB_CLAIMS_PER_S:,.0f}/s per run (estimate)."
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "latest.json")
    p.add_argument("--soak", type=Path, help="a soak report: the demo's own event sizes")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    f = figures(args.results, args.soak)
    rows = [scale(k, f) for k in (1, 10, 100, 1000)]
    if args.markdown:
        print(markdown(rows, f))
    else:
        print(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
