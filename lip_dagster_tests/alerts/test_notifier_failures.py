"""A notifier that cannot send, whatever the reason (its secret missing, the secret
store failing, a malformed URL, a bug), is retried later and never stops the alert
sensor or the other notifiers: each page still goes out once per incident."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import dagster as dg
import pytest

from lip_dagster.alerts import sensor as alert_sensor
from lip_dagster.alerts.incidents import AlertState, Delivery, advance, problems_of
from lip_dagster.alerts.notifiers import Notifier, NotifierError, SlackNotifier, WebhookNotifier
from lip_dagster.alerts.sensor import deliver
from lip_dagster.definitions import defs
from lip_dagster.errors import StateError
from lip_dagster.secrets import Secret

from .conftest import Stub, opened, tick
from .test_incidents import failing_run


@pytest.mark.parametrize("order", ["webhook,slack", "slack,webhook"])
def test_a_notifier_without_its_secret_never_repeats_or_blocks_the_others_pages(
    order: str, lip_home: Path, stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIP_ALERT_NOTIFIERS", order)
    monkeypatch.setenv("LIP_SECRET_ALERTS_WEBHOOK_URL", stub.url + "/hook")
    monkeypatch.delenv("LIP_SECRET_ALERTS_SLACK_WEBHOOK_URL", raising=False)  # never set
    d = defs()
    instance = dg.DagsterInstance.ephemeral()
    hour = time.strftime("%Y-%m-%d-%H:00", time.gmtime())
    instance.report_runless_asset_event(
        dg.AssetMaterialization("okta", partition=hour, metadata={"events": 5})
    )
    t0 = time.time() + 2 * 3600  # two hours later: okta's freshness fails
    monkeypatch.setattr(alert_sensor, "clock", lambda: t0)

    cursor = None
    for _ in range(3):  # every tick succeeds and stores its cursor
        cursor = tick(d, instance, cursor).cursor
    assert opened(stub) == ["freshness-fail|okta"]  # once, not once per tick
    pending = AlertState.loads(cursor).outbox
    assert [(p.notifier, p.event, p.attempts) for p in pending] == [("slack", "open", 1)]
    assert "alerts/slack-webhook-url" in pending[0].last_error  # names the missing secret

    # the secret is added: after its backoff the Slack page goes out, once
    monkeypatch.setenv("LIP_SECRET_ALERTS_SLACK_WEBHOOK_URL", stub.url + "/slack")
    monkeypatch.setattr(alert_sensor, "clock", lambda: t0 + 600)
    for _ in range(2):
        cursor = tick(d, instance, cursor).cursor
    assert sorted(p for p, _ in stub.received) == ["/hook", "/slack"]
    assert next(b for p, b in stub.received if p == "/slack")["text"].startswith(
        ":rotating_light: LIP open: okta: nothing new has landed"
    )
    assert AlertState.loads(cursor).outbox == []


def test_a_failing_secret_store_or_a_malformed_url_is_a_notifier_error() -> None:
    def throttled() -> Secret:
        raise StateError("reading secret 'alerts/webhook-url' from AWS Secrets Manager: Throttling")

    d = Delivery("open", "run|okta", "run", "okta", "fail", "okta: the latest run failed", 0, "x")
    with pytest.raises(NotifierError, match="alerts/webhook-url"):
        WebhookNotifier(throttled).send(d)
    url = "http://[::1/services/T000/B000/s3cr3t-t0ken"  # httpx raises InvalidURL
    with pytest.raises(NotifierError) as err:
        SlackNotifier(lambda: Secret(url)).send(d)
    assert "s3cr3t" not in str(err.value) and "InvalidURL" in str(err.value)


class Broken(Notifier):
    """A notifier with a bug: it raises something no notifier should."""

    name = "broken"

    def send(self, d: Delivery) -> None:
        raise RuntimeError("https://hooks.example/s3cr3t-t0ken rejected")


def test_an_unexpected_error_in_one_notifier_is_logged_by_name_and_retried(
    stub: Stub, caplog: pytest.LogCaptureFixture
) -> None:
    webhook = WebhookNotifier(lambda: Secret(stub.url + "/hook"))
    state = AlertState()
    advance(state, problems_of(failing_run(), 0), ["broken", "webhook"], 0)
    with caplog.at_level(logging.WARNING, logger=alert_sensor.__name__):
        assert deliver(state, [Broken(), webhook], now=0) == (1, 1)
    assert [p for p, _ in stub.received] == ["/hook"]  # the one after it still sent
    (pending,) = state.outbox
    assert (pending.notifier, pending.attempts, pending.next_at) == ("broken", 1, 120.0)
    assert "RuntimeError" in pending.last_error and "s3cr3t" not in pending.last_error
    assert "broken notification run|okta (open) failed" in caplog.text
    assert "s3cr3t" not in caplog.text
    assert "s3cr3t" not in state.dumps()  # nor in the cursor
    # it keeps its place in the retry schedule and is dropped after the last attempt
    for attempt in range(2, 13):
        deliver(state, [Broken(), webhook], now=10_000.0 * attempt)
    assert state.outbox == [] and state.dropped == 1
    assert [p for p, _ in stub.received] == ["/hook"]  # never re-sent to the others
