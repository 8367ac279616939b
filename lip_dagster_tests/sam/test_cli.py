"""``lip provision`` and ``lip check`` as an engineer runs them after a deployment:
their output, their exit codes, and one GitHub issue per failing source kept up to
date across runs (against a local fake of the GitHub API)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from lip_dagster.errors import LipError
from lip_dagster.sam import cli
from lip_dagster.sam.sources import DeclaredSource
from lip_dagster_tests.sam.conftest import (
    GITHUB_TOKEN,
    OKTA,
    PARTITION,
    Deployment,
    Stack,
    land,
)
from lip_dagster_tests.sam.github_fake import FakeGitHub

SLACK = DeclaredSource("slack", "polling")


@dataclass
class Ran:
    code: int
    out: str
    err: str


@pytest.fixture
def lip(capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """``lip`` with the two subcommands, handling errors as the main command does."""

    def run(*argv: str) -> Ran:
        parser = argparse.ArgumentParser(prog="lip")
        cli.register(parser.add_subparsers(dest="cmd", required=True))
        args = parser.parse_args(argv)
        try:
            code = int(args.fn(args))
        except LipError as exc:
            print(f"lip: error: {exc}", file=sys.stderr)
            code = 1
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run


@pytest.fixture
def two_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """Declared sources without loading every component (the lookup itself is
    covered with the real definitions in test_sources.py and below)."""
    monkeypatch.setattr(cli, "declared_sources", lambda: [OKTA, SLACK])


def test_provision_plan_then_run_then_run_again(
    deployment: Deployment, lip: Callable[..., Ran], two_sources: None
) -> None:
    plan = lip("provision", "--plan", "--source", "okta")
    assert plan.code == 0
    assert plan.out.startswith("plan: nothing below has been changed")
    assert "would create  kms key" in plan.out and "slack" not in plan.out
    assert "okta: 11 would be created" in plan.out

    first = lip("provision", "--source", "okta")
    assert first.code == 0 and "okta: 11 created, 0 updated" in first.out
    second = lip("provision", "--source", "okta")
    assert second.code == 0
    assert "okta: nothing to change (12 resources as expected)" in second.out


def test_provision_exits_1_and_prints_the_manual_step_on_drift(
    deployment: Deployment, lip: Callable[..., Ran], two_sources: None
) -> None:
    deployment.client("s3").create_bucket(Bucket=deployment.bucket("okta"))
    ran = lip("provision", "--source", "okta")
    assert ran.code == 1
    assert "manual steps (LIP will not change these itself):" in ran.out
    assert "put-bucket-lifecycle-configuration" in ran.out


def test_a_provisioning_failure_does_not_report_later_sources_as_fine(
    deployment: Deployment,
    lip: Callable[..., Ran],
    two_sources: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIP_S3_BUCKET", f"lip-{deployment.run}-{'x' * 60}-{{source}}")  # > 63
    ran = lip("provision", "--source", "okta", "--source", "slack")
    assert ran.code == 1 and "InvalidBucketName" in ran.err
    # okta stopped part way and slack was never looked at: neither is "as expected"
    assert "nothing to change" not in ran.out
    assert "okta: stopped by the error below after 2 created" in ran.out
    assert "slack: not provisioned (stopped before it)" in ran.out


def test_a_state_table_refused_part_way_still_shows_what_was_created(
    deployment: Deployment, lip: Callable[..., Ran], two_sources: None
) -> None:
    deployment.client("dynamodb").create_table(
        TableName=deployment.table("okta", "cursor"),
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ran = lip("provision", "--source", "okta")
    assert ran.code == 1 and "will not replace" in ran.err
    # the key and the bucket were created before the table stopped it: they stand
    assert "create  kms key" in ran.out and "create  s3 bucket" in ran.out
    assert "okta: stopped by the error below after 8 created" in ran.out


def test_check_prints_one_row_per_source_and_check_and_exits_0_when_green(
    stack: Stack, lip: Callable[..., Ran], two_sources: None
) -> None:
    ran = lip("check", "--source", "okta", "--partition", PARTITION)
    assert ran.code == 0, ran.out
    rows = [line for line in ran.out.splitlines() if line.startswith("okta ")]
    assert len(rows) == 14
    assert all(" pass " in r or " n/a " in r for r in rows)
    assert f"okta: all 13 checks pass (content checked in partition {PARTITION})" in ran.out


def test_check_exits_1_and_shows_the_fix_when_a_check_fails(
    stack: Stack, lip: Callable[..., Ran], two_sources: None
) -> None:
    stack.deployment.client("kms").disable_key_rotation(KeyId=stack.deployment.key_id())
    ran = lip("check", "--source", "okta", "--partition", PARTITION)
    assert ran.code == 1
    failing = [line for line in ran.out.splitlines() if " FAIL " in line]
    assert len(failing) == 1 and "sam_kms_key_rotation" in failing[0]
    assert "    fix: aws kms enable-key-rotation" in ran.out
    assert "okta: 1 of 13 checks fail" in ran.out


def test_check_finds_the_latest_partition_with_objects_by_itself(
    deployment: Deployment, lip: Callable[..., Ran], two_sources: None
) -> None:
    from datetime import UTC, datetime

    from lip_dagster.lake.layout import hour_of
    from lip_dagster.sam.provision import provision
    from lip_dagster_tests.sam.conftest import OKTA_IDENTITY, okta_events

    backend = deployment.backend()
    provision(backend, [OKTA])
    now = datetime.now(UTC)
    writer = backend.writer()
    writer.write("okta", okta_events(3, now.replace(minute=0, second=1)), OKTA_IDENTITY, "polling")
    writer.close()
    ran = lip("check", "--source", "okta")
    assert ran.code == 0
    assert f"content checked in partition {hour_of(now)}" in ran.out
    assert "3 events" in ran.out


def test_check_refuses_an_unknown_source_and_a_bad_partition(
    lip: Callable[..., Ran], two_sources: None, lip_home: object
) -> None:
    ran = lip("check", "--source", "okat")
    assert ran.code == 1 and "no source named 'okat'; declared: okta, slack" in ran.err
    ran = lip("check", "--partition", "2026-03-01T10")
    assert ran.code == 1 and "YYYY-MM-DD-HH:00" in ran.err
    ran = lip("check", "--partition", "2026-02-30-10:00")  # no such day
    assert ran.code == 1 and "'2026-02-30-10:00'" in ran.err and "YYYY-MM-DD-HH:00" in ran.err


def test_issues_are_opened_updated_and_resolved_without_duplicates(
    stack: Stack,
    lip: Callable[..., Ran],
    two_sources: None,
    github: FakeGitHub,
) -> None:
    stack.deployment.client("secretsmanager").create_secret(
        Name=stack.deployment.secret("github/token"), SecretString=GITHUB_TOKEN
    )
    args = (
        "check",
        "--partition",
        PARTITION,
        "--open-issues",
        github.repo,
        "--github-api-url",
        github.url,
    )
    # slack was never provisioned: it fails; okta passes and gets no issue
    first = lip(*args)
    assert first.code == 1
    assert "slack: issue opened #1" in first.out and "okta: issue" not in first.out
    assert github.open_issue_count() == 1
    body = github.issues[1]["body"]
    assert "<!-- lip:sam-check source=slack -->" in body and "`sam_kms_key_state`" in body
    assert {lb["name"] for lb in github.issues[1]["labels"]} == {"lip", "lip-sam-check"}

    second = lip(*args)
    assert "slack: issue unchanged #1" in second.out
    assert github.open_issue_count() == 1

    # okta breaks as well: a second issue, for okta, and still one for slack
    stack.deployment.client("kms").disable_key_rotation(KeyId=stack.deployment.key_id())
    third = lip(*args)
    assert "okta: issue opened #2" in third.out and "slack: issue unchanged #1" in third.out
    assert "`sam_kms_key_rotation`" in github.issues[2]["body"]

    # okta is fixed: its issue gets one comment and is closed, once
    stack.deployment.client("kms").enable_key_rotation(KeyId=stack.deployment.key_id())
    fourth = lip(*args)
    assert "okta: issue resolved #2" in fourth.out
    assert github.issues[2]["state"] == "closed"
    assert len(github.comments[2]) == 1 and "passes again" in github.comments[2][0]["body"]
    fifth = lip(*args)
    assert "okta: issue" not in fifth.out and len(github.comments[2]) == 1
    assert github.open_issue_count() == 2  # two incidents, never a duplicate

    for ran in (first, second, third, fourth, fifth):
        assert GITHUB_TOKEN not in ran.out + ran.err
    assert all(r.authorization == f"Bearer {GITHUB_TOKEN}" for r in github.requests)


def test_open_issues_without_the_token_secret_is_a_clear_error(
    stack: Stack, lip: Callable[..., Ran], two_sources: None, github: FakeGitHub
) -> None:
    ran = lip(
        "check",
        "--source",
        "okta",
        "--partition",
        PARTITION,
        "--open-issues",
        github.repo,
        "--github-api-url",
        github.url,
    )
    assert ran.code == 1 and "github/token" in ran.err and "not found" in ran.err
    assert github.requests == []


def test_the_commands_use_the_declared_sources_of_the_real_definitions(
    deployment: Deployment, lip: Callable[..., Ran]
) -> None:
    ran = lip("provision", "--plan", "--source", "okta", "--source", "okta_hooks")
    assert ran.code == 0
    # okta_hooks is a webhook source: it gets a buffer and a dead-letter queue
    assert f"would create  sqs queue               {deployment.table('okta_hooks', 'dlq')}" in (
        ran.out
    )
    assert deployment.table("okta", "buffer") not in ran.out


def test_provision_on_the_embedded_backend_has_nothing_to_do(
    lip: Callable[..., Ran], lip_home: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIP_BACKEND", "embedded")
    ran = lip("provision")
    assert ran.code == 0 and "nothing to provision" in ran.out


def test_provision_on_the_embedded_backend_still_refuses_a_source_it_does_not_know(
    lip: Callable[..., Ran], lip_home: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo in ``--source`` must not read as "all set" on a workstation, then fail on AWS."""
    monkeypatch.setenv("LIP_BACKEND", "embedded")
    ran = lip("provision", "--plan", "--source", "otka")
    assert ran.code == 1
    assert "no source named 'otka'" in ran.err and "nothing to provision" not in ran.out


