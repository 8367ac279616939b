"""Incidents open once and resolve once; notifications are retried, never repeated."""

from __future__ import annotations

from lip_dagster.alerts.health import SourceHealth
from lip_dagster.alerts.incidents import AlertState, advance, problems_of
from lip_dagster.alerts.notifiers import SlackNotifier, WebhookNotifier
from lip_dagster.alerts.sensor import deliver
from lip_dagster.secrets import Secret
from lip_dagster.state.aws import SqsBuffer

from .conftest import Stub


def failing_run(source: str = "okta") -> SourceHealth:
    return SourceHealth(
        source,
        "polling",
        freshness="pass",
        last_landed_at=0.0,
        last_run_status="FAILURE",
        last_run_id="r1",
    )


def test_an_incident_notifies_once_however_many_ticks_see_it() -> None:
    state = AlertState()
    first = advance(state, problems_of(failing_run(), 10), ["webhook"], 10)
    assert [d.event for d in first] == ["open"]
    for t in range(11, 20):
        state = AlertState.loads(state.dumps())  # the cursor round trip of every tick
        assert advance(state, problems_of(failing_run(), t), ["webhook"], t) == []
    healthy = SourceHealth("okta", "polling", freshness="pass", last_run_status="SUCCESS")
    resolved = advance(state, problems_of(healthy, 30), ["webhook"], 30)
    assert [d.event for d in resolved] == ["resolved"]
    assert advance(state, problems_of(healthy, 31), ["webhook"], 31) == []


def test_freshness_warn_then_fail_are_separate_alerts() -> None:
    h = SourceHealth(
        "slack",
        "polling",
        freshness="warn",
        last_landed_at=0.0,
        fail_window_s=3600,
        warn_window_s=1800,
    )
    state = AlertState()
    assert len(advance(state, problems_of(h, 2000), ["slack"], 2000)) == 1
    h.freshness = "fail"
    queued = advance(state, problems_of(h, 4000), ["slack"], 4000)
    assert sorted(d.key for d in queued) == ["freshness-fail|slack", "freshness-warn|slack"]
    assert "nothing new has landed for 1 h 6 min" in next(
        d.message for d in queued if d.event == "open"
    )


def test_a_failing_notifier_is_retried_and_does_not_stop_the_others(stub: Stub) -> None:
    webhook = WebhookNotifier(lambda: Secret(stub.url + "/hook"))
    slack = SlackNotifier(lambda: Secret(stub.url + "/slack"))
    state = AlertState()
    advance(state, problems_of(failing_run(), 0), ["webhook", "slack"], 0)
    stub.fail_next = 1  # the first delivery (webhook) answers 500
    sent, failed = deliver(state, [webhook, slack], now=0)
    assert (sent, failed) == (1, 1)
    assert [p for p, _ in stub.received] == ["/slack"]
    assert len(state.outbox) == 1 and state.outbox[0].attempts == 1
    assert deliver(state, [webhook, slack], now=10) == (0, 0)  # backing off
    assert deliver(state, [webhook, slack], now=1000) == (1, 0)
    assert [p for p, _ in stub.received] == ["/slack", "/hook"]
    body = stub.received[1][1]
    assert body["event"] == "open" and body["source"] == "okta" and body["kind"] == "run"


def test_an_unreachable_notifier_never_raises_out_of_the_sensor() -> None:
    dead = WebhookNotifier(lambda: Secret("http://127.0.0.1:9/nothing-listens"))
    state = AlertState()
    advance(state, problems_of(failing_run(), 0), ["webhook"], 0)
    assert deliver(state, [dead], now=0) == (0, 1)
    assert "127.0.0.1:9" not in state.outbox[0].last_error  # the URL is a secret


def test_a_dead_letter_page_names_the_command_that_brings_them_back() -> None:
    """On-call reads the page, not the runbook: it says which command replays."""
    h = SourceHealth("jamf", "webhook", freshness="pass", last_landed_at=0.0, dlq_depth=3)
    (dlq,) = [p for p in problems_of(h, 10) if p.key == "dlq|jamf"]
    assert "3 message(s)" in dlq.message and "lip webhook replay jamf" in dlq.message
    assert "days" not in dlq.message  # the SQLite buffer keeps dead letters until replayed


def test_a_dead_letter_page_on_sqs_says_by_when_to_replay() -> None:
    """SQS deletes a dead letter 14 days after it was first buffered (its DLQ keeps
    the original enqueue time); the queue then reads empty and the page resolves,
    though nothing landed. The page says so while there is time."""
    h = SourceHealth(
        "jamf",
        "webhook",
        freshness="pass",
        last_landed_at=0.0,
        dlq_depth=3,
        buffer_retention_s=SqsBuffer.retention_seconds,
    )
    (dlq,) = [p for p in problems_of(h, 10) if p.key == "dlq|jamf"]
    assert "deletes a message 14 days after it was first buffered" in dlq.message
    assert "replay before then, or its events are lost" in dlq.message


def test_a_slack_page_shows_vendor_text_as_written_and_mentions_no_one(stub: Stub) -> None:
    """A run error quotes the vendor's answer; Slack reads ``<!channel>`` in a message
    as a mention of everyone in the channel and ``<url|text>`` as a disguised link."""
    error = 'HTTP 400: {"error": "<!channel> see <https://evil.example|okta.com> & retry"}'
    h = failing_run()
    h.last_run_error = error
    state = AlertState()
    advance(state, problems_of(h, 0), ["slack"], 0)
    slack = SlackNotifier(lambda: Secret(stub.url + "/slack"))
    assert deliver(state, [slack], now=0) == (1, 0)
    ((_, body),) = stub.received
    assert "<" not in body["text"] and ">" not in body["text"]
    assert "&lt;!channel&gt; see &lt;https://evil.example|okta.com&gt; &amp; retry" in body["text"]


def test_a_notifier_added_during_an_incident_is_told_it_is_open() -> None:
    """Slack configured in the middle of an outage: before, its first (and only)
    notice was "resolved" for an incident it never heard of; the ones already told
    are not told again."""
    state = AlertState()
    advance(state, problems_of(failing_run(), 0), ["webhook"], 0)
    state = AlertState.loads(state.dumps())
    late = advance(state, problems_of(failing_run(), 60), ["webhook", "slack"], 60)
    assert [(d.event, d.notifier) for d in late] == [("open", "slack")]
    assert advance(state, problems_of(failing_run(), 120), ["webhook", "slack"], 120) == []
    healthy = SourceHealth("okta", "polling", freshness="pass", last_run_status="SUCCESS")
    done = advance(state, problems_of(healthy, 180), ["webhook", "slack"], 180)
    assert sorted((d.event, d.notifier) for d in done) == [
        ("resolved", "slack"),
        ("resolved", "webhook"),
    ]


def test_incidents_stored_before_notifiers_were_tracked_are_not_announced_again() -> None:
    state = AlertState()
    advance(state, problems_of(failing_run(), 0), ["webhook"], 0)
    for info in state.open.values():
        del info["told"]  # a cursor written by an earlier version
    state = AlertState.loads(state.dumps())
    assert advance(state, problems_of(failing_run(), 60), ["webhook"], 60) == []


def test_a_notifier_added_as_an_incident_ends_hears_nothing_of_it() -> None:
    state = AlertState()
    advance(state, problems_of(failing_run(), 0), ["webhook"], 0)
    healthy = SourceHealth("okta", "polling", freshness="pass", last_run_status="SUCCESS")
    done = advance(state, problems_of(healthy, 60), ["webhook", "slack"], 60)
    assert [(d.event, d.notifier) for d in done] == [("resolved", "webhook")]
