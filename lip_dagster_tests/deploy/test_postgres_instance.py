"""The production instance (``deploy/ecs/dagster.yaml``: PostgreSQL storage, the queued
run coordinator, one run per source) on a real PostgreSQL server: schedule ticks,
the run queue, partitioned runs against the vendor simulator, a backfill, and the
freshness and alert path, each asserted on the rows PostgreSQL holds."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import orjson
import pytest

from lip_dagster.config import Settings
from lip_dagster.simulator import VendorSimulator

from .conftest import Daemon, code_location, repository
from .launcher import CONFIG as IN_PROCESS_LAUNCHER
from .postgres import PostgresServer


def lake_ids(source: str) -> list[str]:
    """Every ``_lip.id`` of the source's lake objects, repeats included."""
    root = Settings.from_env().lake_dir / f"source={source}"
    ids: list[str] = []
    for path in root.rglob("*.ndjson.gz"):
        ids += [
            orjson.loads(x)["_lip"]["id"]
            for x in gzip.decompress(path.read_bytes()).split(b"\n")
            if x
        ]
    return ids


def five_minute_boundary(now: datetime) -> datetime:
    return now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)


def statuses(instance: dg.DagsterInstance, source: str) -> list[str]:
    runs = instance.get_runs(dg.RunsFilter(tags={"lip/source": source}))
    return sorted(r.status.value for r in runs)


def test_schedule_ticks_queue_runs_that_launch_one_per_source_at_a_time(
    demo_world: VendorSimulator, make_instance, postgres: PostgresServer, pg_db: str
) -> None:
    instance = make_instance(run_launcher=IN_PROCESS_LAUNCHER)
    tick = five_minute_boundary(datetime.now(UTC))
    with code_location(instance) as context:
        daemon = Daemon(context)
        repo = repository(context)
        schedules = [repo.get_schedule(n) for n in ("okta_every_5m", "slack_every_5m")]
        with dg._core.test_utils.freeze_time(tick - timedelta(minutes=5, seconds=30)):
            for schedule in schedules:
                instance.start_schedule(schedule)
        # two ticks each, as the daemon would see them five minutes apart (polling
        # schedules do not catch up missed ticks: the cursor does)
        daemon.schedules(tick - timedelta(minutes=5) + timedelta(seconds=10))
        daemon.schedules(tick + timedelta(seconds=10))

        for schedule in schedules:
            ticks = instance.get_ticks(schedule.get_remote_origin_id(), schedule.selector_id)
            assert [t.status.value for t in ticks] == ["SUCCESS", "SUCCESS"]
        # the ticks are in Postgres; only these two schedules' (the nightly maintenance
        # schedule runs by default and ticks too when the test runs at 03:17 UTC)
        rows = postgres.query(
            pg_db,
            "SELECT status, count(*) FROM job_ticks WHERE selector_id = ANY(%s) GROUP BY status",
            [[s.selector_id for s in schedules]],
        )
        assert rows == [("SUCCESS", 4)]
        okta_runs = instance.get_runs(dg.RunsFilter(tags={"lip/source": "okta"}))
        assert {r.tags["dagster/partition"] for r in okta_runs} <= {
            (tick - timedelta(minutes=5)).strftime("%Y-%m-%d-%H:00"),
            tick.strftime("%Y-%m-%d-%H:00"),
        }
        assert all(r.tags["lip/mode"] == "poll" for r in okta_runs)
        assert statuses(instance, "okta") == ["QUEUED", "QUEUED"]

        daemon.queue()  # one run per source: okta's second run waits for its first
        assert statuses(instance, "okta") == ["QUEUED", "SUCCESS"]
        assert statuses(instance, "slack") == ["QUEUED", "SUCCESS"]
        daemon.queue()
        assert statuses(instance, "okta") == ["SUCCESS", "SUCCESS"]
        assert statuses(instance, "slack") == ["SUCCESS", "SUCCESS"]

    expected = sorted(e["uuid"] for e in demo_world.events("okta", "logs"))
    assert sorted(lake_ids("okta")) == expected  # every event once, across both runs
    (count,) = postgres.query(
        pg_db,
        "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' "
        "AND asset_key = %s",
        [json.dumps(["okta"]).replace(" ", "")],
    )[0]
    assert count >= 4  # three hours of history and the current hour, at least


