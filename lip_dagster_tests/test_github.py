"""The GitHub issue client against a local fake of the REST API: one issue per
incident across runs, documented headers, bounded retries that never duplicate a
created issue, and a token that never leaks."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from lip_dagster.errors import ConfigError
from lip_dagster.github import GitHubClient, GitHubError, marker_comment
from lip_dagster.secrets import Secret
from lip_dagster_tests.sam.github_fake import FakeGitHub, Fault

TOKEN = "ghp_fakeTokenValue0123456789abcdefABCDEF"
MARKER = marker_comment("lip:test incident=1")


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    server = FakeGitHub(TOKEN).start()
    yield server
    server.stop()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def client(fake: FakeGitHub, sleeps: Sleeps, **kwargs: object) -> GitHubClient:
    return GitHubClient(
        fake.repo,
        Secret(TOKEN),
        api_url=fake.url,
        sleep=sleeps,
        **kwargs,  # type: ignore[arg-type]
    )


def test_report_opens_one_issue_with_the_marker_labels_and_documented_headers(
    fake: FakeGitHub, sleeps: Sleeps
) -> None:
    with client(fake, sleeps) as gh:
        change = gh.report(MARKER, "Source okta failing", "what is wrong", ["lip"])
    assert change.action == "opened"
    assert change.issue is not None and change.issue.number == 1
    assert change.issue.html_url == f"https://github.com/{fake.repo}/issues/1"
    issue = fake.issues[1]
    assert MARKER in issue["body"] and "what is wrong" in issue["body"]
    assert [lb["name"] for lb in issue["labels"]] == ["lip"]
    post = fake.calls("POST", r"/issues$")[0]
    assert post.authorization == f"Bearer {TOKEN}"


def test_later_reports_update_the_same_issue_and_never_open_a_second(
    fake: FakeGitHub, sleeps: Sleeps
) -> None:
    with client(fake, sleeps) as gh:
        assert gh.report(MARKER, "t", "first", ["lip"]).action == "opened"
        assert gh.report(MARKER, "t", "first", ["lip"]).action == "unchanged"
        assert gh.report(MARKER, "t", "second", ["lip"]).action == "updated"
    assert fake.open_issue_count() == 1
    assert fake.issues[1]["body"].endswith("second")
    assert len(fake.calls("PATCH", r"/issues/1$")) == 1  # the unchanged run wrote nothing


def test_resolve_comments_and_closes_once_then_a_new_failure_reopens_it(
    fake: FakeGitHub, sleeps: Sleeps
) -> None:
    with client(fake, sleeps) as gh:
        gh.report(MARKER, "t", "broken", ["lip"])
        assert gh.resolve(MARKER, "passes again", ["lip"]).action == "resolved"
        assert gh.resolve(MARKER, "passes again", ["lip"]).action == "none"
        assert fake.issues[1]["state"] == "closed"
        assert fake.issues[1]["state_reason"] == "completed"
        change = gh.report(MARKER, "t", "broken again", ["lip"], reopen_comment="failing again")
    assert change.action == "reopened"
    assert fake.issues[1]["state"] == "open"
    assert [c["body"] for c in fake.comments[1]] == ["passes again", "failing again"]
    assert fake.open_issue_count() == 1


def test_resolve_without_an_issue_does_nothing(fake: FakeGitHub, sleeps: Sleeps) -> None:
    with client(fake, sleeps) as gh:
        assert gh.resolve(MARKER, "fine", ["lip"]).action == "none"
    assert fake.calls("POST", r".") == []


def test_find_pages_past_pull_requests_and_other_issues(fake: FakeGitHub, sleeps: Sleeps) -> None:
    with client(fake, sleeps) as gh:
        gh.report(MARKER, "ours", "oldest issue", ["lip"])
        fake.add_pull_request()
        for n in range(120):
            gh.open_issue(f"other {n}", f"unrelated {n}", ["lip"])
        found = gh.find_issue(MARKER, ["lip"])
    assert found is not None and found.number == 1
    pages = [int(r.query["page"]) for r in fake.calls("GET", r"/issues$")]
    assert pages[-2:] == [1, 2]


def test_an_issue_whose_labels_were_dropped_is_still_found(
    fake: FakeGitHub, sleeps: Sleeps
) -> None:
    """Tokens without push access create issues with their labels silently dropped."""
    with client(fake, sleeps) as gh:
        gh.open_issue("ours", f"{MARKER}\nbroken")  # no labels
        change = gh.report(MARKER, "ours", "still broken", ["lip"])
    assert change.action == "updated"
    assert fake.open_issue_count() == 1


def test_reads_are_retried_on_server_errors_with_backoff(fake: FakeGitHub, sleeps: Sleeps) -> None:
    fake.add_fault(Fault("GET", "/issues", status=502, fixture="error_server.json", times=2))
    with client(fake, sleeps) as gh:
        assert gh.find_issue(MARKER) is None
    assert len(fake.calls("GET", r"/issues$")) == 3
    assert len(sleeps) == 2 and all(0 < s <= 2 for s in sleeps)


def test_a_secondary_rate_limit_waits_as_github_asks(fake: FakeGitHub, sleeps: Sleeps) -> None:
    fake.add_fault(
        Fault(
            "POST",
            "/issues",
            status=403,
            fixture="error_secondary_rate_limit.json",
            headers={"retry-after": "3"},
        )
    )
    with client(fake, sleeps) as gh:
        assert gh.report(MARKER, "t", "b").action == "opened"
    assert len(sleeps) == 1 and 3 <= sleeps[0] < 3.6
    assert fake.open_issue_count() == 1


def test_a_rate_limit_longer_than_the_wait_limit_fails_at_once(
    fake: FakeGitHub, sleeps: Sleeps
) -> None:
    fake.add_fault(
        Fault(
            "GET",
            "/issues",
            status=403,
            fixture="error_secondary_rate_limit.json",
            headers={"x-ratelimit-remaining": "0", "retry-after": "3600"},
        )
    )
    with client(fake, sleeps) as gh, pytest.raises(GitHubError) as caught:
        gh.find_issue(MARKER)
    assert caught.value.status == 403 and "3600" in str(caught.value)
    assert sleeps == []


def test_retries_are_bounded(fake: FakeGitHub, sleeps: Sleeps) -> None:
    fake.add_fault(Fault("GET", "/issues", status=503, fixture="error_server.json", times=99))
    with client(fake, sleeps, max_attempts=3) as gh, pytest.raises(GitHubError) as caught:
        gh.find_issue(MARKER)
    assert "gave up after 3 attempts" in str(caught.value)
    assert len(fake.calls("GET", r"/issues$")) == 3


def test_a_create_that_fails_on_the_server_is_not_repeated(
    fake: FakeGitHub, sleeps: Sleeps
) -> None:
    fake.add_fault(Fault("POST", "/issues", status=502, fixture="error_server.json"))
    with client(fake, sleeps) as gh:
        with pytest.raises(GitHubError):
            gh.report(MARKER, "t", "broken")
        assert len(fake.calls("POST", r"/issues$")) == 1
        assert gh.report(MARKER, "t", "broken").action == "opened"  # the next run
    assert fake.open_issue_count() == 1


def test_a_create_that_times_out_is_found_by_the_next_run_not_duplicated(
    fake: FakeGitHub, sleeps: Sleeps
) -> None:
    # GitHub acts on the request but answers after the client gave up.
    fake.add_fault(Fault("POST", "/issues", delay=1.0))
    with client(fake, sleeps, timeout=0.3) as gh:
        with pytest.raises(GitHubError, match="timed out"):
            gh.report(MARKER, "t", "broken")
        assert len(fake.calls("POST", r"/issues$")) == 1
        for _ in range(50):  # the fake finishes the slow request in the background
            if fake.issues:
                break
            time.sleep(0.05)
        assert fake.open_issue_count() == 1
        assert gh.report(MARKER, "t", "broken").action == "unchanged"
    assert fake.open_issue_count() == 1


def test_bad_credentials_are_a_clear_error_that_never_shows_the_token(
    fake: FakeGitHub, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.add_fault(Fault("GET", "/issues", status=502, fixture="error_server.json"))
    gh = GitHubClient(fake.repo, Secret("ghp_wrongTokenValue"), api_url=fake.url, sleep=sleeps)
    with gh, pytest.raises(GitHubError) as caught:
        gh.find_issue(MARKER)
    err = caught.value
    assert err.status == 401 and "Bad credentials" in str(err)
    for text in (str(err), repr(err), repr(gh), caplog.text):
        assert "ghp_wrongTokenValue" not in text


@pytest.mark.parametrize("repo", ["acme", "acme/security/extra", "acme/..", "a b/c", ""])
def test_a_malformed_repository_is_refused(repo: str) -> None:
    with pytest.raises(ConfigError, match="OWNER/REPO"):
        GitHubClient(repo, Secret(TOKEN))


def test_a_plain_string_token_is_refused() -> None:
    with pytest.raises(ConfigError, match="Secret"):
        GitHubClient("acme/security", TOKEN)  # type: ignore[arg-type]


def test_many_incidents_are_looked_up_in_one_scan(fake: FakeGitHub, sleeps: Sleeps) -> None:
    markers = [marker_comment(f"lip:test source={n}") for n in range(5)]
    with client(fake, sleeps) as gh:
        gh.open_issue("one", f"{markers[1]}\nbroken", ["lip"])
        gh.open_issue("three", f"{markers[3]}\nbroken")  # its labels were dropped
        before = len(fake.calls("GET", r"/issues$"))
        found = gh.find_issues(markers, ["lip"])
    assert {m: i.number for m, i in found.items()} == {markers[1]: 1, markers[3]: 2}
    assert len(fake.calls("GET", r"/issues$")) - before == 2  # labelled, then all


def test_a_source_whose_name_holds_a_double_dash_gets_its_own_issues(fake: FakeGitHub) -> None:
    """``okta--eu`` is a valid source name; its alerts and SAM-check issues must reach
    GitHub like any other source's, and never land on another source's issue."""
    from lip_dagster.alerts.incidents import Delivery
    from lip_dagster.alerts.notifiers import GitHubIssueNotifier
    from lip_dagster.sam.issues import issue_marker

    notifier = GitHubIssueNotifier(fake.repo, lambda: Secret(TOKEN), fake.url)
    for source in ("okta--eu", "okta-eu", "okta"):
        key = f"run|{source}"
        notifier.send(
            Delivery("open", key, "run", source, "fail", f"{source} broke", 0.0, "github")
        )
    assert fake.open_issue_count() == 3
    notifier.send(
        Delivery("resolved", "run|okta--eu", "run", "okta--eu", "fail", "fixed", 0.0, "github")
    )
    states = {i["body"].split("\n")[1]: i["state"] for i in fake.issues.values()}
    assert states == {
        "okta--eu broke": "closed",
        "okta-eu broke": "open",
        "okta broke": "open",
    }
    assert issue_marker("okta--eu") != issue_marker("okta-eu")
    # markers of every other key are as they always were: existing issues are found
    assert marker_comment("lip-alert:run|okta-eu") == "<!-- lip-alert:run|okta-eu -->"
