"""A source removed from the definitions while its incident is open: the incident is
closed (nothing will ever resolve it), but the notice says the source is no longer
watched. It must not read as a recovery: the problem was never seen to end (dead
letters still unlanded, a vendor still down)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from lip_dagster.alerts.sensor import build_alert_sensor
from lip_dagster.components.common import freshness
from lip_dagster.definitions import defs

from .conftest import Stub, materialize, opened, resolved, tick_at


def without_okta(d: dg.Definitions) -> dg.Definitions:
    """The deployment after okta's defs.yaml was deleted: another source remains."""

    @dg.asset(name="slack", tags={"lip/pattern": "polling"}, freshness_policy=freshness(60, 30))
    def slack() -> None: ...

    return dg.Definitions(
        assets=[slack], sensors=[build_alert_sensor()], resources={"lip": d.resources["lip"]}
    )


def test_an_open_incident_of_a_removed_source_closes_without_claiming_recovery(
    lip_home: Path, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIP_ALERT_NOTIFIERS", "webhook,slack")
    monkeypatch.setenv("LIP_SECRET_ALERTS_WEBHOOK_URL", stub.url + "/alerts")
    monkeypatch.setenv("LIP_SECRET_ALERTS_SLACK_WEBHOOK_URL", stub.url + "/slack")
    d, instance = defs(), dg.DagsterInstance.ephemeral()
    t0 = datetime.now(UTC).replace(microsecond=0)
    materialize(instance, t0, 40, newest=t0 - timedelta(seconds=30))
    cursor = tick_at(d, instance, None, t0 + timedelta(hours=2), monkeypatch)
    assert opened(stub) == ["freshness-fail|okta"]

    # okta is taken out of the YAML while its page is open; nothing ever landed again
    smaller = without_okta(d)
    cursor = tick_at(smaller, instance, cursor, t0 + timedelta(hours=2, minutes=1), monkeypatch)
    assert resolved(stub) == ["freshness-fail|okta"]  # closed once: nothing can resolve it
    (notice,) = [b for _, b in stub.received if b.get("event") == "resolved"]
    assert "no longer declared" in notice["message"]
    assert not notice["message"].startswith("resolved:")
    assert "nothing new has landed" in notice["message"]  # what was wrong, still said
    slack = [b["text"] for p, b in stub.received if p == "/slack"]
    assert slack[0].startswith(":rotating_light: LIP open: okta: nothing new")
    assert slack[1].startswith(":heavy_minus_sign: LIP closed, not resolved: okta is no longer")
    assert "resolved:" not in slack[1].split("not resolved:")[1]
    tick_at(smaller, instance, cursor, t0 + timedelta(hours=2, minutes=2), monkeypatch)
    assert len(stub.received) == 4
