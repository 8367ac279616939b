"""`make bench`: every benchmark, side by side with its baseline, in one run."""

from __future__ import annotations

import sys

from benchmarks import landing, polling, s3stream
from benchmarks.common import machine, moto_server, print_table, write_results


def main() -> int:
    rows = []
    with moto_server() as endpoint:
        rows += landing.run(moto_endpoint=endpoint)
        rows += s3stream.run(moto_endpoint=endpoint)
    rows += polling.run()
    for r in rows:
        r["machine"] = machine()
    print_table(rows)
    for r in rows:
        if "vs_directory" in r:
            print(f"{r['name']}: {r['vs_directory']:.2f}x the directory path")
    print(f"results: {write_results(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
