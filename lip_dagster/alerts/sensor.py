"""The alert sensor: one for the whole deployment. Each tick reads every source's
health, advances the incidents in its cursor, and delivers what is due. A failing
notifier is logged and retried on later ticks; it never stops the sensor or the other
notifiers. The cursor also carries what each source's health remembers between ticks
(``SourceMemory``), so a tick reads only what is new since the last one."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

import dagster as dg

from lip_dagster.alerts.health import (
    SCAN_BUDGET,
    SourceMemory,
    declared_sources,
    source_health,
)
from lip_dagster.alerts.incidents import (
    MAX_ATTEMPTS,
    AlertState,
    Problem,
    advance,
    problems_of,
)
from lip_dagster.alerts.notifiers import (
    GitHubIssueNotifier,
    Notifier,
    NotifierError,
    SlackNotifier,
    WebhookNotifier,
)
from lip_dagster.alerts.status import other_problems
from lip_dagster.config import Settings
from lip_dagster.maintenance import JOB_NAME as MAINTENANCE_JOB
from lip_dagster.resources import Backend

log = logging.getLogger(__name__)

clock: Callable[[], float] = time.time
monotonic: Callable[[], float] = time.monotonic

# Dagster ends a sensor evaluation after 60 s (DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS) and
# keeps the cursor it had: every notice sent in a tick cut off there goes out again on
# the next one, and incidents opened or resolved in it are not recorded. Sending stops
# after this many seconds of a tick (health reads come first); what is left waits, due,
# for the next tick.
DELIVERY_SECONDS = 20.0


def build_notifiers(settings: Settings, lip: Backend) -> list[Notifier]:
    """From ``LIP_ALERT_NOTIFIERS``; secrets are fetched at send time (cached by the
    store), so a rotated webhook URL is picked up without a restart."""
    alerts = settings.alerts
    out: list[Notifier] = []
    for name in alerts.notifiers:
        if name == "webhook":
            out.append(WebhookNotifier(lambda: lip.secrets.get(alerts.webhook_secret)))
        elif name == "slack":
            out.append(SlackNotifier(lambda: lip.secrets.get(alerts.slack_secret)))
        elif name == "github":
            out.append(
                GitHubIssueNotifier(
                    alerts.github_repo or "",
                    lambda: lip.secrets.get(alerts.github_token_secret),
                    alerts.github_api_url,
                )
            )
    return out


def _where(exc: BaseException) -> str:
    """File and line an unexpected error was raised at: enough to find the bug, and
    unlike the message it cannot carry the notifier's URL or token."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown location"
    return f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}"


def deliver(
    state: AlertState, notifiers: list[Notifier], now: float, budget: float = DELIVERY_SECONDS
) -> tuple[int, int]:
    """Send what is due; returns (sent, failed).

    Each delivery is isolated: whatever one notifier raises is logged with its name and
    the incident, and that delivery stays in the outbox with backoff, so one broken
    notifier can neither stop the others nor fail the tick (a failed tick keeps the old
    cursor, and every notifier before the broken one would send the same notice again).

    The tick's time is bounded for the same reason: a notifier that failed is not tried
    again in this tick (a hung endpoint costs one timeout, not one per incident), and
    once ``budget`` seconds have gone by nothing more is sent. Deliveries left over
    keep their place and attempt count and are due on the next tick.
    """
    by_name = {n.name: n for n in notifiers}
    sent = failed = waiting = 0
    down: set[str] = set()
    started = monotonic()
    keep = []
    for d in state.outbox:
        notifier = by_name.get(d.notifier)
        if notifier is None:  # the notifier was removed from the configuration
            continue
        if d.next_at > now:
            keep.append(d)
            continue
        if d.notifier in down or monotonic() - started >= budget:
            waiting += 1
            keep.append(d)
            continue
        try:
            notifier.send(d)
            sent += 1
            continue
        except NotifierError as exc:
            reason = str(exc)
        except Exception as exc:  # noqa: BLE001 - isolated per delivery, logged, retried
            # the message is not kept: it may quote the URL or token the notifier holds
            reason = f"{d.notifier} notifier: unexpected {type(exc).__name__} at {_where(exc)}"
        failed += 1
        down.add(d.notifier)
        d.attempts += 1
        d.last_error = reason[:300]
        d.next_at = now + min(60.0 * 2**d.attempts, 3600.0)
        if d.attempts >= MAX_ATTEMPTS:
            state.dropped += 1
            log.error(
                "giving up on %s notification %s (%s) after %d attempts: %s",
                d.notifier,
                d.key,
                d.event,
                d.attempts,
                reason,
            )
            continue
        log.warning(
            "%s notification %s (%s) failed, attempt %d of %d, next in %d s: %s",
            d.notifier,
            d.key,
            d.event,
            d.attempts,
            MAX_ATTEMPTS,
            int(d.next_at - now),
            reason,
        )
        keep.append(d)
    state.outbox = keep
    if waiting:
        log.warning(
            "%d notification(s) wait for the next tick (%s failed in this one, or the "
            "tick's %.0f s for sending ran out)",
            waiting,
            ", ".join(sorted(down)) or "no notifier",
            budget,
        )
    return sent, failed


