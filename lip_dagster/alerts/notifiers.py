"""Where alerts go: a generic JSON webhook, a Slack incoming webhook, a GitHub issue.

Each notifier gets its URL or token from the secret store by name, sends with a
timeout, and raises ``NotifierError`` on failure (the sensor retries later); a notifier
never raises anything else and never includes a secret in its message.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import httpx

from lip_dagster.alerts.incidents import Delivery
from lip_dagster.errors import LipError
from lip_dagster.secrets import Secret

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class NotifierError(LipError):
    """A notification could not be delivered (it will be retried)."""


class Notifier(ABC):
    name: str

    @abstractmethod
    def send(self, d: Delivery) -> None: ...


def _post(url: Secret, payload: dict[str, object], what: str) -> None:
    try:
        resp = httpx.post(url.reveal(), json=payload, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
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
            self._url(),
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


class SlackNotifier(Notifier):
    name = "slack"

    def __init__(self, url: Callable[[], Secret]) -> None:
        self._url = url

    def send(self, d: Delivery) -> None:
        icon = (
            ":white_check_mark:"
            if d.event == "resolved"
            else (":rotating_light:" if d.severity == "fail" else ":warning:")
        )
        _post(self._url(), {"text": f"{icon} LIP {d.event}: {d.message}"}, "slack notifier")


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
        try:
            with GitHubClient(self.repo, self._token(), **kwargs) as gh:  # type: ignore[arg-type]
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
