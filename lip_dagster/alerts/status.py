"""``lip status``: one table for the on-call engineer, from state only (Dagster's run
and event storage, LIP's buffer), never a vendor, so it answers in seconds even when a
vendor is down."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson

from lip_dagster.alerts.health import SourceHealth, declared_sources, source_health
from lip_dagster.alerts.incidents import problems_of
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


def collect(now: float | None = None) -> tuple[list[SourceHealth], str]:
    from lip_dagster.definitions import defs

    now = time.time() if now is None else now
    d = defs()
    lip = d.resources["lip"]
    instance, where = open_instance(lip.settings)
    specs = declared_sources(d.get_repository_def())
    return [source_health(instance, s, lip, now) for s in specs], where


def render(rows: list[SourceHealth], now: float) -> str:
    head = (
        "SOURCE",
        "PATTERN",
        "FRESH",
        "LAST LANDED",
        "NEWEST EVENT",
        "LAST RUN",
        "FAILING CHECKS",
        "BUFFER/DLQ",
    )
    lines = [head]
    for h in rows:
        buf = "-" if h.buffer_depth is None else f"{h.buffer_depth}/{h.dlq_depth}"
        run = f"{(h.last_run_status or '-').lower()} {_ago(h.last_run_at, now)}".strip()
        lines.append(
            (
                h.source,
                h.pattern,
                h.freshness,
                _ago(h.last_landed_at, now),
                (h.newest_event or "-")[:20],
                run if h.last_run_status else "-",
                ",".join(h.failing_checks) or "-",
                buf,
            )
        )
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in lines)


def status_json(rows: list[SourceHealth], now: float, where: str) -> bytes:
    out: dict[str, Any] = {
        "at": datetime.fromtimestamp(now, UTC).isoformat(),
        "dagster_instance": where,
        "sources": [h.as_dict(now) for h in rows],
    }
    return orjson.dumps(out, option=orjson.OPT_INDENT_2)


def failing(rows: list[SourceHealth], now: float) -> list[SourceHealth]:
    """Sources with a problem the alert sensor pages on at fail severity: freshness
    past its fail window, a failed latest run, a failing check, dead letters. The same
    rules as the sensor's, so the exit code never disagrees with an open page."""
    return [h for h in rows if any(p.severity == "fail" for p in problems_of(h, now))]


def main(as_json: bool) -> int:
    now = time.time()
    rows, where = collect(now)
    if as_json:
        print(status_json(rows, now, where).decode())
    else:
        print(render(rows, now))
        print(f"\n(Dagster instance: {where})")
    return 2 if failing(rows, now) else 0
