"""Where alerts go: a generic JSON webhook, a Slack incoming webhook, a GitHub issue.

Each notifier gets its URL or token from the secret store by name, sends with a
timeout, and raises ``NotifierError`` on failure (the sensor retries later): a secret
that cannot be read (missing, or the secret store failing) is a failure of that
notifier like a refused POST, so it never reaches the sensor as anything else. A
notifier never includes a secret in its message: a malformed URL is reported by its
error type only, since httpx quotes the URL in the error text.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import httpx

from lip_dagster.alerts.incidents import CLOSED_UNDECLARED, Delivery
from lip_dagster.errors import LipError
from lip_dagster.secrets import Secret

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# The GitHub client's own retries run inside the alert sensor's tick, which Dagster
# cuts off at 60 s: one quick retry, and a rate limit asking for a longer wait fails the
# delivery at once. The sensor's backoff (2 min, then 4, ...) is the wait.
GITHUB_ATTEMPTS = 2
GITHUB_MAX_WAIT = 5.0


class NotifierError(LipError):
    """A notification could not be delivered (it will be retried)."""


class Notifier(ABC):
    name: str

    @abstractmethod
    def send(self, d: Delivery) -> None: ...


def _read_secret(fetch: Callable[[], Secret], what: str) -> Secret:
    """The notifier's URL or token; any ``LipError`` of the store (``SecretNotFound``,
    a throttled or unreachable Secrets Manager as ``StateError``, an unreadable
    secrets file as ``ConfigError``) becomes this notifier's ``NotifierError``. Store
    errors name the secret, never its value."""
    try:
        return fetch()
    except LipError as exc:
        raise NotifierError(f"{what}: cannot read its secret: {exc}") from None


def _post(url: Callable[[], Secret], payload: dict[str, object], what: str) -> None:
    secret = _read_secret(url, what)
    try:
        resp = httpx.post(secret.reveal(), json=payload, timeout=TIMEOUT)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        # InvalidURL is not an HTTPError; neither message is kept (both may quote the URL)
        raise NotifierError(f"{what}: {type(exc).__name__}") from None
    if resp.status_code >= 300:
        raise NotifierError(f"{what}: HTTP {resp.status_code}")


class WebhookNotifier(Notifier):
    """POSTs the incident as JSON to any endpoint (PagerDuty/Opsgenie bridges, SOAR)."""

    name = "webhook"

    def __init__(self, url: Callable[[], Secret]) -> None:
        self._url = url

    def send(self, d: Delivery) -> None:
        _post(
            self._url,
            {
                "event": d.event,
                "incident": d.key,
                "kind": d.kind,
                "source": d.source,
                "severity": d.severity,
                "message": d.message,
                "at": d.at,
            },
            "webhook notifier",
        )


def slack_escape(text: str) -> str:
    """``text`` shown as written: Slack reads ``<...>`` in a message as a link or a
    mention and ``&`` as an entity, and a page's text quotes vendor error bodies and
    run errors, so a vendor answering ``<!channel>`` would notify the whole channel
    (Slack's "Escaping text": replace exactly these three characters)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackNotifier(Notifier):
    name = "slack"

    def __init__(self, url: Callable[[], Secret]) -> None:
        self._url = url

    def send(self, d: Delivery) -> None:
        if d.message.startswith(CLOSED_UNDECLARED):  # its source was removed
            text = f":heavy_minus_sign: LIP {d.message}"
        else:
            icon = (
                ":white_check_mark:"
                if d.event == "resolved"
                else (":rotating_light:" if d.severity == "fail" else ":warning:")
            )
            text = f"{icon} LIP {d.event}: {d.message}"
        _post(self._url, {"text": slack_escape(text)}, "slack notifier")


class GitHubIssueNotifier(Notifier):
    """One issue per incident (found again by a hidden marker, never duplicated):
    opened or reopened on ``open``, commented and closed on ``resolved``."""

    name = "github"

    def __init__(self, repo: str, token: Callable[[], Secret], api_url: str | None = None) -> None:
        self.repo = repo
        self._token = token
        self.api_url = api_url

    def send(self, d: Delivery) -> None:
        from lip_dagster.github import GitHubClient, marker_comment

        kwargs = {"api_url": self.api_url} if self.api_url else {}
        marker = marker_comment(f"lip-alert:{d.key}")
        token = _read_secret(self._token, "github notifier")
        try:
            with GitHubClient(
                self.repo,
                token,
                max_attempts=GITHUB_ATTEMPTS,
                max_wait=GITHUB_MAX_WAIT,
                **kwargs,  # type: ignore[arg-type]
            ) as gh:
                if d.event == "open":
                    gh.report(
                        marker,
                        f"LIP alert: {d.source} {d.kind}",
                        f"{d.message}\n\nOpened by LIP's alert sensor.",
                        labels=("lip-alert",),
                        reopen_comment=f"Open again: {d.message}",
                    )
                else:
                    gh.resolve(marker, d.message, labels=("lip-alert",))
        except LipError as exc:
            raise NotifierError(f"github notifier: {exc}") from None
