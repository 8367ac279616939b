"""``lip status``: one table for the on-call engineer, from state only (Dagster's run
and event storage, LIP's buffer), never a vendor, so it answers in seconds even when a
vendor is down. LAST RUN is the source's live collection (``run|<source>``), LAST
BACKFILL its newest run launched otherwise (``backfill|<source>``)."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import orjson
from dagster._core.errors import DagsterInvariantViolationError

from lip_dagster.alerts.health import (
    SourceHealth,
    declared_sources,
    maintenance_failure,
    source_health,
)
from lip_dagster.alerts.incidents import Problem, maintenance_problems, problems_of
from lip_dagster.config import Settings
from lip_dagster.errors import ConfigError
from lip_dagster.instance import open_instance


def _ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "never"
    s = int(now - ts)
    if s < 120:
        return f"{s}s ago"
    if s < 7200:
        return f"{s // 60}m ago"
    return f"{s // 3600}h ago"


NO_INSTANCE = "none (set DAGSTER_HOME)"  # what ``open_instance`` names an empty one


def open_dagster(settings: Settings) -> tuple[dg.DagsterInstance, str]:
    """``open_instance``, with a ``DAGSTER_HOME`` that is not a directory said in one
    sentence (a typo in it during an incident), not as Dagster's traceback."""
    try:
        return open_instance(settings)
    except DagsterInvariantViolationError as exc:
        raise ConfigError(f"cannot open the Dagster instance: {exc}") from exc


def other_problems(instance: dg.DagsterInstance) -> list[Problem]:
    """What the alert sensor pages on beside the sources: a failed run of the state
    maintenance job (``run|lip_state_maintenance``)."""
    from lip_dagster.maintenance import JOB_NAME

    return maintenance_problems(JOB_NAME, maintenance_failure(instance, JOB_NAME))


def collect(now: float | None = None) -> tuple[list[SourceHealth], str, list[Problem]]:
    from lip_dagster.definitions import defs

    now = time.time() if now is None else now
    d = defs()
    lip = d.resources["lip"]
    instance, where = open_dagster(lip.settings)
    specs = declared_sources(d.get_repository_def())
    rows = [source_health(instance, s, lip, now) for s in specs]
    return rows, where, other_problems(instance)


def render(rows: list[SourceHealth], now: float) -> str:
    head = (
        "SOURCE",
        "PATTERN",
        "FRESH",
        "LAST LANDED",
        "NEWEST EVENT",
        "LAST RUN",
        "LAST BACKFILL",
        "FAILING CHECKS",
        "BUFFER/DLQ",
    )
    lines = [head]
    for h in rows:
        buf = f"{h.buffer_depth}/{h.dlq_depth}"
        if h.buffer_depth is None:  # a webhook source's buffer that could not be read
            buf = "?" if h.pattern == "webhook" else "-"
        run = f"{(h.last_run_status or '-').lower()} {_ago(h.last_run_at, now)}".strip()
        backfill = f"{(h.last_backfill_status or '-').lower()} {_ago(h.last_backfill_at, now)}"
        lines.append(
            (
                h.source,
                h.pattern,
                h.freshness,
                _ago(h.last_landed_at, now),
                (h.newest_event or "-")[:20],
                run if h.last_run_status else "-",
                backfill if h.last_backfill_status else "-",
                ",".join(h.failing_checks) or "-",
                buf,
            )
        )
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in lines)


def status_json(
    rows: list[SourceHealth], now: float, where: str, others: list[Problem] | None = None
) -> bytes:
    out: dict[str, Any] = {
        "at": datetime.fromtimestamp(now, UTC).isoformat(),
        "dagster_instance": where,
        "sources": [h.as_dict(now) for h in rows],
        # incidents of no source (the state maintenance job), as the sensor pages them
        "other_incidents": [
            {"key": p.key, "severity": p.severity, "message": p.message} for p in others or []
        ],
    }
    return orjson.dumps(out, option=orjson.OPT_INDENT_2)


def failing(rows: list[SourceHealth], now: float) -> list[SourceHealth]:
    """Sources with a problem the alert sensor pages on at fail severity: freshness
    past its fail window, a failed latest live run, a failed backfill not yet run again
    with success, a failing check, dead letters. The same rules as the sensor's, so the
    exit code never disagrees with an open page."""
    return [h for h in rows if any(p.severity == "fail" for p in problems_of(h, now))]


def main(as_json: bool) -> int:
    """0: nothing would page at fail severity; 2: something would (a source, or the
    state maintenance job whose failed run pages too); 1 (with the table
    still printed) when no Dagster instance was read, so runs, freshness and checks
    are unknown and "nothing would page" cannot be said: a script that trusts the
    exit code must not take a missing ``DAGSTER_HOME`` for a healthy pipeline. The
    same when a part of a source could not be read (a webhook source's buffer: its
    dead letters, which page, are then unknown)."""
    now = time.time()
    rows, where, others = collect(now)
    if as_json:
        print(status_json(rows, now, where, others).decode())
    else:
        print(render(rows, now))
        for p in others:
            print(f"\n{p.key}: {p.message}")
        print(f"\n(Dagster instance: {where})")
    if failing(rows, now) or any(p.severity == "fail" for p in others):
        return 2
    if where == NO_INSTANCE:
        print(
            "lip: error: no Dagster instance was read, so runs, freshness and checks are "
            "unknown: set DAGSTER_HOME to the instance the daemon uses",
            file=sys.stderr,
        )
        return 1
    unread = [(h.source, note) for h in rows for note in h.problems_reading]
    for source, note in unread:
        print(
            f"lip: error: {source}: could not read {note}; whether it would page is unknown",
            file=sys.stderr,
        )
    return 1 if unread else 0
