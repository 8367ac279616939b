"""``lip demo``: the local vendor simulator, a first collection of every demo source,
then Dagster's UI with the schedules on. Ctrl-C stops everything it started.

The simulator is a new vendor tenant each time it starts, so the demo forgets the
cursors of a previous demo (they point into a tenant that no longer exists); the lake
keeps what it landed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from lip_dagster.config import Settings
from lip_dagster.errors import LipError

POLLING_DEMO_SOURCES = ("okta", "onepassword", "slack", "google_workspace")
# Events per second per simulated endpoint (nine of them), and how long the simulator
# keeps them: about 5 KB each in memory, so the simulator levels off near 350 MB
# however long the demo runs, instead of growing by gigabytes a day.
DEMO_RATE_PER_S = 1.0
DEMO_RETENTION_HOURS = 2.0
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def demo_env(base_url: str) -> dict[str, str]:
    """What a deployment would set, pointed at the simulator."""
    return {
        "LIP_OKTA_BASE_URL": f"{base_url}/okta",
        "LIP_OKTA_AUTH": "oauth",
        "LIP_ONEPASSWORD_BASE_URL": f"{base_url}/onepassword",
        "LIP_SLACK_BASE_URL": f"{base_url}/slack",
        "LIP_GOOGLE_BASE_URL": f"{base_url}/google",
    }


def write_secrets(path: Path, creds: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps(creds, option=orjson.OPT_INDENT_2))
    os.replace(tmp, path)


def run_demo(once: bool, port: int = 8900, ui_port: int = 3000) -> int:
    from lip_dagster.cli import run_source
    from lip_dagster.s3stream.demo import S3_DEMO_SOURCES, populate_landing
    from lip_dagster.simulator import SimConfig, VendorSimulator

    settings = Settings.from_env()
    if settings.backend != "embedded":
        raise LipError("the demo runs on the embedded backend; unset LIP_BACKEND")
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    if settings.state_db.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(str(settings.state_db) + suffix).unlink(missing_ok=True)
    dagster_home = home / "dagster"  # runs of the first collection show in the UI too
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    sim = VendorSimulator(
        SimConfig(
            port=port,
            live_rate_per_s=DEMO_RATE_PER_S,
            history_hours=DEMO_RETENTION_HOURS,
            retention_hours=DEMO_RETENTION_HOURS,
        )
    )
    sim.start()
    stop_hooks: Callable[[], None] = lambda: None  # noqa: E731
    try:
        write_secrets(settings.secrets_file, sim.credentials())
        os.environ.update(demo_env(sim.base_url))
        print(f"vendor simulator: {sim.base_url}  (secrets in {settings.secrets_file})")
        populate_landing(settings.home)  # the vendors' buckets, played by directories
        failed = []
        for source in (*POLLING_DEMO_SOURCES, *S3_DEMO_SOURCES):
            if not collect_once(source, lambda s: run_source(s, None)):
                failed.append(source)
        from lip_dagster.webhook.demo import drain_once, start_webhook_demo

        hooks = start_webhook_demo(settings)  # the receiver, and vendors delivering to it
        stop_hooks = hooks.stop
        for line in hooks.summary_lines():
            print(line)
        for source in hooks.sources:
            if not collect_once(source, drain_once):
                failed.append(source)
        print(f"lake: {settings.lake_dir}")
        if once:
            return 1 if failed else 0
        return _serve_ui(settings, ui_port)
    finally:
        stop_hooks()
        sim.stop()


def collect_once(source: str, collect: Callable[[str], dict[str, int]]) -> bool:
    """Run one collection and print its totals like `lip run`; False if it failed,
    landed nothing, or a check of what it landed failed (an object put in quarantine:
    `run_source` has printed which check and why)."""
    from lip_dagster.cli import run_summary

    try:
        t = collect(source)
    except LipError as exc:
        print(f"  {source:<18} FAILED: {exc}")
        return False
    print(f"  {source:<18} {run_summary(t, width=6)}")
    return t["events"] > 0 and not t["failed_checks"]


def _serve_ui(settings: Settings, ui_port: int) -> int:
    env = {**os.environ, "LIP_SCHEDULES_ON": "1"}
    exe = Path(sys.executable).parent / "dagster"
    cmd = [
        str(exe),
        "dev",
        "-w",
        str(PROJECT_ROOT / "workspace.yaml"),
        "-h",
        "127.0.0.1",
        "-p",
        str(ui_port),
    ]
    print(f"Dagster UI: http://127.0.0.1:{ui_port}  (Ctrl-C stops the demo)")

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C, or a TERM from a supervisor, even when started from a shell that
    # ignores SIGINT for background jobs. Set before the child starts, so it gets
    # the default disposition back and can shut its own servers down.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    proc = subprocess.Popen(cmd, env=env, cwd=PROJECT_ROOT, start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        print("stopping ...")
        return 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            deadline = time.monotonic() + 20
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
