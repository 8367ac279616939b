"""One GitHub issue per failing source: opened on the first failing ``lip check``,
updated (never duplicated) by later ones, commented on and closed when the source
passes again."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lip_dagster.github import GitHubClient, IssueChange, marker_comment
from lip_dagster.sam.checks import CheckOutcome, spec

__all__ = ["LABELS", "SourceIssue", "issue_body", "issue_marker", "sync_issues"]

LABELS = ("lip", "lip-sam-check")


@dataclass(frozen=True)
class SourceIssue:
    source: str
    change: IssueChange


def issue_marker(source: str) -> str:
    return marker_comment(f"lip:sam-check source={source}")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def issue_body(source: str, outcomes: Sequence[CheckOutcome], where: str) -> str:
    """The issue text: every failing check, what is wrong and the fix. It depends
    only on the failures, so an unchanged incident leaves the issue untouched."""
    failing = [o for o in outcomes if o.applies and not o.passed]
    lines = [
        issue_marker(source),
        f"`lip check` finds {len(failing)} of the SAM's requirements broken for source "
        f"`{source}` ({where}). Until they are fixed the SAM may not see or read what "
        "lands.",
        "",
        "| check | what is wrong | fix |",
        "|---|---|---|",
    ]
    for o in failing:
        label = f"`{o.name}`" + (" (blocking)" if spec(o.name).blocking else "")
        lines.append(f"| {label} | {_cell(o.summary)} | {_cell(o.fix or '')} |")
    lines += [
        "",
        f"Re-check with `lip check --source {source}`. This issue is kept up to date by "
        "`lip check --open-issues`, and closed with a comment when the source passes.",
    ]
    return "\n".join(lines)


def sync_issues(
    client: GitHubClient,
    results: Mapping[str, Sequence[CheckOutcome]],
    where: Mapping[str, str],
) -> list[SourceIssue]:
    """Open, update or resolve each source's issue from its check results."""
    done: list[SourceIssue] = []
    markers = {source: issue_marker(source) for source in results}
    found = client.find_issues(list(markers.values()), LABELS)
    for source, outcomes in results.items():
        marker = markers[source]
        failing = [o.name for o in outcomes if o.applies and not o.passed]
        if failing:
            change = client.report(
                marker,
                f"LIP: SAM checks failing for source {source}",
                issue_body(source, outcomes, where.get(source, source)),
                LABELS,
                reopen_comment=f"Failing again: {', '.join(failing)}.",
                known=found.get(marker),
            )
        else:
            change = client.resolve(
                marker,
                f"Every SAM check passes again for source `{source}` "
                f"({where.get(source, source)}); closing.",
                LABELS,
                known=found.get(marker),
            )
        done.append(SourceIssue(source, change))
    return done
