"""`lip`: what the on-call engineer types."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lip_dagster.cli import main
from lip_dagster.simulator import VendorSimulator


def test_sources_lists_pattern_and_schedule(
    demo_world: VendorSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sources"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert {"okta", "onepassword", "slack", "google_workspace"} <= set(lines)
    assert "polling" in lines["okta"] and "*/5 * * * *" in lines["okta"]


def test_sources_shows_each_source_its_own_schedule_when_names_share_a_prefix(
    lip_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`okta` and `okta_eu` (the EU org): each row shows that source's schedule, not
    the other's because its job name starts with `okta_`."""
    import dagster as dg

    from lip_dagster import cli
    from lip_dagster.components.polling import PollingSource
    from lip_dagster.config import Settings
    from lip_dagster.resources import EmbeddedBackend

    def source(name: str, minutes: int) -> dg.Definitions:
        component = PollingSource(
            name=name, adapter="okta", base_url_env="LIP_OKTA_BASE_URL", poll_minutes=minutes
        )
        return component.build_defs(None)  # type: ignore[arg-type]

    lip = dg.Definitions(resources={"lip": EmbeddedBackend(Settings.from_env())})
    both = dg.Definitions.merge(source("okta_eu", 15), source("okta", 5), lip)
    monkeypatch.setattr(cli, "_defs", lambda: both)
    assert main(["sources"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "*/5 * * * *" in lines["okta"] and "*/15" not in lines["okta"]
    assert "*/15 * * * *" in lines["okta_eu"]


def test_run_prints_totals_and_backfill_is_idempotent(
    demo_world: VendorSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "slack"]) == 0
    out = capsys.readouterr().out
    n = len(demo_world.events("slack", "logs"))
    assert f"slack: {n} events landed, 0 duplicates dropped" in out
    assert "partitions written" in out
    first = demo_world.events("slack", "logs")[0]
    from datetime import UTC, datetime

    hour = datetime.fromtimestamp(first["date_create"], UTC).strftime("%Y-%m-%d-%H:00")
    assert main(["run", "slack", "--partition", hour]) == 0
    assert "slack: 0 events landed" in capsys.readouterr().out


def test_run_exits_non_zero_naming_the_failure(
    demo_world: VendorSimulator, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setenv("LIP_SECRET_ONEPASSWORD_TOKEN", "wrong")
    assert main(["run", "onepassword"]) == 1
    err = capsys.readouterr().err
    assert "lip: error: onepassword:" in err and "HTTP 401" in err and "wrong" not in err
    assert main(["run", "no_such_source"]) == 1
    assert "no source named 'no_such_source'" in capsys.readouterr().err


def demo_once(home: Path) -> subprocess.CompletedProcess[str]:
    """`lip demo --once` with its home at ``home``, as a user runs it."""
    env = {**os.environ, "LIP_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "lip_dagster.cli", "demo", "--once", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_demo_once_lands_every_demo_source(tmp_path: Path) -> None:
    proc = demo_once(tmp_path / "home")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    for source in (
        "okta",
        "onepassword",
        "slack",
        "google_workspace",  # polling
        "cloudtrail",
        "github_audit_stream",
        "cloudflare",  # vendor writes to S3
    ):
        assert f"  {source}" in proc.stdout
        objs = list((tmp_path / "home" / "lake" / f"source={source}").rglob("*.ndjson.gz"))
        assert objs and all(gzip.decompress(p.read_bytes()) for p in objs)


def test_demo_once_fails_when_a_check_of_what_it_landed_fails(tmp_path: Path) -> None:
    """An object the demo could not land turns a check red: `lip demo --once` says
    which check, like `lip run`, and does not exit 0 as if all had landed."""
    from lip_dagster.simulator.s3objects import write_object

    home = tmp_path / "home"
    bad = "2026/11/27/13/bad.json.gz"
    write_object(home / "landing" / "github_audit_stream", bad, b"not gzip")
    proc = demo_once(home)
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    assert "check quarantine_empty failed" in proc.stderr
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("  github_audit_stream ")]
    assert "1 check(s) failed" in line
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("  cloudtrail ")]
    assert "failed" not in line


def test_status_reads_state_only_and_reports_each_source(
    demo_world: VendorSimulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch
) -> None:
    import json

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    assert main(["run", "okta"]) == 0
    capsys.readouterr()
    demo_world.stop()  # the vendor is gone: status must still answer from state
    assert main(["status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    by = {s["source"]: s for s in data["sources"]}
    assert by["okta"]["freshness"] == "pass" and by["okta"]["last_run_status"] == "SUCCESS"
    assert by["okta"]["lag_seconds"] is not None and by["okta"]["newest_event"]
    assert by["slack"]["freshness"] == "unknown" and by["slack"]["last_landed_at"] is None
    import warnings

    import dagster

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["status"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["SOURCE", "PATTERN", "FRESH"]
    # Dagster's warnings about its own beta parameters are not printed above the table
    assert not [w for w in caught if issubclass(w.category, dagster.BetaWarning)]


@pytest.mark.parametrize(
    ("partition", "why"),
    [
        ("2026-03-01 10:00", "YYYY-MM-DD-HH:00"),  # a typo: a space for the dash
        ("2025-06-01-10:00", "2026-01-01-00:00"),  # before the source's start
    ],
)
def test_run_of_a_partition_the_source_does_not_have_says_so_without_a_traceback(
    lip_home: Path, capsys: pytest.CaptureFixture[str], partition: str, why: str
) -> None:
    assert main(["run", "slack", "--partition", partition]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"lip: error: slack: no hour partition {partition!r}")
    assert why in err and "Traceback" not in err


def test_a_failed_run_says_why_in_one_line_without_dagsters_traceback(
    demo_world: VendorSimulator, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setenv("LIP_SECRET_ONEPASSWORD_TOKEN", "wrong")
    assert main(["run", "onepassword"]) == 1
    err = capsys.readouterr().err
    said = err[err.index("lip: error: onepassword:") :]
    assert "HTTP 401" in said and "wrong" not in err
    # the step failure's stack trace, twice, and Dagster's event lines are not on
    # the terminal: the run's log in Dagster keeps them, `lip -v run` prints them
    assert "Stack Trace" not in err and "STEP_FAILURE" not in err
    assert main(["-v", "run", "onepassword"]) == 1
    assert "STEP_FAILURE" in capsys.readouterr().err


def test_run_still_prints_what_lip_warns_about(
    lip_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    from lip_dagster.s3stream.demo import populate_landing
    from lip_dagster.simulator.s3objects import write_object

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    populate_landing(lip_home, hours=1, events_per_hour=30, seed=3)
    bad = "2026/11/27/13/bad.json.gz"
    write_object(lip_home / "landing" / "github_audit_stream", bad, b"not gzip")
    # the run landed what it could, but the lake lacks the object: not "all well"
    assert main(["run", "github_audit_stream"]) == 1
    out, err = capsys.readouterr()
    # the object LIP put in quarantine is named, as it was before the run's log was
    # kept off the terminal, and so is the check it turned red
    assert bad in err and "quarantined" in err
    assert "check quarantine_empty failed" in err and "1 check(s) failed" in out


def test_run_of_a_webhook_source_whose_batch_is_hidden_does_not_record_a_success(
    lip_home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch
) -> None:
    from lip_dagster.config import Settings
    from lip_dagster.resources import EmbeddedBackend
    from lip_dagster.webhook.message import encode

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    buffer = EmbeddedBackend(Settings.from_env()).buffer
    body = encode("jamf", 1_780_000_000.0, [{"webhook": {"webhookEvent": "X", "id": 1}}])
    buffer.send("jamf", body)
    buffer.receive("jamf", 10, 300)  # a drain failed to land it: hidden for 300 s
    # a drain now would find nothing, succeed, and close the source's run incident
    # while its batch still cannot land: `lip run` says so instead, and runs nothing
    assert main(["run", "jamf"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lip: error: jamf:") and "1 of 1 buffered" in err
    assert "lip webhook status" in err
    import dagster as dg

    assert dg.DagsterInstance.get().get_runs_count() == 0
    assert buffer.depth("jamf").messages == 1


def test_a_lake_that_refuses_writes_is_named_as_lips_error_not_the_os_one(
    lip_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    from lip_dagster.config import Settings
    from lip_dagster.resources import EmbeddedBackend
    from lip_dagster.webhook.message import encode

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    settings = Settings.from_env()
    EmbeddedBackend(settings).buffer.send(
        "jamf", encode("jamf", 1_780_000_000.0, [{"webhook": {"webhookEvent": "X", "id": 1}}])
    )
    settings.lake_dir.mkdir(parents=True, exist_ok=True)
    (settings.lake_dir / "source=jamf").write_bytes(b"")  # where its directory should be
    assert main(["run", "jamf"]) == 1
    said = capsys.readouterr().err.split("lip: error: ", 1)[1]
    # the sentence LIP wrapped the OS error in: which source, that the events are
    # still pending; the runbook's `LakeWriteError`, not Python's FileExistsError
    assert said.startswith("jamf: LakeWriteError: ")
    assert "of source 'jamf' failed to land" in said


def test_status_without_a_dagster_instance_does_not_say_all_is_well(
    lip_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    # no DAGSTER_HOME and no demo instance: nothing about runs, freshness or checks
    # was read, so exit 0 ("nothing would page") would be a guess
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert main(["status"]) == 1
    captured = capsys.readouterr()
    assert "unknown" in captured.out  # the table is still printed
    assert captured.err.startswith("lip: error:") and "DAGSTER_HOME" in captured.err


@pytest.mark.parametrize("argv", [["status"], ["run", "slack"]])
def test_a_dagster_home_that_does_not_exist_is_one_sentence(
    lip_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch, argv: list[str]
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(lip_home / "no-such-dir"))
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("lip: error:") and "no-such-dir" in err and "Traceback" not in err


def test_status_with_an_unreadable_buffer_does_not_say_all_is_well(
    lip_home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch
) -> None:
    from lip_dagster.config import Settings

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    state_db = Settings.from_env().state_db
    state_db.parent.mkdir(parents=True, exist_ok=True)
    state_db.write_bytes(b"this is not a database" * 100)
    # the webhook sources' dead letters could not be counted: "nothing would page"
    # (exit 0) would be a guess, and the table must not show them as not applying
    assert main(["status"]) == 1
    out, err = capsys.readouterr()
    jamf = next(line for line in out.splitlines() if line.startswith("jamf "))
    assert jamf.split()[-1] == "?"
    said = [line for line in err.splitlines() if line.startswith("lip: error: jamf:")]
    assert said and "buffer" in said[0] and "file is not a database" in said[0]


@pytest.mark.parametrize(
    ("variable", "value", "argv", "named"),
    [
        ("LIP_OKTA_AUTH", "OAuth2", ["sources"], "LIP_OKTA_AUTH"),
        ("LIP_CLOUDFLARE_DATASET", "http", ["status"], "LIP_CLOUDFLARE_DATASET"),
        ("LIP_OKTA_AUTH", "token", ["run", "slack"], "LIP_OKTA_AUTH"),
    ],
)
def test_a_source_setting_that_stops_the_load_is_one_sentence(
    lip_home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    argv: list[str],
    named: str,
) -> None:
    """A value a source's YAML refuses when the definitions load (README, Configuration)
    stops every command that loads them: the on-call engineer typing `lip status`
    gets the sentence naming the variable, not Dagster's component-tree traceback
    with it buried in the middle."""
    monkeypatch.setenv(variable, value)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("lip: error:") and named in err and repr(value) in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_output_piped_to_a_reader_that_stopped_reading_ends_quietly(lip_home: Path) -> None:
    """``lip sources | head -1``: the reader has what it wanted and closed the pipe.
    The command stops without a traceback (as ``ls | head`` does), and says by its
    exit status (141, as if killed by SIGPIPE) that its output was cut."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written
    try:
        done = subprocess.run(
            [sys.executable, "-m", "lip_dagster.cli", "sources"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env={**os.environ, "LIP_HOME": str(lip_home)},
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr.decode() and "BrokenPipe" not in done.stderr.decode()
    assert done.returncode == 141
