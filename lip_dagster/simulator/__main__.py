"""``python -m lip_dagster.simulator``: run the vendor simulator in the foreground.

Used by ``make demo``: it writes ``credentials()`` as JSON (mode 0600, since the file
holds private keys) so the demo's secret store can load it, prints the base URL on
stdout, and serves until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import orjson

from lip_dagster.simulator.config import SimConfig
from lip_dagster.simulator.faults import Faults
from lip_dagster.simulator.server import VendorSimulator


def write_private_json(path: Path, data: dict[str, str]) -> None:
    """Write ``data`` readable by the owner only, also when the file already existed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, orjson.dumps(data, option=orjson.OPT_INDENT_2))
    finally:
        os.close(fd)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m lip_dagster.simulator",
        description="Local Okta / Slack / 1Password / Google Workspace API simulator.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8900, help="0 picks a free port")
    p.add_argument("--credentials-out", type=Path, help="write credentials JSON here (0600)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--history-hours", type=float, default=3)
    p.add_argument("--events-per-hour", type=int, default=200)
    p.add_argument(
        "--live-rate",
        type=float,
        default=0.5,
        help="new events per second per endpoint (0 disables)",
    )
    p.add_argument("--rate-429", type=float, default=0.0)
    p.add_argument("--rate-5xx", type=float, default=0.0)
    p.add_argument("--okta-rate-limit", type=int, default=600, help="requests/min")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = SimConfig(
        host=args.host,
        port=args.port,
        seed=args.seed,
        history_hours=args.history_hours,
        events_per_hour=args.events_per_hour,
        live_rate_per_s=args.live_rate,
        faults=Faults(rate_429=args.rate_429, rate_5xx=args.rate_5xx, seed=args.seed),
        okta_rate_limit_per_min=args.okta_rate_limit,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    sim = VendorSimulator(config).start()
    try:
        if args.credentials_out is not None:
            write_private_json(args.credentials_out, sim.credentials())
        print(sim.base_url, flush=True)
        print(
            "  okta "
            + sim.url("okta")
            + "  slack "
            + sim.url("slack")
            + "  onepassword "
            + sim.url("onepassword")
            + "  google "
            + sim.url("google"),
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
