"""``lip status`` exits 2 whenever the alert sensor would page at fail severity, and 0
when nothing is wrong, so a script or a deployment check can trust it."""

from __future__ import annotations

import dagster as dg
import orjson
import pytest

from lip_dagster.definitions import defs
from lip_dagster.simulator import VendorSimulator

from .conftest import lip_status_exit_code, poll


def test_lip_status_exits_2_when_the_latest_run_failed_before_anything_landed(
    demo_world: VendorSimulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    d, instance = defs(), dg.DagsterInstance.ephemeral()
    assert lip_status_exit_code(d, instance, monkeypatch) == 0  # nothing has run yet
    capsys.readouterr()

    monkeypatch.setenv("LIP_SECRET_SLACK_TOKEN", "xoxp-revoked")  # Slack refuses the token
    assert not poll(d, instance, "slack").success
    assert lip_status_exit_code(d, instance, monkeypatch) == 2
    rows = orjson.loads(capsys.readouterr().out)["sources"]
    slack = next(r for r in rows if r["source"] == "slack")
    assert (slack["freshness"], slack["last_run_status"]) == ("unknown", "FAILURE")
