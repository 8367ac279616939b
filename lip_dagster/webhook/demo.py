"""The webhook half of ``lip demo``: the receiver on 127.0.0.1, and the simulator
delivering Okta Event Hooks (verification call included), GitHub webhooks and Jamf
Pro webhooks to it, as the vendors would.

    demo = start_webhook_demo()       # receiver up, deliveries made
    for line in demo.summary_lines(): print(line)
    for source in demo.sources: drain_once(source)   # buffer -> lake, through Dagster
    demo.stop()

The simulator's shared secrets are merged into ``$LIP_HOME/secrets.json`` (mode
0600) under the names the YAML blocks use, so the receiver finds them as it would
in a deployment.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from lip_dagster.config import Settings
from lip_dagster.errors import LipError

__all__ = ["WebhookDemo", "drain_once", "run_webhook_demo_once", "start_webhook_demo"]


@dataclass
class WebhookDemo:
    base_url: str
    stop: Callable[[], None]
    sources: tuple[str, ...]
    delivered: dict[str, dict[str, int]] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        lines = [f"webhook receiver: {self.base_url}/webhooks/<source>"]
        for source, d in self.delivered.items():
            line = (
                f"  {source:<18} {d['requests']:>4} requests: {d['accepted']} answered 2xx, "
                f"{d['refused']} refused (bad auth, on purpose); {d['events']} events"
            )
            if d["redelivered"]:
                line += (
                    f", {d['redelivered']} of them sent twice on purpose (a vendor retry: "
                    "acknowledged, not buffered again)"
                )
            lines.append(line)
        return lines


def _merge_secrets(path: Path, creds: dict[str, str]) -> None:
    current: dict[str, str] = {}
    if path.exists():
        loaded = orjson.loads(path.read_bytes())
        if isinstance(loaded, dict):
            current = loaded
    current.update(creds)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps(current, option=orjson.OPT_INDENT_2))
    os.replace(tmp, path)


def start_webhook_demo(
    settings: Settings | None = None, *, port: int = 0, seed: int = 0
) -> WebhookDemo:
    """Start the receiver and make one round of deliveries; ``stop()`` shuts the
    receiver down. Raises ``LipError`` if the receiver answers a vendor wrongly."""
    from lip_dagster.resources import backend_from_settings
    from lip_dagster.simulator.webhooks import WebhookSimulator
    from lip_dagster.webhook.receiver import app_for_backend
    from lip_dagster.webhook.server import BackgroundServer
    from lip_dagster.webhook.spec import load_specs

    settings = settings or Settings.from_env()
    sim = WebhookSimulator(seed)
    _merge_secrets(settings.secrets_file, sim.credentials())
    backend = backend_from_settings(settings)
    specs = {k: v for k, v in load_specs().items() if k in ("okta_hooks", "github", "jamf")}
    for name in specs:
        backend.ensure_source(name)
    server = BackgroundServer(app_for_backend(backend, specs), port=port).start()
    try:
        demo = WebhookDemo(server.base_url, server.stop, tuple(specs))
        # Okta verifies the hook once before the first delivery
        (status,) = sim.send(server.base_url, [sim.okta_verification()])
        if status != 200:
            raise LipError(f"the receiver failed Okta's verification call: HTTP {status}")
        okta = sim.okta_deliveries(120, per_delivery=10)
        retried = okta[:2]  # Okta retries a delivery it thinks timed out: duplicates
        okta += retried
        github = sim.github_deliveries(30)
        jamf = sim.jamf_deliveries(30)
        bad = [sim.tampered(github[0]), sim.tampered(jamf[0])]
        batches = {"okta_hooks": okta, "github": github + bad[:1], "jamf": jamf + bad[1:]}
        for source, deliveries in batches.items():
            statuses = sim.send(server.base_url, deliveries, concurrency=4)
            demo.delivered[source] = {
                "requests": len(deliveries),
                "events": sum(len(d.events) for d in deliveries),
                "accepted": sum(1 for s in statuses if s in (200, 204)),
                "refused": sum(1 for s in statuses if s == 401),
                "redelivered": sum(len(d.events) for d in retried) if source == "okta_hooks" else 0,
            }
            unexpected = [s for s in statuses if s not in (200, 204, 401)]
            if unexpected:
                raise LipError(f"{source}: the receiver answered {unexpected[:3]}")
        return demo
    except BaseException:
        server.stop()
        raise


def drain_once(source: str) -> dict[str, int]:
    """Drain one webhook source's buffer into the lake now, in-process through its
    Dagster drain job; returns the run's totals (events, duplicates, objects,
    partitions)."""
    from lip_dagster.cli import run_source

    return run_source(source, None)


def run_webhook_demo_once(settings: Settings | None = None) -> int:
    """Deliver, drain each source once, print what landed; 0 if every source landed
    and no check of what it landed failed."""
    from lip_dagster.demo import collect_once

    demo = start_webhook_demo(settings)
    failed = []
    try:
        for line in demo.summary_lines():
            print(line)
        for source in demo.sources:
            if not collect_once(source, drain_once):
                failed.append(source)
    finally:
        demo.stop()
    return 1 if failed else 0
