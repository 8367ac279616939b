"""``lip webhook``: the receiver and the buffers behind it.

lip webhook serve [--host H] [--port P]   serve POST /webhooks/<source> for every declared source
lip webhook status                        buffer depth, oldest message, dead letters, quarantine
lip webhook replay SOURCE                 move SOURCE's dead-lettered messages back to its buffer

(``lip run SOURCE`` drains a webhook source's buffer into the lake once.)
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from lip_dagster.errors import LipError
from lip_dagster.webhook.spec import DEFAULT_REQUEST_TIMEOUT

__all__ = ["register"]


def _declared() -> dict[str, Any]:
    from lip_dagster.webhook.spec import load_specs

    specs = load_specs()
    if not specs:
        raise LipError("no webhook sources are declared under lip_dagster/defs/")
    return specs


def cmd_serve(args: argparse.Namespace) -> int:
    from lip_dagster.resources import backend_from_env
    from lip_dagster.webhook.receiver import app_for_backend
    from lip_dagster.webhook.server import listen, serve

    specs = _declared()
    # bound first: a port in use is one error, before any URL or buffer is made
    with listen(args.host, args.port) as sock:
        backend = backend_from_env()
        for name in specs:
            for note in backend.ensure_source(name):
                print(f"  {name}: {note}")
        app = app_for_backend(backend, specs)
        # Why a delivery was refused (401 after a secret changed on one side, 415 from a
        # vendor set to XML) is the first thing on-call needs, and the vendor's own UI
        # rarely says: the receiver's refusals are logged at INFO, above the command
        # line's default of WARNING. Never a header or a body, only source, status, reason.
        receiver_log = logging.getLogger("lip_dagster.webhook.receiver")
        if receiver_log.getEffectiveLevel() > logging.INFO:
            receiver_log.setLevel(logging.INFO)
        shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host  # noqa: S104
        port = int(sock.getsockname()[1])  # --port 0: the one the system picked
        for name, spec in specs.items():
            print(f"  {name:<14} {spec.vendor:<16} POST http://{shown}:{port}/webhooks/{name}")
        serve(
            app,
            args.host,
            port,
            sock=sock,
            access_log=args.access_log,
            request_timeout=args.request_timeout,
        )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from lip_dagster.resources import backend_from_env

    backend = backend_from_env()
    # IN FLIGHT: received by a drain and hidden until its visibility timeout (all of
    # BUFFERED in flight and no drain running: the last drain failed)
    print(
        f"{'SOURCE':<14} {'BUFFERED':>9} {'IN FLIGHT':>9} {'OLDEST':>9} {'DEAD':>6} "
        f"{'QUARANTINED':>12}"
    )
    for name in _declared():
        depth = backend.buffer.depth(name)
        age = "-" if depth.oldest_age_seconds is None else f"{depth.oldest_age_seconds:.0f}s"
        quarantined = backend.quarantine.count(name)
        print(
            f"{name:<14} {depth.messages:>9} {depth.in_flight:>9} {age:>9} "
            f"{depth.dead_letters:>6} {quarantined:>12}"
        )
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from lip_dagster.resources import backend_from_env
    from lip_dagster.webhook.drain import replay

    if args.source not in _declared():
        raise LipError(f"no webhook source named {args.source!r}; see `lip webhook status`")
    moved = replay(backend_from_env().buffer, args.source)
    print(f"{args.source}: {moved} dead-lettered messages moved back to the buffer")
    return 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 3600:  # nan fails too
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 3600")
    return value


def register(subparsers: Any) -> None:
    """Add ``lip webhook ...`` to the ``lip`` parser's subcommands."""
    p = subparsers.add_parser("webhook", help="the webhook receiver and its buffers")
    sub = p.add_subparsers(dest="webhook_cmd", required=True)
    s = sub.add_parser("serve", help="serve the receiver (uvicorn, httptools + uvloop)")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    s.add_argument("--access-log", action="store_true", help="log method, path and status")
    s.add_argument(
        "--request-timeout",
        type=_seconds,
        default=DEFAULT_REQUEST_TIMEOUT,
        help="seconds a client has to send a whole request before it is answered 408 and "
        f"disconnected (default {DEFAULT_REQUEST_TIMEOUT:g}; vendors give up sooner)",
    )
    s.set_defaults(fn=cmd_serve)
    st = sub.add_parser("status", help="buffer depth and dead letters per webhook source")
    st.set_defaults(fn=cmd_status)
    r = sub.add_parser("replay", help="move dead-lettered messages back to the buffer")
    r.add_argument("source")
    r.set_defaults(fn=cmd_replay)
