"""A local stub that records what notifiers send it, and the two moves every alert
test makes: run a source's poll job, and evaluate one tick of the alert sensor."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import orjson
import pytest
from dagster._core.test_utils import freeze_time


class Stub:
    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []
        self.fail_next = 0
        self.lock = threading.Lock()
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with stub.lock:
                    if stub.fail_next:
                        stub.fail_next -= 1
                        self.send_response(500)
                        self.end_headers()
                        return
                    stub.received.append((self.path, orjson.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        return H

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()
    yield s
    s.close()


def route_alerts_to(stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Send the alert sensor's notices to the stub's generic webhook."""
    monkeypatch.setenv("LIP_ALERT_NOTIFIERS", "webhook")
    monkeypatch.setenv("LIP_SECRET_ALERTS_WEBHOOK_URL", stub.url + "/alerts")


def poll(
    d: dg.Definitions,
    instance: dg.DagsterInstance,
    source: str,
    partition: str | None = None,
    live: bool = True,
) -> dg.ExecuteInProcessResult:
    """One run of the source's poll job, as its schedule (live) or a backfill launches it."""
    tags = {"lip/source": source, **({"lip/mode": "poll"} if live else {})}
    return d.resolve_job_def(f"{source}_poll").execute_in_process(
        partition_key=partition or datetime.now(UTC).strftime("%Y-%m-%d-%H:00"),
        tags=tags,
        instance=instance,
        raise_on_error=False,
    )


def tick(d: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    """One evaluation of ``lip_alerts`` with the cursor the last one stored."""
    sensor = d.resolve_sensor_def("lip_alerts")
    ctx = dg.build_sensor_context(
        instance=instance,
        repository_def=d.get_repository_def(),
        cursor=cursor,
        resources={"lip": d.resources["lip"]},
    )
    return sensor(ctx)


@pytest.fixture
def alerting(lip_home: Path, stub: Stub, monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    """The definitions, with the alert sensor's notices going to the stub."""
    from lip_dagster.definitions import defs

    route_alerts_to(stub, monkeypatch)
    return defs()


def hour(at: datetime) -> str:
    return at.strftime("%Y-%m-%d-%H:00")


def materialize(
    instance: dg.DagsterInstance,
    at: datetime,
    events: int,
    newest: datetime | None = None,
    asset: str = "okta",
) -> None:
    """What a run logs for the hour it wrote to, recorded at ``at``."""
    partition = newest or at
    with freeze_time(at):
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset,
                partition=hour(partition),
                metadata={
                    "events": events,
                    "newest_event": newest.strftime("%Y-%m-%dT%H:%M:%SZ") if newest else "none",
                },
            )
        )


def tick_at(
    d: dg.Definitions,
    instance: dg.DagsterInstance,
    cursor: str | None,
    at: datetime,
    monkeypatch: pytest.MonkeyPatch,
) -> str | None:
    """One tick of ``lip_alerts`` as if at ``at``; returns the cursor it stored."""
    from lip_dagster.alerts import sensor as alert_sensor

    monkeypatch.setattr(alert_sensor, "clock", lambda: at.timestamp())
    return tick(d, instance, cursor).cursor


def opened(stub: Stub) -> list[str]:
    """Incident keys of every "open" notice the generic webhook received, in order."""
    return [b["incident"] for _, b in stub.received if b.get("event") == "open"]


def resolved(stub: Stub) -> list[str]:
    return [b["incident"] for _, b in stub.received if b.get("event") == "resolved"]


def lip_status_exit_code(
    d: dg.Definitions,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    at: datetime | None = None,
) -> int:
    """``lip status --json`` against this instance, as if run at ``at``; it keeps no
    memory between runs, so it reads everything it needs from storage."""
    from lip_dagster.alerts import status
    from lip_dagster.alerts.health import SourceHealth, declared_sources, source_health
    from lip_dagster.alerts.incidents import Problem

    specs = declared_sources(d.get_repository_def())
    lip = d.resources["lip"]
    when = (at or datetime.now(UTC)).timestamp()

    def collect(now: float | None = None) -> tuple[list[SourceHealth], str, list[Problem]]:
        rows = [source_health(instance, s, lip, when) for s in specs]
        return rows, "ephemeral", status.other_problems(instance)

    monkeypatch.setattr(status, "collect", collect)
    return status.main(as_json=True)
