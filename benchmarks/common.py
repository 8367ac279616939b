"""Helpers shared by the benchmarks: a moto server in its own process (so it does not
compete for our interpreter's GIL), timing, and the results file."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from lip_dagster.simulator.processes import free_port, moto_server

__all__ = ["best_of", "free_port", "machine", "moto_server", "print_table", "write_results"]

RESULTS = Path(__file__).parent / "results"


def best_of(n: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    """Median of n timed runs (seconds); the machine is shared and noisy."""
    runs = [fn() for _ in range(n)]
    return statistics.median(runs), runs


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


def write_results(rows: list[dict[str, Any]]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "latest.json"
    out.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    cols = ["name", "events_per_s", "baseline_events_per_s", "ratio", "size_reduction", "target"]
    print(" | ".join(f"{c:>22}" if i else f"{c:<34}" for i, c in enumerate(cols)))
    for r in rows:
        cells = []
        for i, c in enumerate(cols):
            v = r.get(c, "")
            if isinstance(v, float):
                v = f"{v:,.2f}" if c in ("ratio", "size_reduction") else f"{v:,.0f}"
            cells.append(f"{v!s:>22}" if i else f"{v!s:<34}")
        print(" | ".join(cells))
