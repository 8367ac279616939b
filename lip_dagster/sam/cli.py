"""``lip provision`` and ``lip check``: the SAM contract from the command line.

lip provision [--source S] [--plan] [--retention-days N]
    create each source's isolated AWS stack; never deletes or replaces; reports
    drift it cannot fix safely, with the manual step (exit 1 when there is any)
lip check [--source S] [--partition KEY] [--open-issues OWNER/REPO]
    run every SAM check after a deployment, one row per source and check; exit 1
    if any fails; optionally keep one GitHub issue per failing source
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from lip_dagster.errors import LakeReadError, LipError
from lip_dagster.github import DEFAULT_API_URL, GitHubClient
from lip_dagster.lake.backends import LakeBackend
from lip_dagster.lake.layout import hour_of, partition_prefix, partition_start, source_prefix
from lip_dagster.resources import Backend, backend_from_env
from lip_dagster.s3stream.producer_lake import ProducerLake
from lip_dagster.sam.checks import CheckOutcome, run_checks
from lip_dagster.sam.issues import sync_issues
from lip_dagster.sam.provision import (
    DEFAULT_RETENTION_DAYS,
    ProvisionError,
    ProvisionReport,
    provision,
)
from lip_dagster.sam.sources import DeclaredSource, declared_sources, select
from lip_dagster.sam.target import aws_target

__all__ = ["cmd_check", "cmd_provision", "register"]

DEFAULT_TOKEN_SECRET = "github/token"  # noqa: S105 - a secret name, not a value
_LOOKBACK_HOURS = 24


def _days(text: str) -> int:
    """``--retention-days``: a whole number of days, at least 1. Refused as the command
    is parsed, whatever the backend (the embedded one has nothing to provision, and
    would otherwise accept a retention that expires the lake at once)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days of at least 1")
    return value


def register(subparsers: Any) -> None:
    """Add ``provision`` and ``check`` to the ``lip`` command line."""
    p = subparsers.add_parser(
        "provision",
        help="create each source's AWS stack for the SAM (never deletes)",
        description="Create what is missing in each source's stack: KMS key, bucket, "
        "policies, notifications, state tables, queues, secret placeholders.",
    )
    p.add_argument("--source", action="append", metavar="S", help="only this source (repeatable)")
    p.add_argument("--plan", action="store_true", help="print what would change; change nothing")
    p.add_argument(
        "--retention-days",
        type=_days,
        default=DEFAULT_RETENTION_DAYS,
        metavar="N",
        help=f"lake objects expire after N days (default {DEFAULT_RETENTION_DAYS})",
    )
    p.set_defaults(fn=cmd_provision)

    p = subparsers.add_parser(
        "check",
        help="verify every SAM requirement after a deployment (exit 1 on any failure)",
        description="Run the SAM checks outside Dagster: one row per source and check.",
    )
    p.add_argument("--source", action="append", metavar="S", help="only this source (repeatable)")
    p.add_argument(
        "--partition",
        metavar="KEY",
        help="hour partition YYYY-MM-DD-HH:00 for the content checks (default: the latest "
        f"hour holding objects in the last {_LOOKBACK_HOURS} hours)",
    )
    p.add_argument(
        "--open-issues",
        metavar="OWNER/REPO",
        help="open or update one GitHub issue per failing source; close it when it passes",
    )
    p.add_argument(
        "--github-api-url",
        default=DEFAULT_API_URL,
        metavar="URL",
        help=f"GitHub API base URL (default {DEFAULT_API_URL}; GitHub Enterprise Server: "
        "https://HOST/api/v3)",
    )
    p.add_argument(
        "--token-secret",
        default=DEFAULT_TOKEN_SECRET,
        metavar="NAME",
        help=f"secret holding the GitHub token (default {DEFAULT_TOKEN_SECRET})",
    )
    p.set_defaults(fn=cmd_check)


def _sources(names: Sequence[str] | None) -> list[DeclaredSource]:
    return select(declared_sources(), names)


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    ]


# ------------------------------------------------------------------------ provision

_VERB = {
    False: {"create": "create", "update": "update", "ok": "ok", "manual": "MANUAL"},
    True: {"create": "would create", "update": "would update", "ok": "ok", "manual": "MANUAL"},
}


