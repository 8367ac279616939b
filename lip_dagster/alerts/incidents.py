"""Incidents: what is wrong now, compared with what was wrong at the last tick.

A problem that appears opens an incident and queues one ``open`` notification per
notifier; a problem that disappears queues one ``resolved``. Nothing is sent twice for
the same incident, however many ticks see it. Deliveries that fail stay queued and are
retried with backoff, a bounded number of times. The whole state is small JSON: it
lives in the alert sensor's cursor, with what the sensor remembers about each source
between ticks (``health.SourceMemory``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from lip_dagster.alerts.health import SourceHealth

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
MAX_OUTBOX = 500
# how the closing notice of an incident whose source left the definitions begins
CLOSED_UNDECLARED = "closed, not resolved:"


@dataclass(frozen=True)
class Problem:
    key: str  # "<kind>|<subject>", stable across ticks
    kind: str  # freshness | run | backfill | check | dlq
    source: str
    severity: str  # warn | fail
    message: str


@dataclass
class Delivery:
    event: str  # open | resolved
    key: str
    kind: str
    source: str
    severity: str
    message: str
    at: float
    notifier: str
    attempts: int = 0
    next_at: float = 0.0
    last_error: str = ""


@dataclass
class AlertState:
    open: dict[str, dict[str, Any]] = field(default_factory=dict)
    outbox: list[Delivery] = field(default_factory=list)
    dropped: int = 0
    memory: dict[str, dict[str, Any]] = field(default_factory=dict)  # source -> SourceMemory

    def dumps(self) -> str:
        return orjson.dumps(
            {
                "open": self.open,
                "outbox": [asdict(d) for d in self.outbox],
                "dropped": self.dropped,
                "memory": self.memory,
            }
        ).decode()

    @classmethod
    def loads(cls, raw: str | None) -> AlertState:
        """The cursor as the last tick stored it. A damaged part is dropped and logged,
        never raised: a tick that fails here would stop all alerting. A dropped
        incident opens again (one repeated page) if its problem is still there; a
        dropped source memory is read again from storage."""
        if not raw:
            return cls()
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            log.error("alert sensor: cursor is not JSON (%s); starting with no incidents", exc)
            return cls()
        if not isinstance(d, dict):
            log.error("alert sensor: cursor is a %s, not an object; starting over", type(d))
            return cls()
        state = cls()
        incidents = d.get("open", {})
        for key, info in incidents.items() if isinstance(incidents, dict) else []:
            if isinstance(info, dict) and all(
                isinstance(info.get(f), str) for f in ("message", "source", "kind", "severity")
            ):
                state.open[key] = info
            else:
                log.error("alert sensor: dropping unreadable open incident %s in the cursor", key)
        outbox = d.get("outbox", [])
        for entry in outbox if isinstance(outbox, list) else []:
            try:
                delivery = Delivery(**entry)
                _check_delivery(delivery)
            except (TypeError, ValueError) as exc:
                log.error("alert sensor: dropping unreadable queued notification (%s)", exc)
                continue
            state.outbox.append(delivery)
        dropped = d.get("dropped", 0)
        state.dropped = dropped if isinstance(dropped, int) and not isinstance(dropped, bool) else 0
        memory = d.get("memory", {})
        if isinstance(memory, dict):
            state.memory = {str(k): v for k, v in memory.items()}
        else:
            log.error("alert sensor: source memories in the cursor unreadable; reading anew")
        return state


def _check_delivery(d: Delivery) -> None:
    """Raise ValueError if a queued notification read from the cursor has a field of
    the wrong type (it would fail the tick when sent or backed off)."""
    for name in ("event", "key", "kind", "source", "severity", "message", "notifier", "last_error"):
        if not isinstance(getattr(d, name), str):
            raise ValueError(f"{d.key!r}: {name} is not text")
    for name in ("at", "next_at"):
        value = getattr(d, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{d.key!r}: {name} is not a time")
    if isinstance(d.attempts, bool) or not isinstance(d.attempts, int):
        raise ValueError(f"{d.key!r}: attempts is not a count")


def _fmt_age(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def _fmt_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


# What to check first when a source has never landed anything: it was set up wrong.
NEVER_LANDED_HINTS = {
    "polling": "check its credentials and the tenant or domain its settings name (a valid "
    "token for another tenant, or one without the audit-log scope, can answer with "
    "nothing); its runs' events_total and stopped/<endpoint> say what each poll got",
    "webhook": "check the webhook secret on both sides (the receiver logs `webhook "
    "<source>: 401 <reason>` for each refused delivery), the URL the vendor posts to, and "
    "that the vendor's hook is enabled; `lip webhook status` shows what is buffered",
    "s3": "check the bucket and prefix it reads (the variables named by bucket_env and "
    "prefix_env in its YAML) against where the vendor writes, and the bucket's "
    "notifications; the <source>_arrivals sensor's ticks say what it found",
}


# How a failed backfill is closed: a later backfill of the source that succeeds.
BACKFILL_CLOSE = {
    "polling": "fix the cause, then backfill those hours again (the UI, or `lip run <source> "
    "--partition YYYY-MM-DD-HH:00`)",
    "webhook": "a webhook source has nothing to fetch by hour; fix the cause, then "
    "Materialize its current hour from the UI (a drain of its buffer)",
    "s3": "fix the cause, then launch <source>_transcode from the Launchpad again with the "
    "keys of the vendor objects to read (run config `ops: {<source>: {config: {keys: "
    "[...]}}}`)",
}


def _backfill_message(h: SourceHealth) -> str:
    """A failed backfill: the hours that failed since the last one that succeeded, what
    failed the newest, and how the incident closes."""
    hours = h.backfill_failed_partitions
    shown = ", ".join(hours[:5]) or "an hour"
    extra = max(len(hours) - 5, 0)
    more = f" and {extra} more" if extra else ""
    if h.backfill_failed_more:
        more += " (and maybe more before them)"
    close = BACKFILL_CLOSE.get(h.pattern, BACKFILL_CLOSE["polling"]).replace("<source>", h.source)
    return (
        f"{h.source}: a backfill (a run launched from the UI or by `lip run --partition`, "
        f"not by its schedule or sensor) failed for {shown}{more}; the latest, run "
        f"{h.last_backfill_id}: {h.last_backfill_error or 'no error recorded'}. The live "
        f"collection's runs page apart (run|{h.source}) and do not close this. It resolves "
        f"when a later backfill of {h.source} succeeds: {close}. docs/runbook.md, "
        "backfill|<source>."
    )


def _freshness_message(h: SourceHealth, now: float) -> str | None:
    """Why a source is stale, or None if the health says nothing about when: data that
    stopped landing, or a source running past its fail window that never landed any."""
    window = _fmt_age((h.fail_window_s if h.freshness == "fail" else h.warn_window_s) or 0)
    lag = h.lag_seconds(now)
    if lag is not None:
        return (
            f"{h.source}: nothing new has landed for {_fmt_age(lag)} "
            f"({h.freshness} window {window}); newest event "
            f"{h.newest_event or 'unknown'}. Check the source's latest runs and its "
            "lake_content check; backfill the gap once it lands again."
        )
    if h.started_at is None:
        return None
    hint = NEVER_LANDED_HINTS.get(h.pattern, "check its credentials and settings")
    return (
        f"{h.source}: no event has ever landed for {h.source} since {h.started_by} at "
        f"{_fmt_time(h.started_at)} ({_fmt_age(now - h.started_at)} ago; {h.freshness} "
        f"window {window}); {hint.replace('<source>', h.source)}."
    )


def problems_of(h: SourceHealth, now: float) -> list[Problem]:
    out = []
    message = _freshness_message(h, now) if h.freshness in ("warn", "fail") else None
    if message is not None:
        out.append(
            Problem(
                f"freshness-{h.freshness}|{h.source}",
                "freshness",
                h.source,
                h.freshness,
                message,
            )
        )
    if h.last_run_status == "FAILURE" and not h.last_run_failed_by_checks:
        out.append(
            Problem(
                f"run|{h.source}",
                "run",
                h.source,
                "fail",
                f"{h.source}: the latest live run {h.last_run_id} failed: "
                f"{h.last_run_error or 'no error recorded'}. Its whole log: Dagster UI, "
                "Runs; docs/runbook.md, run|<source>.",
            )
        )
    if h.last_backfill_status == "FAILURE" and not h.last_backfill_failed_by_checks:
        # one incident however many backfilled hours fail, apart from the live runs'
        out.append(
            Problem(f"backfill|{h.source}", "backfill", h.source, "fail", _backfill_message(h))
        )
    for check in h.failing_checks:
        # one incident per check, however many hours fail it, so a broken writer pages
        # once, not once an hour; the hours are named in the message
        partitions = h.failing_partitions.get(check)
        unlisted = h.unlisted_partitions.get(check, 0)
        if partitions or unlisted:
            shown = ", ".join(p or "(unpartitioned)" for p in (partitions or [])[:5]) or "hours"
            extra = max(len(partitions or []) - 5, 0) + unlisted
            more = f" and {extra} more" if extra else ""
            message = (
                f"{h.source}: asset check {check} failed on {shown}{more}; its metadata "
                "says what is wrong and how to fix it. It resolves when each of these hours "
                "passes again (fix the objects, then run the hour again)."
            )
        else:
            message = (
                f"{h.source}: asset check {check} failed; its metadata says what is wrong "
                "and how to fix it."
            )
        severity = "warn" if check in h.warning_checks else "fail"
        out.append(Problem(f"check|{h.source}:{check}", "check", h.source, severity, message))
    if h.dlq_depth:
        message = (
            f"{h.source}: {h.dlq_depth} message(s) in the dead-letter queue; fix the "
            f"cause, then `lip webhook replay {h.source}` (or the {h.source}_replay job)."
        )
        if h.buffer_retention_s:
            # SQS deletes dead letters on its own; an empty queue then reads as fixed
            message += (
                f" The queue deletes a message {h.buffer_retention_s / 86400:g} days after "
                "it was first buffered, replayed or not: replay before then, or its events "
                "are lost."
            )
        out.append(Problem(f"dlq|{h.source}", "dlq", h.source, "fail", message))
    return out


def maintenance_problems(job_name: str, failure: tuple[str, str] | None) -> list[Problem]:
    """A failed run of the state maintenance job (``maintenance_failure``) pages as a
    run incident of its own: no source's health shows it until the disk is full."""
    if failure is None:
        return []
    run_id, error = failure
    return [
        Problem(
            f"run|{job_name}",
            "run",
            job_name,
            "fail",
            f"{job_name}: the latest run {run_id} failed: {error}. Expired event ids are "
            "not deleted while it fails, and state.db grows until the disk is full; "
            f"fix the cause, then launch {job_name} from the Dagster UI.",
        )
    ]


