"""``lip``: the command line for the on-call engineer.

lip sources                         declared sources, pattern, schedule
lip run SOURCE [--partition KEY]    materialize one source now, in-process
lip demo [--once]                   the local simulator + every demo source
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import dagster as dg

from lip_dagster.errors import LipError

if TYPE_CHECKING:
    from lip_dagster.resources import Backend


def _defs():
    from lip_dagster.definitions import defs

    return defs()


def cmd_sources(_: argparse.Namespace) -> int:
    from lip_dagster.components.common import SOURCE_TAG

    d = _defs()
    graph = d.resolve_asset_graph()
    # a schedule belongs to the source its job is tagged with: by the job name's
    # prefix, `okta` would show the schedule of `okta_hooks`
    source_of = {j.name: j.tags.get(SOURCE_TAG) for j in d.resolve_all_job_defs()}
    schedules = {source_of.get(s.job_name): s.cron_schedule for s in d.schedules or []}
    rows = []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        pattern = node.tags.get("lip/pattern", "?")
        sched = schedules.get(key.path[-1], "-")
        rows.append((key.to_user_string(), pattern, str(sched), node.description or ""))
    print(f"{'SOURCE':<20} {'PATTERN':<9} {'SCHEDULE':<14} DESCRIPTION")
    for r in rows:
        print(f"{r[0]:<20} {r[1]:<9} {r[2]:<14} {r[3]}")
    return 0


def failure_message(result: object) -> str:
    """What failed a run, from its first step failure (``health.error_text``: LIP's
    own error, not Dagster's wrapper around it nor the OS error LIP wrapped)."""
    from lip_dagster.alerts.health import error_text

    for event in result.all_events:  # type: ignore[attr-defined]
        if event.event_type_value == "STEP_FAILURE" and event.step_failure_data:
            said = error_text(event.step_failure_data.error)
            if said:
                return said
    return "run failed (see the Dagster run log)"


def _check_partition(job: dg.JobDefinition, source: str, partition: str) -> None:
    """A partition the source does not have (a typo, an hour before its start or in
    the future) is the operator's mistake: say which hours exist, not Dagster's
    traceback."""
    parts = job.partitions_def
    if not isinstance(parts, dg.TimeWindowPartitionsDefinition):
        return
    if parts.has_partition_key(partition):
        return
    start = parts.start.strftime(parts.fmt)
    raise LipError(
        f"{source}: no hour partition {partition!r}; keys are YYYY-MM-DD-HH:00 (UTC), "
        f"from {start} to the current hour"
    )


def _run_warnings(instance: dg.DagsterInstance, run_id: str, step: str) -> list[str]:
    """What the source's own step warned about in the run (objects put in quarantine,
    hours recorded after a failure): the lines of the run's log worth a terminal,
    without Dagster's event lines, stack traces and its notes on skipped steps."""
    return [
        entry.user_message
        for entry in instance.all_logs(run_id)
        if not entry.is_dagster_event and entry.level >= logging.WARNING and entry.step_key == step
    ]


def _refuse_hidden_batch(lip: Backend, source: str) -> None:
    """A webhook source whose every buffered message is held by a drain (one still
    running, or one that failed: its batch stays hidden for the visibility timeout)
    has nothing a drain could receive now. Run anyway, the drain would land nothing,
    succeed, and resolve the source's run incident while its batch still cannot land:
    the on-call engineer checking a fix would be told it worked."""
    try:
        depth = lip.buffer.depth(source)
    except LipError:
        return  # the drain reads the same buffer and fails with the reason
    if depth.in_flight > 0 and depth.ready == 0:
        raise LipError(
            f"{source}: {depth.in_flight} of {depth.messages} buffered messages are held "
            "by a drain (a drain that failed keeps its batch hidden for the source's "
            "visibility timeout, 300 s by default), so a drain now would land nothing and "
            "record a success; run it again once `lip webhook status` shows IN FLIGHT "
            "below BUFFERED"
        )


def run_source(source: str, partition: str | None, verbose: bool = False) -> dict[str, int]:
    """Materialize one source in-process; returns totals. Raises on failure.

    Dagster's console log prints a failed step's stack trace twice (the step and the
    run) above the one sentence that says what failed, which buries it. Unless
    ``verbose``, that log stays in the run's record (the UI, ``lip status --json``'s
    ``last_run_id``) and only LIP's own warnings reach stderr."""

    from lip_dagster.components.common import MODE_POLL, MODE_TAG, SOURCE_TAG
    from lip_dagster.lake.layout import hour_of

    d = _defs()
    try:
        job = next(j for j in d.resolve_all_job_defs() if j.tags.get(SOURCE_TAG) == source)
    except StopIteration:
        raise LipError(f"no source named {source!r}; see `lip sources`") from None
    tags = {SOURCE_TAG: source}
    if partition is not None:
        _check_partition(job, source, partition)
    elif job.tags.get("lip/pattern") == "webhook":
        _refuse_hidden_batch(d.resources["lip"], source)
    if partition is None:
        partition = hour_of(datetime.now(UTC))
        tags[MODE_TAG] = MODE_POLL
    from lip_dagster.alerts.status import open_dagster

    instance, _ = open_dagster(d.resources["lip"].settings)
    result = job.execute_in_process(
        partition_key=partition,
        tags=tags,
        raise_on_error=False,
        instance=instance,
        run_config={
            "loggers": {"console": {"config": {"log_level": "DEBUG" if verbose else "CRITICAL"}}}
        },
    )
    if not verbose:
        for line in _run_warnings(instance, result.run_id, source):
            print(f"  {line}", file=sys.stderr)
    if not result.success:
        raise LipError(f"{source}: {failure_message(result)}")
    totals = {"events": 0, "duplicates": 0, "objects": 0, "partitions": 0, "failed_checks": 0}
    for check in result.get_asset_check_evaluations():
        # a run can succeed while a non-blocking check of what it landed fails (an
        # object put in quarantine): the summary line must not read as all well
        if not check.passed and check.severity == dg.AssetCheckSeverity.ERROR:
            totals["failed_checks"] += 1
            why = (check.description or "").partition("\n")[0][:300]
            print(f"  check {check.check_name} failed: {why}", file=sys.stderr)
    for mat in result.asset_materializations_for_node(source):
        md = mat.metadata
        if "events_total" in md:
            totals["events"] = int(md["events_total"].value)
            totals["duplicates"] = int(md["duplicates_total"].value)
            totals["objects"] = int(md["objects_total"].value)
            totals["partitions"] = int(md["partitions_written"].value)
    return totals


def run_summary(totals: dict[str, int], width: int = 0) -> str:
    """The totals of one ``run_source``, and how many of its checks failed: the line
    `lip run` and `lip demo` print (``width`` aligns the event counts of a table)."""
    failed = totals["failed_checks"]
    return (
        f"{totals['events']:>{width}} events landed, {totals['duplicates']} duplicates "
        f"dropped, {totals['objects']} objects, {totals['partitions']} partitions written"
        + (f"; {failed} check(s) failed (see above)" if failed else "")
    )


def cmd_run(args: argparse.Namespace) -> int:
    totals = run_source(args.source, args.partition, verbose=args.verbose)
    print(f"{args.source}: {run_summary(totals)}")
    return 1 if totals["failed_checks"] else 0


def cmd_status(args: argparse.Namespace) -> int:
    from lip_dagster.alerts.status import main as status_main

    return status_main(args.json)


def cmd_demo(args: argparse.Namespace) -> int:
    from lip_dagster.demo import run_demo

    return run_demo(once=args.once, port=args.port, ui_port=args.ui_port)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # a pipe closed by its reader shows here, not at exit
    except BrokenPipeError:
        # `lip status --json | head`: the reader had what it wanted. No traceback (as
        # `ls | head`), and 141, a shell's status for a writer killed by SIGPIPE, so a
        # script with `pipefail` still sees the output was cut
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush goes nowhere
        return 141
    return code


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="lip", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("sources", help="list declared sources").set_defaults(fn=cmd_sources)
    p = sub.add_parser("run", help="materialize one source now")
    p.add_argument("source")
    p.add_argument("--partition", help="hour partition YYYY-MM-DD-HH:00 (a backfill)")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser(
        "status",
        help="per source: freshness, last run, failing checks, buffer (exit 2 if unhealthy)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable")
    p.set_defaults(fn=cmd_status)
    p = sub.add_parser("demo", help="simulator + demo sources")
    p.add_argument("--once", action="store_true", help="run every demo source once and exit")
    p.add_argument("--port", type=int, default=8900, help="simulator port")
    p.add_argument("--ui-port", type=int, default=3000)
    p.set_defaults(fn=cmd_demo)
    from lip_dagster.sam.cli import register as register_sam

    register_sam(sub)
    from lip_dagster.webhook.cli import register as register_webhook

    register_webhook(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        with warnings.catch_warnings():
            if not args.verbose:
                # Dagster warns, on every load of the definitions, about beta parameters
                # it passes to itself: noise above `lip status` nobody can act on
                import dagster

                warnings.simplefilter("ignore", dagster.BetaWarning)
            return int(args.fn(args))
    except LipError as exc:
        print(f"lip: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        said = _lip_cause(exc)
        if said is None:
            raise
        # a source's YAML refused while Dagster loads the definitions: Dagster wraps
        # LIP's sentence in its component tree and traceback, where nobody finds it
        print(f"lip: error: {said}", file=sys.stderr)
        return 1


def _lip_cause(exc: BaseException) -> LipError | None:
    """The LipError another library's exception wraps (``raise ... from``), if any."""
    seen: set[int] = set()
    cause = exc.__cause__
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, LipError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__
    return None


if __name__ == "__main__":
    sys.exit(main())