def test_check_on_the_embedded_backend_checks_the_local_lake(
    lip: Callable[..., Ran],
    lip_home: object,
    monkeypatch: pytest.MonkeyPatch,
    two_sources: None,
) -> None:
    monkeypatch.setenv("LIP_BACKEND", "embedded")
    from lip_dagster.resources import backend_from_env

    backend = backend_from_env()
    land(backend)
    ran = lip("check", "--source", "okta", "--partition", PARTITION)
    assert ran.code == 0
    rows = {
        line.split()[1]: line.split()[2]
        for line in ran.out.splitlines()
        if line.startswith("okta ")
    }
    assert rows["lake_content"] == "pass" and rows["sam_quarantine"] == "pass"
    assert rows["sam_kms_key_state"] == "n/a" and rows["sam_object_encryption"] == "n/a"
    hour = backend.settings.lake_dir / "source=okta/year=2026/month=03/day=01/hour=10"
    bad = hour / "20260301T100000Z_00000000-0000-5000-8000-000000000001.ndjson.gz"
    bad.write_bytes(b"not gzip")
    ran = lip("check", "--source", "okta", "--partition", PARTITION)
    assert ran.code == 1 and "not valid gzip" in ran.out


@pytest.mark.parametrize("backend", ["embedded", "aws"])
@pytest.mark.parametrize("days", ["0", "-30", "soon"])
def test_a_retention_of_no_days_is_refused_whatever_the_backend(
    backend: str,
    days: str,
    lip_home: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--retention-days 0` would expire the lake (S3 refuses it, and the embedded
    backend ignored it and said all was well): refused as the command is parsed."""
    from lip_dagster.cli import main

    monkeypatch.setenv("LIP_BACKEND", backend)
    with pytest.raises(SystemExit) as info:
        main(["provision", "--plan", "--retention-days", days])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"--retention-days: {days!r} is not a number of days of at least 1" in err