def _deliveries(
    event: str,
    key: str,
    info: dict[str, Any],
    message: str,
    notifiers: list[str],
    now: float,
) -> list[Delivery]:
    """One notice of ``event`` per notifier, for the incident ``info`` records."""
    return [
        Delivery(
            event, key, info["kind"], info["source"], info["severity"], message, now, n, 0, now
        )
        for n in notifiers
    ]


def advance(
    state: AlertState,
    problems: list[Problem],
    notifiers: list[str],
    now: float,
    declared: Collection[str] | None = None,
) -> list[Delivery]:
    """Open and resolve incidents; returns the deliveries newly queued.

    ``declared``: the sources the definitions hold now. An open incident of a source
    no longer among them is closed (nothing could ever resolve it), with a notice that
    says so: its problem was not seen to end, and "resolved" would tell on-call the
    dead letters landed or the vendor came back."""
    current = {p.key: p for p in problems}
    queued: list[Delivery] = []
    for key, p in current.items():
        info = state.open.get(key)
        if info is None:
            state.open[key] = {
                "since": now,
                "message": p.message,
                "source": p.source,
                "kind": p.kind,
                "severity": p.severity,
                "told": list(notifiers),
            }
            queued += _deliveries("open", key, state.open[key], p.message, notifiers, now)
            continue
        # A notifier configured while the incident was open (Slack added during an
        # outage) is told of it now: otherwise its first word would be "resolved".
        # Incidents stored before notifiers were tracked count as told by all.
        told = info.get("told")
        if not isinstance(told, list):
            told = info["told"] = list(notifiers)
        late = [n for n in notifiers if n not in told]
        if late:
            told += late
            queued += _deliveries("open", key, info, info["message"], late, now)
    for key in [k for k in state.open if k not in current]:
        info = state.open.pop(key)
        if declared is not None and info["source"] not in declared:
            msg = (
                f"{CLOSED_UNDECLARED} {info['source']} is no longer declared (its "
                "defs.yaml was removed or renamed), so LIP no longer watches it; what was "
                f"open: {info['message']}"
            )
        else:
            msg = f"resolved: {info['message']}"
        # only to those told it was open: a notifier configured in the very tick it
        # ended would otherwise hear "resolved" of something it never saw open
        told = info.get("told")
        tell = [n for n in notifiers if not isinstance(told, list) or n in told]
        queued += _deliveries("resolved", key, info, msg, tell, now)
    state.outbox.extend(queued)
    if len(state.outbox) > MAX_OUTBOX:
        state.dropped += len(state.outbox) - MAX_OUTBOX
        state.outbox = state.outbox[-MAX_OUTBOX:]
    return queued
