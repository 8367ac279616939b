"""The receiver's promise to a vendor: a 2xx means the events are in the buffer. Here
the real receiver (``lip webhook serve``, its own process) is killed with SIGKILL in
the middle of concurrent deliveries; afterwards every event of every delivery it
answered 2xx is in the buffer, and a restarted receiver takes the vendors' retries of
the rest. (A kill cannot show what only a power cut would, that the WAL was flushed
to disk before the answer; the buffer tests check the flush itself.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson

from lip_dagster.simulator.processes import LocalServerError, free_port, wait_until_answering
from lip_dagster.simulator.webhooks import Delivery, WebhookSimulator
from lip_dagster.state.sqlite import SqliteBuffer
from lip_dagster.webhook.message import decode

SENDERS = 8
KILL_AFTER = 120  # answered deliveries before the kill


def start_receiver(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LIP_HOME": str(home), "LIP_BACKEND": "embedded"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lip_dagster.cli", "webhook", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until_answering(proc, f"http://127.0.0.1:{port}/healthz", "the receiver", timeout=60)
    except LocalServerError:
        proc.kill()
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise LocalServerError(f"the receiver did not start: {err[-2000:]}") from None
    return proc


def send(
    base_url: str, deliveries: list[Delivery], kill: Callable[[], None] | None = None
) -> tuple[list[Delivery], list[Delivery]]:
    """Deliveries answered 2xx, and the ones that got no answer. ``kill`` is called
    once ``KILL_AFTER`` deliveries were answered, while the senders keep sending."""
    answered: list[Delivery] = []
    unanswered: list[Delivery] = []
    wrong: list[tuple[int, str]] = []
    lock = threading.Lock()
    work = iter(deliveries)

    def sender() -> None:
        with httpx.Client(base_url=base_url, timeout=10) as client:
            while True:
                with lock:
                    d = next(work, None)
                if d is None:
                    return
                try:
                    r = client.post(f"/webhooks/{d.source}", headers=d.headers, content=d.body)
                except httpx.TransportError:
                    with lock:
                        unanswered.append(d)
                    continue
                with lock:
                    if r.status_code != 204:
                        wrong.append((r.status_code, r.text))
                        continue
                    answered.append(d)
                    if kill is not None and len(answered) == KILL_AFTER:
                        kill()

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == [], f"the receiver answered {wrong[:3]}"
    return answered, unanswered


def buffered_ids(home: Path) -> list[str]:
    buffer = SqliteBuffer(home / "state.db")
    try:
        messages = buffer.receive("okta_hooks", 100_000, 0)
    finally:
        buffer.close()
    return [e["uuid"] for m in messages for e in decode(m.body, "okta_hooks").events]


def test_every_event_answered_2xx_is_buffered_after_a_kill(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    sim = WebhookSimulator(seed=5)
    (home / "secrets.json").write_bytes(orjson.dumps(sim.credentials()))
    os.chmod(home / "secrets.json", 0o600)
    deliveries = sim.okta_deliveries(4000, per_delivery=5)
    port = free_port()
    proc = start_receiver(home, port)
    try:
        answered, unanswered = send(
            f"http://127.0.0.1:{port}", deliveries, lambda: proc.send_signal(signal.SIGKILL)
        )
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(answered) >= KILL_AFTER and unanswered, "the kill did not land mid-traffic"

    held = buffered_ids(home)
    promised = {e["uuid"] for d in answered for e in d.events}
    assert promised <= set(held), f"{len(promised - set(held))} acknowledged events lost"

    # The vendors retry what got no answer, and a restarted receiver takes it. What
    # the killed one buffered without answering is at worst buffered twice: landing
    # drops the second copy.
    proc = start_receiver(home, port)
    try:
        again, lost = send(f"http://127.0.0.1:{port}", unanswered)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert lost == [] and len(again) == len(unanswered)
    assert set(buffered_ids(home)) == {e["uuid"] for d in deliveries for e in d.events}
