"""Helpers shared by the benchmarks: a moto server in its own process (so it does not
compete for our interpreter's GIL), timing, and the results file."""

from __future__ import annotations

import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

RESULTS = Path(__file__).parent / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    """A local AWS-compatible server in a child process; stops with the block."""
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/moto-api/", timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the local moto server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


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
