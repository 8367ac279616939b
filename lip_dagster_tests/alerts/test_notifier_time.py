"""A slow, hung or rate-limited notifier endpoint must not make the alert sensor's tick
outlast Dagster's limit on a sensor evaluation (60 s by default): a tick cut off there
stores no cursor, so every notice the other notifiers sent in it goes out again on
the next tick, and incidents opened or resolved in it are never recorded."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from lip_dagster.alerts import notifiers as alert_notifiers
from lip_dagster.alerts import sensor as alert_sensor
from lip_dagster.alerts.incidents import AlertState, Delivery, advance, problems_of
from lip_dagster.alerts.notifiers import (
    GitHubIssueNotifier,
    Notifier,
    NotifierError,
    SlackNotifier,
    WebhookNotifier,
)
from lip_dagster.alerts.sensor import deliver
from lip_dagster.github import GitHubClient
from lip_dagster.secrets import Secret
from lip_dagster_tests.sam.github_fake import FakeGitHub, Fault

from .conftest import Stub
from .test_incidents import failing_run

SOURCES = [f"src{i}" for i in range(8)]  # eight sources fail at once (the lake is down)


class Hung:
    """An endpoint that accepts connections and never answers (a Slack outage seen
    through a proxy, a firewall dropping replies). The kernel completes each
    connection into the listen queue and never an answer comes; ``connections()``
    takes them out and counts them, at once and without a thread racing the test."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/services/T0/B0/s3cr3t"
        self.accepted: list[socket.socket] = []

    def connections(self) -> int:
        """Every connection made so far (closed ones included)."""
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return len(self.accepted)
            self.accepted.append(conn)

    def close(self) -> None:
        self.connections()
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def hung() -> Iterator[Hung]:
    h = Hung()
    yield h
    h.close()


def _incidents(notifiers: list[str]) -> AlertState:
    state = AlertState()
    problems = [p for s in SOURCES for p in problems_of(failing_run(s), 0)]
    advance(state, problems, notifiers, 0)
    return state


def test_a_hung_notifier_is_tried_once_a_tick_and_the_others_page_once(
    stub: Stub, hung: Hung, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alert_notifiers, "TIMEOUT", httpx.Timeout(0.5, connect=0.5))
    webhook = WebhookNotifier(lambda: Secret(stub.url + "/hook"))
    slack = SlackNotifier(lambda: Secret(hung.url))
    slack_took: list[float] = []
    send = slack.send

    def timed(d: Delivery) -> None:
        started = time.monotonic()
        try:
            send(d)
        finally:
            slack_took.append(time.monotonic() - started)

    monkeypatch.setattr(slack, "send", timed)
    state = _incidents(["webhook", "slack"])

    sent, failed = deliver(state, [webhook, slack], now=0)

    # every webhook page went out; Slack was given one timeout, not one per incident
    assert (sent, failed) == (len(SOURCES), 1)
    assert hung.connections() == 1 and len(slack_took) == 1
    # the notifier's timeout ended the wait (httpx's own default would be 5 s);
    # bounded, not timed: the other notifier's sends are not in it
    assert slack_took[0] < 4.0
    pending = [d for d in state.outbox if d.notifier == "slack"]
    assert len(pending) == len(SOURCES)
    assert sorted(d.attempts for d in pending) == [0] * (len(SOURCES) - 1) + [1]
    assert "s3cr3t" not in state.dumps()

    # Slack is back: each of its pages goes out once, nothing is repeated elsewhere
    slack = SlackNotifier(lambda: Secret(stub.url + "/slack"))
    for now in (60.0, 180.0):
        deliver(state, [webhook, slack], now=now)
    paths = [p for p, _ in stub.received]
    assert paths.count("/hook") == len(SOURCES)
    assert paths.count("/slack") == len(SOURCES)
    assert state.outbox == []


class Slow(Notifier):
    """A notifier that answers, but takes ``seconds`` of the tick for each notice."""

    name = "slow"

    def __init__(self, clock: list[float], seconds: float) -> None:
        self.clock = clock
        self.seconds = seconds
        self.sent: list[str] = []

    def send(self, d: Delivery) -> None:
        self.clock[0] += self.seconds
        self.sent.append(d.key)


def test_a_slow_notifier_leaves_what_does_not_fit_a_tick_for_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(alert_sensor, "monotonic", lambda: clock[0])
    slow = Slow(clock, seconds=8.0)  # GitHub paging a large repository for each marker
    state = _incidents(["slow"])

    ticks = 0
    while state.outbox:
        ticks += 1
        assert ticks <= len(SOURCES)
        before = clock[0]
        sent, failed = deliver(state, [slow], now=float(ticks))
        assert sent >= 1 and failed == 0
        # well inside Dagster's 60 s for the whole evaluation, health reads included
        assert clock[0] - before <= 30.0
    assert sorted(slow.sent) == sorted(f"run|{s}" for s in SOURCES)  # each once
    assert ticks > 1


def test_the_github_notifier_does_not_sleep_out_a_rate_limit_inside_the_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = "ghp_fakeTokenValue0123456789abcdefABCDEF"
    fake = FakeGitHub(token).start()
    slept: list[float] = []
    real_init = GitHubClient.__init__

    def init(self: GitHubClient, *args: object, **kwargs: object) -> None:
        kwargs["sleep"] = slept.append
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(GitHubClient, "__init__", init)
    try:
        fake.add_fault(Fault("GET", "/issues", 429, headers={"Retry-After": "60"}, times=100))
        notifier = GitHubIssueNotifier(fake.repo, lambda: Secret(token), fake.url)
        d = Delivery("open", "run|okta", "run", "okta", "fail", "okta: the run failed", 0, "github")
        with pytest.raises(NotifierError, match="429") as err:
            notifier.send(d)
    finally:
        fake.stop()
    # the sensor's own backoff (2 min, then 4, ...) is the wait; not the tick's time
    assert sum(slept) <= 5.0
    assert "60" in str(err.value) and token not in str(err.value)