def print_provision(
    report: ProvisionReport, sources: Sequence[DeclaredSource], stopped_at: str | None = None
) -> None:
    """The report's table, a summary line per source and the manual steps.
    ``stopped_at``: the source an error stopped provisioning at; its line says it
    stopped, and the sources after it say they were not provisioned, never that
    they are as expected."""
    if report.plan:
        print("plan: nothing below has been changed")
    rows = [("SOURCE", "ACTION", "RESOURCE", "NAME", "DETAIL")]
    rows += [
        (c.source, _VERB[report.plan][c.action], c.kind, c.name, c.detail) for c in report.changes
    ]
    for line in _table(rows):
        print(line.rstrip())
    names = [src.name for src in sources]
    after = names[names.index(stopped_at) + 1 :] if stopped_at in names else []
    for src in sources:
        created, updated = report.count("create", src.name), report.count("update", src.name)
        ok, manual = report.count("ok", src.name), report.count("manual", src.name)
        verb = "would be " if report.plan else ""
        if src.name in after:
            print(f"{src.name}: not provisioned (stopped before it)")
            continue
        if src.name == stopped_at:
            print(
                f"{src.name}: stopped by the error below after {created} {verb}created, "
                f"{updated} {verb}updated, {ok} as expected, {manual} need a manual step"
            )
            continue
        if created == updated == manual == 0:
            print(f"{src.name}: nothing to change ({ok} resources as expected)")
            continue
        print(
            f"{src.name}: {created} {verb}created, {updated} {verb}updated, {ok} as expected, "
            f"{manual} need a manual step"
        )
    if report.drift:
        print("\nmanual steps (LIP will not change these itself):")
        for c in report.drift:
            print(f"  {c.source}: {c.kind} {c.name}: {c.detail}\n    -> {c.manual}")


def cmd_provision(args: argparse.Namespace) -> int:
    backend = backend_from_env()
    sources = _sources(args.source)  # a misspelt --source is refused on every backend
    if backend.settings.aws is None:
        print(
            "nothing to provision: the embedded backend keeps everything under "
            f"{backend.settings.home}, created on first use (set LIP_BACKEND=aws)"
        )
        return 0
    try:
        report = provision(backend, sources, plan=args.plan, retention_days=args.retention_days)
    except ProvisionError as err:
        print_provision(err.report, sources, err.source)  # what was done before it
        raise
    print_provision(report, sources)
    return 1 if report.drift else 0


# ---------------------------------------------------------------------------- check


def latest_partition(lake: LakeBackend, source: str, now: datetime) -> str:
    """The newest hour holding objects in the last day, else the current hour."""
    for back in range(_LOOKBACK_HOURS):
        pk = hour_of(now - timedelta(hours=back))
        try:
            if next(iter(lake.list_keys(source, partition_prefix(source, pk))), None):
                return pk
        except (LakeReadError, OSError):
            break  # the checks report what is unreadable
    return hour_of(now)


def print_checks(results: dict[str, list[CheckOutcome]], partitions: dict[str, str]) -> None:
    rows = [("SOURCE", "CHECK", "STATUS", "DETAIL")]
    fixes: dict[int, str] = {}
    for source, outcomes in results.items():
        for o in outcomes:
            rows.append((source, o.name, o.status, o.summary))
            if o.status == "FAIL" and o.fix:
                fixes[len(rows) - 1] = o.fix
    for n, line in enumerate(_table(rows)):
        print(line.rstrip())
        if n in fixes:
            print(f"    fix: {fixes[n]}")
    for source, outcomes in results.items():
        failing = [o for o in outcomes if o.status == "FAIL"]
        applied = [o for o in outcomes if o.applies]
        verdict = (
            f"{len(failing)} of {len(applied)} checks fail"
            if failing
            else f"all {len(applied)} checks pass"
        )
        print(f"{source}: {verdict} (content checked in partition {partitions[source]})")


def lake_location(backend: Backend, source: str) -> str:
    """Where a source's lake objects are, for people reading an issue."""
    target = aws_target(backend, source)
    if target is None:
        return f"{backend.lake_location}/{source_prefix(source)}"
    return f"s3://{target.bucket}/{target.source_lake_prefix}"


def run_all(
    backend: Backend, sources: Sequence[DeclaredSource], partition: str | None
) -> tuple[dict[str, list[CheckOutcome]], dict[str, str]]:
    now = datetime.now(UTC)
    results: dict[str, list[CheckOutcome]] = {}
    partitions: dict[str, str] = {}
    for src in sources:
        # a lake-layout producer's objects are checked where it writes them
        where = src.producer
        lake = ProducerLake(partial(backend.object_source, where)) if where else None
        pk = partition or latest_partition(lake or backend.lake, src.name, now)
        partitions[src.name] = pk
        results[src.name] = run_checks(backend, src.name, src.pattern, pk, lake)
    return results, partitions


def cmd_check(args: argparse.Namespace) -> int:
    if args.partition:
        try:
            partition_start(args.partition)
        except ValueError as err:
            raise LipError(str(err)) from None
    backend = backend_from_env()
    sources = _sources(args.source)
    results, partitions = run_all(backend, sources, args.partition)
    print_checks(results, partitions)
    if args.open_issues:
        token = backend.secrets.get(args.token_secret)
        with GitHubClient(args.open_issues, token, api_url=args.github_api_url) as gh:
            where = {src.name: lake_location(backend, src.name) for src in sources}
            for item in sync_issues(gh, results, where):
                issue = item.change.issue
                if item.change.action == "none":
                    continue
                link = f"#{issue.number} {issue.html_url}" if issue else ""
                print(f"{item.source}: issue {item.change.action} {link}".rstrip())
    return 1 if any(o.status == "FAIL" for rows in results.values() for o in rows) else 0
