"""``lip webhook serve`` as on-call runs it, at the command line's default verbosity:
a refused delivery's reason is in its log (and no secret is)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from lip_dagster.simulator.processes import LocalServerError, free_port, wait_until_answering

SECRET = "serve-logs-okta-secret"


def test_a_refused_delivery_says_why_in_the_receivers_log(tmp_path: Path) -> None:
    port = free_port()
    health = f"http://127.0.0.1:{port}/healthz"
    log_path = tmp_path / "receiver.log"
    env = {
        **os.environ,
        "LIP_HOME": str(tmp_path / "home"),
        "LIP_BACKEND": "embedded",
        "LIP_SECRET_OKTA_HOOKS_SHARED_SECRET": SECRET,
    }
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lip_dagster.cli", "webhook", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        try:
            try:
                wait_until_answering(proc, health, "receiver", timeout=60)
            except LocalServerError as exc:
                raise AssertionError(f"{exc}: {log_path.read_text()[-2000:]}") from None
            r = httpx.post(
                f"http://127.0.0.1:{port}/webhooks/okta_hooks",
                headers={"Authorization": "wrong-" + SECRET, "Content-Type": "application/json"},
                content=b'{"data": {"events": []}}',
                timeout=10,
            )
            assert r.status_code == 401
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    logged = log_path.read_text()
    assert "webhook okta_hooks: 401" in logged
    assert SECRET not in logged


def test_a_port_in_use_is_one_error_before_any_url(tmp_path: Path) -> None:
    """Another receiver (or any program) already listens on the port: `lip webhook
    serve` says so in one sentence and exits 1, without first printing URLs vendors
    would be pointed at and uvicorn's "startup complete"."""
    from lip_dagster.serving import bind

    taken = bind("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        env = {**os.environ, "LIP_HOME": str(tmp_path / "home"), "LIP_BACKEND": "embedded"}
        proc = subprocess.run(
            [sys.executable, "-m", "lip_dagster.cli", "webhook", "serve", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        taken.close()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "POST http" not in proc.stdout and "startup complete" not in proc.stderr
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("lip: error:")]
    assert f"127.0.0.1:{port}" in error and "in use" in error
