"""The simulator as a long-lived process with a ledger: what it emitted, for a soak
test to reconcile the lake against.

    python -m lip_dagster.simulator.ledger --live-rate 60 --ledger-out ids.ndjson.gz

prints one JSON line, ``{"base_url", "control_url", "pid"}``, then serves until
SIGTERM or Ctrl-C. The control server (127.0.0.1 only) answers:

    GET  /ledger/stats    events emitted so far per vendor/endpoint, and this process's RSS
    POST /ledger/freeze   stop emitting (live rate 0); returns the final counts
    POST /ledger/dump     write every emitted event's id to --ledger-out; returns the counts

The dump holds, per event, the fields each vendor documents as the event's identity
(Okta ``uuid``, Slack ``id``, 1Password ``uuid``, Google's ``id`` object), one JSON
line each: ``{"vendor", "endpoint", "id"}``, gzipped. It streams from the stored
events without decoding them all at once, so a dump of millions of events stays small
in memory. Nothing in the product imports this module.
"""

from __future__ import annotations

import argparse
import gzip
import os
import signal
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from lip_dagster.simulator.__main__ import write_private_json
from lip_dagster.simulator.config import SimConfig
from lip_dagster.simulator.generators import VENDORS
from lip_dagster.simulator.server import VendorSimulator

__all__ = ["Ledger", "identity_of", "main", "rss_bytes"]

# the fields each vendor documents as an event's identity (VENDORS.md)
_IDENTITY_FIELD = {
    "okta": "uuid",
    "slack": "id",
    "onepassword": "uuid",
    "google_workspace": "id",
}


def identity_of(vendor: str, event: dict[str, Any]) -> Any:
    return event[_IDENTITY_FIELD[vendor]]


def rss_bytes(pid: int | str = "self") -> tuple[int, int]:
    """(current, peak) resident set size of a process, from /proc."""
    current = peak = 0
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    return current, peak


class Ledger:
    """Counts and ids of what a running ``VendorSimulator`` has emitted."""

    def __init__(self, sim: VendorSimulator) -> None:
        self.sim = sim
        self._state = sim._state  # the simulator's own store: read under its lock

    def counts(self) -> dict[str, int]:
        """Events stored per vendor/endpoint, bringing every stream up to now first:
        the simulator generates lazily, when a client looks, and the vendor it plays
        holds an event from the moment it happened."""
        with self._state.lock:
            return {
                f"{vendor}/{endpoint}": len(self._state.advance(vendor, endpoint))
                for vendor, endpoints in VENDORS.items()
                for endpoint in endpoints
            }

    def freeze(self) -> dict[str, int]:
        """Stop emitting: everything up to now exists, nothing after."""
        with self._state.lock:
            counts = self.counts()
            self.sim.live_rate_per_s = 0
        return counts

    def ids(self, chunk: int = 10_000) -> Iterator[tuple[str, str, Any]]:
        """(vendor, endpoint, identity) of every stored event, in persistence order."""
        for vendor, endpoints in VENDORS.items():
            for endpoint in endpoints:
                stream = self._state.stream(vendor, endpoint)
                start = 0
                while True:
                    with self._state.lock:
                        start = max(start, stream.first)  # what a retention window dropped
                        blobs = stream.blobs[start : start + chunk]
                    if not blobs:
                        break
                    start += len(blobs)
                    for blob in blobs:
                        yield vendor, endpoint, identity_of(vendor, orjson.loads(blob))

    def dump(self, path: Path) -> dict[str, int]:
        counts: dict[str, int] = {}
        tmp = path.with_name(path.name + ".tmp")
        with gzip.open(tmp, "wb", compresslevel=1) as fh:
            for vendor, endpoint, ident in self.ids():
                fh.write(orjson.dumps({"vendor": vendor, "endpoint": endpoint, "id": ident}))
                fh.write(b"\n")
                key = f"{vendor}/{endpoint}"
                counts[key] = counts.get(key, 0) + 1
        os.replace(tmp, path)
        return counts


def _control_server(ledger: Ledger, ledger_out: Path | None, port: int) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = orjson.dumps(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path != "/ledger/stats":
                self._answer(404, {"error": "unknown path"})
                return
            rss, peak = rss_bytes()
            self._answer(
                200,
                {
                    "pid": os.getpid(),
                    "rss_bytes": rss,
                    "peak_rss_bytes": peak,
                    "emitted": ledger.counts(),
                },
            )

        def do_POST(self) -> None:
            with lock:
                if self.path == "/ledger/freeze":
                    self._answer(200, {"emitted": ledger.freeze()})
                elif self.path == "/ledger/dump":
                    if ledger_out is None:
                        self._answer(409, {"error": "started without --ledger-out"})
                        return
                    self._answer(200, {"emitted": ledger.dump(ledger_out), "path": str(ledger_out)})
                else:
                    self._answer(404, {"error": "unknown path"})

        def log_message(self, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m lip_dagster.simulator.ledger",
        description="The vendor simulator with a ledger of what it emitted.",
    )
    p.add_argument("--port", type=int, default=0, help="the vendor APIs (0: a free port)")
    p.add_argument("--control-port", type=int, default=0, help="the ledger (0: a free port)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--history-hours", type=float, default=1)
    p.add_argument("--events-per-hour", type=int, default=0)
    p.add_argument("--live-rate", type=float, default=1.0, help="events/s per endpoint")
    p.add_argument("--okta-rate-limit", type=int, default=600, help="requests/min")
    p.add_argument("--credentials-out", type=Path, help="write credentials JSON here (0600)")
    p.add_argument("--ledger-out", type=Path, help="where POST /ledger/dump writes the ids")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sim = VendorSimulator(
        SimConfig(
            port=args.port,
            seed=args.seed,
            history_hours=args.history_hours,
            events_per_hour=args.events_per_hour,
            live_rate_per_s=args.live_rate,
            okta_rate_limit_per_min=args.okta_rate_limit,
        )
    ).start()
    control = _control_server(Ledger(sim), args.ledger_out, args.control_port)
    thread = threading.Thread(target=control.serve_forever, name="ledger-control", daemon=True)
    thread.start()
    try:
        if args.credentials_out is not None:
            write_private_json(args.credentials_out, sim.credentials())
        host, port = control.server_address[:2]
        print(
            orjson.dumps(
                {
                    "base_url": sim.base_url,
                    "control_url": f"http://{host}:{port}",
                    "pid": os.getpid(),
                }
            ).decode(),
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        control.shutdown()
        control.server_close()
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
