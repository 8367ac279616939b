"""`make bench`: every benchmark, side by side with its baseline, in one run."""

from __future__ import annotations

import sys

from benchmarks import landing, polling, s3stream, webhook
from benchmarks.common import machine, moto_server, print_table, write_results


def main() -> int:
    rows = []
    with moto_server() as endpoint:
        rows += landing.run(moto_endpoint=endpoint)
        rows += s3stream.run(moto_endpoint=endpoint)
    rows += polling.run()
    rows += webhook.run()
    for r in rows:
        r["machine"] = machine()
    print_table(rows)
    for r in rows:
        if "vs_directory" in r:
            print(f"{r['name']}: {r['vs_directory']:.2f}x the directory path")
    for r in rows:
        if "p99_ms" in r and "baseline_requests_per_s" in r:
            print(
                f"{r['name']}: {r['requests_per_s']:,.0f} req/s vs bare "
                f"{r['baseline_requests_per_s']:,.0f}, p50 {r['p50_ms']:.1f} ms, "
                f"p99 {r['p99_ms']:.1f} ms"
            )
        if "parse_only_requests_per_s" in r:
            print(
                f"{r['name']}: a handler that only reads and parses the body "
                f"{r['parse_only_requests_per_s']:,.0f} req/s ({r['parse_only_ratio']:.2f}x "
                f"bare); LIP {r['vs_parse_only']:.2f}x that"
            )
        if "p95_s" in r:
            print(
                f"{r['name']}: p50 {r['p50_s']:.0f} s, p95 {r['p95_s']:.0f} s, "
                f"max {r['max_s']:.0f} s, {r['events']} events, {r['missing']} missing"
            )
    print(f"results: {write_results(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