def test_a_backfill_of_a_past_hour_lands_that_hour_and_completes(
    demo_world: VendorSimulator, make_instance, postgres: PostgresServer, pg_db: str
) -> None:
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    instance = make_instance(run_launcher=IN_PROCESS_LAUNCHER)
    events = demo_world.events("okta", "logs")
    hour = datetime.fromisoformat(events[len(events) // 2]["published"]).replace(
        minute=0, second=0, microsecond=0
    )
    partition = hour.strftime("%Y-%m-%d-%H:00")
    with code_location(instance) as context:
        daemon = Daemon(context)
        backfill_id = make_new_backfill_id()
        # what the UI's "Materialize" on one partition of the asset creates
        instance.add_backfill(
            PartitionBackfill.from_asset_partitions(
                backfill_id=backfill_id,
                asset_graph=context.create_request_context().asset_graph,
                partition_names=[partition],
                asset_selection=[dg.AssetKey("okta")],
                backfill_timestamp=datetime.now(UTC).timestamp(),
                tags={},
                dynamic_partitions_store=instance,
                all_partitions=False,
                title=None,
                description=None,
                run_config=None,
            )
        )
        daemon.backfills()  # requests the partition's run: into the queue, like any run
        (run,) = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        assert run.status == dg.DagsterRunStatus.QUEUED
        assert run.tags["dagster/partition"] == partition
        daemon.queue()
        daemon.backfills()  # sees the run succeed and closes the backfill

    # A backfill launched on the asset runs Dagster's asset job, which does not carry
    # the source's run tags; the source's pool (one step at a time) still guards it.
    pools = postgres.query(pg_db, 'SELECT concurrency_key, "limit" FROM concurrency_limits')
    assert pools == [("lip-source-okta", 1)]
    assert instance.get_backfill(backfill_id).status == BulkActionStatus.COMPLETED_SUCCESS
    rows = postgres.query(pg_db, "SELECT status FROM bulk_actions WHERE key = %s", [backfill_id])
    assert rows == [("COMPLETED_SUCCESS",)]
    expected = {
        e["uuid"]
        for e in events
        if hour <= datetime.fromisoformat(e["published"]) < hour + timedelta(hours=1)
    }
    landed = lake_ids("okta")
    assert sorted(landed) == sorted(expected)  # that hour, each event once, nothing else
    mats = instance.fetch_materializations(dg.AssetKey("okta"), limit=10).records
    assert [m.partition_key for m in mats] == [partition]
    assert mats[0].asset_materialization.metadata["mode"].value == "backfill"


class AlertHook:
    """A generic-webhook notifier's endpoint: records every POST."""

    def __init__(self) -> None:
        received: list[dict] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/lip-alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def alert_hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[AlertHook]:
    hook = AlertHook()
    monkeypatch.setenv("LIP_ALERT_NOTIFIERS", "webhook")
    monkeypatch.setenv("LIP_SECRET_ALERTS_WEBHOOK_URL", hook.url)
    yield hook
    hook.close()


def alert_sensor_row(postgres: PostgresServer, db: str) -> tuple[str, dict]:
    """The alert sensor's selector id and state, as PostgreSQL stores them."""
    rows = postgres.query(
        db, "SELECT selector_id, instigator_body FROM instigators WHERE instigator_type = 'SENSOR'"
    )
    from dagster._serdes import deserialize_value

    for selector_id, body in rows:
        state = deserialize_value(body)
        if state.name == "lip_alerts":
            return selector_id, orjson.loads(state.instigator_data.cursor)
    raise AssertionError("no state for the lip_alerts sensor in PostgreSQL")


def test_a_failed_run_opens_one_incident_through_the_alert_sensor(
    demo_world: VendorSimulator,
    make_instance,
    alert_hook: AlertHook,
    postgres: PostgresServer,
    pg_db: str,
) -> None:
    instance = make_instance(run_launcher=IN_PROCESS_LAUNCHER)
    demo_world.script("slack", [401])  # Slack refuses the token: the run fails at once
    tick = five_minute_boundary(datetime.now(UTC))
    with code_location(instance) as context:
        daemon = Daemon(context)
        with dg._core.test_utils.freeze_time(tick - timedelta(seconds=30)):
            instance.start_schedule(repository(context).get_schedule("slack_every_5m"))
        daemon.schedules(tick + timedelta(seconds=10))
        daemon.queue()
        assert statuses(instance, "slack") == ["FAILURE"]

        now = datetime.now(UTC)
        daemon.sensors(now)
        daemon.sensors(now + timedelta(seconds=61))  # the next tick: same incident, no message

    opened = [m for m in alert_hook.received if m["event"] == "open"]
    assert [(m["source"], m["kind"]) for m in opened] == [("slack", "run")]
    assert "failed" in opened[0]["message"]
    selector_id, cursor = alert_sensor_row(postgres, pg_db)
    assert list(cursor["open"]) == ["run|slack"] and cursor["outbox"] == []
    ticks = postgres.query(
        pg_db, "SELECT status FROM job_ticks WHERE selector_id = %s", [selector_id]
    )
    assert len(ticks) == 2


def test_a_source_that_stops_landing_goes_stale_and_alerts_once(
    demo_world: VendorSimulator,
    make_instance,
    alert_hook: AlertHook,
    postgres: PostgresServer,
    pg_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dagster._core.definitions.freshness import FreshnessState

    from lip_dagster.alerts import sensor as alert_sensor

    instance = make_instance(run_launcher=IN_PROCESS_LAUNCHER)
    tick = five_minute_boundary(datetime.now(UTC))
    with code_location(instance) as context:
        daemon = Daemon(context)
        with dg._core.test_utils.freeze_time(tick - timedelta(seconds=30)):
            instance.start_schedule(repository(context).get_schedule("okta_every_5m"))
        daemon.schedules(tick + timedelta(seconds=10))
        daemon.queue()
        assert statuses(instance, "okta") == ["SUCCESS"]

        now = datetime.now(UTC)
        daemon.freshness(now)
        daemon.sensors(now)
        assert alert_hook.received == []  # fresh: nothing to say

        # 61 minutes later nothing new has landed (the schedule was never ticked again);
        # okta's fail window is 60 minutes
        later = now + timedelta(minutes=61)
        monkeypatch.setattr(alert_sensor, "clock", lambda: later.timestamp())
        daemon.freshness(later)
        daemon.sensors(later)
        daemon.sensors(later + timedelta(seconds=61))

    records = instance.get_freshness_state_records([dg.AssetKey("okta")])
    assert records[dg.AssetKey("okta")].freshness_state == FreshnessState.FAIL
    rows = postgres.query(
        pg_db,
        "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'FRESHNESS_STATE_CHANGE'",
    )
    assert rows[0][0] >= 2  # okta went PASS, then FAIL (other sources have no landing yet)
    opened = [m for m in alert_hook.received if m["event"] == "open"]
    assert [(m["source"], m["kind"], m["severity"]) for m in opened] == [
        ("okta", "freshness", "fail")
    ]
