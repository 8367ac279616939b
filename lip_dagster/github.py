"""A small GitHub REST client for incident issues: find one by a stable marker, open
it, update it, comment on it, close it.

An incident is one issue, whatever the number of runs that report it: the issue's
body carries a marker (an HTML comment people do not see), and every call first
looks for an issue, open or closed, whose body holds that marker. Used by
``lip check --open-issues`` and by the alert notifiers.

Every request has a timeout; retries are bounded (``max_attempts``) and honour
GitHub's ``Retry-After`` and ``x-ratelimit-reset``. A request that creates something
(an issue, a comment) is retried only when GitHub certainly did not act on it (it
answered 429 or a rate-limit 403, or the connection was never made), so a timeout
cannot produce a duplicate; the next run finds the issue by its marker instead.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from lip_dagster.errors import ConfigError, VendorError
from lip_dagster.polling.http import retry_after_seconds
from lip_dagster.secrets import Secret

__all__ = [
    "DEFAULT_API_URL",
    "GitHubClient",
    "GitHubError",
    "Issue",
    "IssueChange",
    "marker_comment",
]

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
_REPO_RE = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}\Z")
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_PAGE_SIZE = 100


class GitHubError(VendorError):
    """A GitHub API call failed (after its bounded retries)."""

    def __init__(self, endpoint: str, status: int | None, detail: str) -> None:
        super().__init__("github", endpoint, status, detail)


@dataclass(frozen=True)
class Issue:
    number: int
    state: str
    title: str
    body: str
    html_url: str

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Issue:
        return cls(
            number=int(raw["number"]),
            state=str(raw.get("state", "open")),
            title=str(raw.get("title") or ""),
            body=str(raw.get("body") or ""),
            html_url=str(raw.get("html_url") or ""),
        )


@dataclass(frozen=True)
class IssueChange:
    """What ``report``/``resolve`` did: opened, updated, reopened, unchanged,
    resolved (commented and closed), or none (nothing to resolve)."""

    action: Literal["opened", "updated", "reopened", "unchanged", "resolved", "none"]
    issue: Issue | None = None


def marker_comment(key: str) -> str:
    """The hidden marker that identifies one incident's issue (``key`` is stable,
    e.g. ``lip:sam-check source=okta``).

    ``--`` cannot stand inside an HTML comment, but a source name may hold it
    (``okta--eu``): such a key, or one with ``%``, is written with ``-`` and ``%``
    percent-encoded. Every other key is written as it is, so issues opened before
    are still found; an encoded key holds no ``-`` and a plain one no ``%``, so two
    keys never share a marker."""
    if "\n" in key:
        raise ValueError("an issue marker key may not contain a newline")
    if "--" in key or "%" in key:
        key = key.replace("%", "%25").replace("-", "%2D")
    return f"<!-- {key} -->"


def _rate_limited(resp: httpx.Response) -> bool:
    """GitHub answers a primary or secondary rate limit with 403 or 429."""
    if resp.status_code == 429:
        return True
    if resp.status_code != 403:
        return False
    if resp.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in resp.headers:
        return True
    return "rate limit" in resp.text[:500].lower()


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    text = str(message) if message else resp.text[:200]
    return f"{resp.reason_phrase or 'error'}: {text}".strip().rstrip(":")


class GitHubClient:
    """Issues of one repository, with a token from the secret store."""

    def __init__(
        self,
        repo: str,
        token: Secret,
        *,
        api_url: str = DEFAULT_API_URL,
        timeout: float = 10.0,
        max_attempts: int = 4,
        max_wait: float = 60.0,
        max_pages: int = 10,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not _REPO_RE.match(repo) or any(part in (".", "..") for part in repo.split("/")):
            raise ConfigError(f"a GitHub repository is OWNER/REPO, got {repo!r}")
        if not isinstance(token, Secret) or not token:
            raise ConfigError("a GitHub token is required (a Secret from the secret store)")
        if not api_url.startswith(("https://", "http://")):
            raise ConfigError(f"the GitHub API URL must be http(s): {api_url!r}")
        if max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1")
        self.repo = repo
        self.api_url = api_url.rstrip("/")
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self.max_pages = max_pages
        self._token = token
        self._sleep = sleep
        self._rng = random.Random()  # jitter, not crypto
        self._http = httpx.Client(
            base_url=self.api_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "lip/0.1 (+security log ingestion)",
            },
        )

    def __repr__(self) -> str:
        return f"GitHubClient(repo={self.repo!r}, api_url={self.api_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport

    def _request(
        self,
        method: str,
        path: str,
        *,
        creates: bool = False,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        """Send with bounded retries; ``creates`` marks a request that must not be
        repeated unless GitHub certainly did not act on it."""
        headers = {"Authorization": f"Bearer {self._token.reveal()}"}
        status: int | None = None
        detail = ""
        for attempt in range(self.max_attempts):
            wait = min(self.max_wait, 0.5 * 2**attempt) * self._rng.uniform(0.5, 1.0)
            try:
                resp = self._http.request(method, path, params=params, json=json, headers=headers)
            except httpx.ConnectError:
                status, detail = None, "could not connect"
            except httpx.TimeoutException as exc:
                status, detail = None, f"timed out ({type(exc).__name__})"
                if creates and not isinstance(exc, httpx.ConnectTimeout):
                    break  # it may have been created: the next run finds it by marker
            except httpx.TransportError as exc:
                status, detail = None, f"connection failed ({type(exc).__name__})"
                if creates:
                    break
            else:
                if resp.is_success:
                    return resp
                status, detail = resp.status_code, _detail(resp)
                limited = _rate_limited(resp)
                if not limited and (resp.status_code not in _RETRY_STATUSES or creates):
                    break
                asked = retry_after_seconds(resp, time.time())
                if asked is not None:
                    if asked > self.max_wait:
                        detail += f" (GitHub asks to wait {asked:.0f} s)"
                        break
                    wait = asked + self._rng.uniform(0, 0.5)
            if attempt == self.max_attempts - 1:
                detail += f" (gave up after {self.max_attempts} attempts)"
                break
            log.warning(
                "GitHub %s %s -> %s; retry %d/%d in %.1fs",
                method,
                path,
                status or detail,
                attempt + 1,
                self.max_attempts - 1,
                wait,
            )
            self._sleep(wait)
        raise GitHubError(f"{method} {path}", status, detail)

    # --------------------------------------------------------------------- issues

    def find_issues(self, markers: Collection[str], labels: Sequence[str] = ()) -> dict[str, Issue]:
        """For each marker, the most recently created issue (open or closed) whose
        body holds it, from one scan: among issues with ``labels`` first, then among
        all issues for the markers not found (labels are dropped silently for tokens
        without push access). Bounded by ``max_pages`` pages per scan."""
        found: dict[str, Issue] = {}
        searches = [{"labels": ",".join(labels)}] if labels else []
        searches.append({})
        for extra in searches:
            for page in range(1, self.max_pages + 1):
                if len(found) == len(markers):
                    return found
                params = {
                    "state": "all",
                    "sort": "created",
                    "direction": "desc",
                    "per_page": _PAGE_SIZE,
                    "page": page,
                    **extra,
                }
                resp = self._request("GET", f"/repos/{self.repo}/issues", params=params)
                items = resp.json()
                if not isinstance(items, list):
                    raise GitHubError(
                        f"GET /repos/{self.repo}/issues",
                        resp.status_code,
                        "expected a list of issues",
                    )
                for raw in items:
                    if "pull_request" in raw:
                        continue
                    body = str(raw.get("body") or "")
                    for marker in markers:
                        if marker not in found and marker in body:
                            found[marker] = Issue.from_api(raw)
                if len(items) < _PAGE_SIZE:
                    break
        return found

    def find_issue(self, marker: str, labels: Sequence[str] = ()) -> Issue | None:
        return self.find_issues([marker], labels).get(marker)

    def open_issue(self, title: str, body: str, labels: Sequence[str] = ()) -> Issue:
        payload: dict[str, Any] = {"title": title, "body": body}
        if labels:
            payload["labels"] = list(labels)
        resp = self._request("POST", f"/repos/{self.repo}/issues", json=payload, creates=True)
        return Issue.from_api(resp.json())

    def update_issue(
        self,
        number: int,
        *,
        title: str | None = None,
        body: str | None = None,
        state: Literal["open", "closed"] | None = None,
        state_reason: str | None = None,
    ) -> Issue:
        payload = {
            k: v
            for k, v in (
                ("title", title),
                ("body", body),
                ("state", state),
                ("state_reason", state_reason),
            )
            if v is not None
        }
        resp = self._request("PATCH", f"/repos/{self.repo}/issues/{number}", json=payload)
        return Issue.from_api(resp.json())

    def comment(self, number: int, body: str) -> None:
        self._request(
            "POST",
            f"/repos/{self.repo}/issues/{number}/comments",
            json={"body": body},
            creates=True,
        )

    # ------------------------------------------------------------------ incidents

    def report(
        self,
        marker: str,
        title: str,
        body: str,
        labels: Sequence[str] = (),
        reopen_comment: str | None = None,
        *,
        known: Issue | Literal["look"] | None = "look",
    ) -> IssueChange:
        """Make the incident's issue say ``body``: open it if none exists, reopen it
        (with ``reopen_comment``) if it was closed, update it if its text changed.
        ``known``: the issue as ``find_issues`` found it (None: there is none), to
        spare a lookup per incident."""
        if marker not in body:
            body = f"{marker}\n{body}"
        issue = self.find_issue(marker, labels) if known == "look" else known
        if issue is None:
            return IssueChange("opened", self.open_issue(title, body, labels))
        if issue.state != "open":
            updated = self.update_issue(issue.number, title=title, body=body, state="open")
            if reopen_comment:
                self.comment(issue.number, reopen_comment)
            return IssueChange("reopened", updated)
        if issue.body == body and issue.title == title:
            return IssueChange("unchanged", issue)
        return IssueChange("updated", self.update_issue(issue.number, title=title, body=body))

    def resolve(
        self,
        marker: str,
        comment: str,
        labels: Sequence[str] = (),
        close: bool = True,
        *,
        known: Issue | Literal["look"] | None = "look",
    ) -> IssueChange:
        """Comment on the incident's open issue (and close it); nothing when there
        is none or it is already closed, so a healthy source is not commented on
        at every run."""
        issue = self.find_issue(marker, labels) if known == "look" else known
        if issue is None or issue.state != "open":
            return IssueChange("none", issue)
        self.comment(issue.number, comment)
        if close:
            issue = self.update_issue(issue.number, state="closed", state_reason="completed")
        return IssueChange("resolved", issue)