def build_alert_sensor(minimum_interval_seconds: int = 60) -> dg.SensorDefinition:
    @dg.sensor(
        name="lip_alerts",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Freshness of landed data, failed runs, failed checks and dead "
        "letters of every source; notifies once when an incident opens and once when "
        "it resolves.",
    )
    def lip_alerts(
        context: dg.SensorEvaluationContext, lip: dg.ResourceParam[Backend]
    ) -> dg.SensorResult:
        now = clock()
        state = AlertState.loads(context.cursor)
        notifiers = build_notifiers(lip.settings, lip)
        problems = []
        memory: dict[str, dict[str, Any]] = {}
        specs = declared_sources(context.repository_def)
        for spec in specs:
            mem = SourceMemory.from_dict(state.memory.get(spec.name), spec.name)
            try:
                health = source_health(context.instance, spec, lip, now, mem, SCAN_BUDGET)
            except Exception as exc:  # noqa: BLE001 - logged; the source is read again below
                # a memory that passed validation can still mislead a storage query; one
                # source's memory must not stop alerting for every source, so it is
                # dropped and the source read anew (an error then is not the memory's)
                context.log.error(
                    f"{spec.name}: reading health with the remembered state failed "
                    f"({type(exc).__name__} at {_where(exc)}); forgetting it and reading "
                    "again from storage"
                )
                mem = SourceMemory()
                health = source_health(context.instance, spec, lip, now, mem, SCAN_BUDGET)
            memory[spec.name] = mem.as_dict()  # a source no longer declared is forgotten
            for note in health.problems_reading:
                context.log.warning(f"{spec.name}: {note}")
            problems += problems_of(health, now)
        state.memory = memory
        try:
            problems += other_problems(context.instance)  # as `lip status` reads them
        except Exception as exc:  # noqa: BLE001 - fail open: the sources still alert
            context.log.error(
                f"{MAINTENANCE_JOB}: reading its latest run failed ({type(exc).__name__} at "
                f"{_where(exc)})"
            )
            kept = state.open.get(f"run|{MAINTENANCE_JOB}")
            if kept is not None:  # not known to be fixed: the incident stays open
                problems.append(
                    Problem(
                        f"run|{MAINTENANCE_JOB}", "run", MAINTENANCE_JOB, "fail", kept["message"]
                    )
                )
        # the maintenance job is watched like a source: never "no longer declared"
        declared = {s.name for s in specs} | {MAINTENANCE_JOB}
        queued = advance(state, problems, [n.name for n in notifiers], now, declared)
        for d in queued:
            log_fn = context.log.warning if d.event == "open" else context.log.info
            log_fn(f"incident {d.event}: {d.message}")
        sent, failed = deliver(state, notifiers, now)
        if not notifiers and queued:
            context.log.warning("no notifier configured (LIP_ALERT_NOTIFIERS); see the README")
        return dg.SensorResult(
            cursor=state.dumps(),
            skip_reason=None
            if queued or sent or failed
            else f"{len(state.open)} open incident(s); nothing new",
        )

    return lip_alerts
