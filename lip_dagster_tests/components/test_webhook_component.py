"""The WebhookSource component through Dagster itself: definitions, arrival-sensor
ticks, drain runs and their materializations, failures, replay, the demo, and
secrets kept out of all of it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import orjson
import pytest

from lip_dagster.config import Settings
from lip_dagster.definitions import defs
from lip_dagster.lake.backends import LocalLake
from lip_dagster.lake.layout import hour_of
from lip_dagster.resources import EmbeddedBackend
from lip_dagster.simulator.webhooks import WebhookSimulator
from lip_dagster.webhook.arrival import ArrivalState
from lip_dagster.webhook.demo import _merge_secrets, drain_once, start_webhook_demo
from lip_dagster.webhook.receiver import app_for_backend
from lip_dagster_tests.clock import now_with_hour_left
from lip_dagster_tests.webhook.conftest import Client
from lip_dagster_tests.webhook.test_drain import lake_ids

WEBHOOK = ("okta_hooks", "github", "jamf")


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """LIP_HOME with the simulator's webhook secrets, a receiver client, and the
    project's definitions (whose resource is the same embedded backend)."""
    monkeypatch.setenv("LIP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    settings = Settings.from_env()
    sim = WebhookSimulator(seed=3)
    _merge_secrets(settings.secrets_file, sim.credentials())
    backend = EmbeddedBackend(settings)
    for name in WEBHOOK:
        backend.ensure_source(name)
    app = app_for_backend(backend)
    client = Client(app)
    yield SimpleNamespace(sim=sim, backend=backend, client=client, defs=defs(), home=settings)
    client.close()
    app.state.receiver.intake.close()


def deliver(world: SimpleNamespace, deliveries: list) -> None:
    for d in deliveries:
        r = world.client.post(f"/webhooks/{d.source}", headers=d.headers, content=d.body)
        assert r.status_code == 204, r.text


def run_drain(world: SimpleNamespace, source: str, **kw: object) -> dg.ExecuteInProcessResult:
    job = world.defs.resolve_job_def(f"{source}_drain")
    return job.execute_in_process(
        partition_key=hour_of(datetime.now(UTC)),
        instance=kw.pop("instance", None) or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        **kw,
    )


def test_one_yaml_block_builds_route_asset_job_sensor_replay_checks(world) -> None:
    d: dg.Definitions = world.defs
    graph = d.resolve_asset_graph()
    for name in WEBHOOK:
        node = graph.get(dg.AssetKey(name))
        assert node.partitions_def is not None and node.freshness_policy is not None
        assert node.tags["lip/pattern"] == "webhook"
        job = d.resolve_job_def(f"{name}_drain")
        assert job.tags["lip/source"] == name and job.tags["lip/pattern"] == "webhook"
        sensor = d.resolve_sensor_def(f"{name}_arrivals")
        assert sensor.minimum_interval_seconds == 30 and sensor.job_name == f"{name}_drain"
        assert "lip/source" not in d.resolve_job_def(f"{name}_replay").tags
        checks = {k.name for k in graph.asset_check_keys if k.asset_key == dg.AssetKey(name)}
        assert {"lake_content", "dead_letters"} <= checks


def sensor_tick(
    world: SimpleNamespace,
    source: str,
    cursor: str | None,
    *,
    instance: dg.DagsterInstance | None = None,
    lip: object | None = None,
) -> dg.SensorResult:
    sensor = world.defs.resolve_sensor_def(f"{source}_arrivals")
    ctx = dg.build_sensor_context(
        instance=instance or dg.DagsterInstance.ephemeral(),
        cursor=cursor,
        resources={"lip": lip or world.backend},
        definitions=world.defs,
    )
    return sensor(ctx)


def test_sensor_requests_drains_by_size_heartbeat_and_never_twice_at_once(world) -> None:
    # nothing buffered, never drained: a heartbeat drain
    res = sensor_tick(world, "okta_hooks", None)
    (req,) = res.run_requests
    assert req.tags["lip/source"] == "okta_hooks" and req.tags["lip/trigger"] == "heartbeat"
    assert req.partition_key == hour_of(datetime.now(UTC)) and req.run_key
    # just drained, nothing waiting: nothing to do
    res = sensor_tick(world, "okta_hooks", res.cursor)
    assert not res.run_requests
    # 500 messages (the size threshold) arrive
    deliver(world, world.sim.okta_deliveries(500, per_delivery=1))
    res = sensor_tick(world, "okta_hooks", res.cursor)
    (req,) = res.run_requests
    assert req.tags["lip/trigger"] == "size"
    # ... but not while a drain of that source is queued or running
    instance = dg.DagsterInstance.ephemeral()
    job = world.defs.resolve_job_def("okta_hooks_drain")
    instance.create_run_for_job(job_def=job, tags={"lip/source": "okta_hooks"})
    busy = sensor_tick(world, "okta_hooks", res.cursor, instance=instance)
    assert not busy.run_requests


def test_sensor_on_sqs_ages_the_buffer_from_its_cursor(world, boto_session, moto_endpoint) -> None:
    from lip_dagster.state.aws import SqsBuffer

    sqs = SqsBuffer(session=boto_session, endpoint_url=moto_endpoint, prefix="t-sensor-")
    sqs.ensure("github")
    sqs.send("github", [b"x"])
    lip = SimpleNamespace(buffer=sqs)
    assert sqs.depth("github").oldest_age_seconds is None
    recent = ArrivalState(None, time.time() - 5).to_cursor()
    first = sensor_tick(world, "github", recent, lip=lip)
    assert not first.run_requests  # just seen: age 0
    state = ArrivalState.from_cursor(first.cursor)
    assert state.nonempty_since is not None
    aged = ArrivalState(state.nonempty_since - 61, state.last_request).to_cursor()
    (req,) = sensor_tick(world, "github", aged, lip=lip).run_requests
    assert req.tags["lip/trigger"] == "age"


def test_a_drain_run_materializes_every_hour_it_wrote(world) -> None:
    now = now_with_hour_left()  # the drains target the current hour, by the clock
    okta = world.sim.okta_deliveries(90, per_delivery=10, start=now - timedelta(hours=3), end=now)
    deliver(world, okta + world.sim.github_deliveries(4))
    result = run_drain(world, "okta_hooks")
    assert result.success
    mats = result.asset_materializations_for_node("okta_hooks")
    expected_hours = {
        hour_of(datetime.fromisoformat(e["published"])) for d in okta for e in d.events
    }
    assert expected_hours <= {m.partition for m in mats} and len(expected_hours) >= 3
    target = next(m for m in mats if m.partition == hour_of(now))
    assert target.metadata["events_total"].value == 90
    assert target.metadata["partitions_written"].value == len(expected_hours)
    assert target.metadata["stopped"].value == "empty"
    checks = result.get_asset_check_evaluations()
    assert {c.check_name for c in checks} >= {"lake_content", "dead_letters"}
    assert all(c.passed for c in checks)
    # the buffer is empty and the other source untouched
    assert world.backend.buffer.depth("okta_hooks").messages == 0
    assert world.backend.buffer.depth("github").messages == 4
    again = run_drain(world, "okta_hooks")
    (mat,) = again.asset_materializations_for_node("okta_hooks")
    assert mat.metadata["events_total"].value == 0


def test_a_backfill_of_a_past_hour_is_refused_and_leaves_the_buffer_alone(world) -> None:
    """A webhook hour has nothing to fetch: a backfill that drained the live buffer
    would succeed with nothing in its hour and look like a filled gap."""
    now_with_hour_left()  # "the current hour" by the clock, here and in the drain
    deliver(world, world.sim.okta_deliveries(5, per_delivery=1))
    past = hour_of(datetime.now(UTC) - timedelta(days=1))
    instance = dg.DagsterInstance.ephemeral()
    job = world.defs.resolve_job_def("okta_hooks_drain")
    r = job.execute_in_process(partition_key=past, instance=instance, raise_on_error=False)
    assert not r.success
    (failure,) = [e for e in r.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "okta_hooks_replay" in failure.step_failure_data.error.message
    assert world.backend.buffer.depth("okta_hooks").messages == 5
    assert instance.get_materialized_partitions(dg.AssetKey("okta_hooks")) == set()
    # the current hour, or a sensor's drain, still drains
    assert run_drain(world, "okta_hooks", instance=instance).success
    assert world.backend.buffer.depth("okta_hooks").messages == 0


def test_a_materialize_of_the_current_hour_that_starts_in_the_next_one_still_drains(
    world, monkeypatch
) -> None:
    """A UI "Materialize" of the current hour clicked at 10:59:50 starts after 11:00
    once its task is up (ECS takes a minute): the hour it asked for was current when
    it was asked, so the drain runs instead of being refused as a past backfill."""
    import lip_dagster.components.webhook as component

    now_with_hour_left()
    deliver(world, world.sim.okta_deliveries(3, per_delivery=1))
    clicked = hour_of(datetime.now(UTC))

    class NextHour(datetime):
        @classmethod
        def now(cls, tz=None):  # the run starts an hour on: past the boundary
            return datetime.now(tz) + timedelta(hours=1)

    monkeypatch.setattr(component, "datetime", NextHour)
    instance = dg.DagsterInstance.ephemeral()
    job = world.defs.resolve_job_def("okta_hooks_drain")
    r = job.execute_in_process(partition_key=clicked, instance=instance, raise_on_error=False)
    assert r.success
    assert world.backend.buffer.depth("okta_hooks").messages == 0


def test_a_failed_landing_fails_the_run_and_loses_nothing(world, monkeypatch) -> None:
    deliver(world, world.sim.jamf_deliveries(12))

    def down(self: LocalLake, key: str, data: bytes) -> None:
        from lip_dagster.errors import LakeWriteError

        raise LakeWriteError(f"could not write lake object {key}: disk failure")

    with monkeypatch.context() as m:
        m.setattr(LocalLake, "put", down)
        failed = run_drain(world, "jamf")
    assert not failed.success
    assert world.backend.buffer.depth("jamf").messages == 12
    # the batch is hidden for its visibility timeout; a buffer past it sees it again
    from lip_dagster.state.sqlite import SqliteBuffer

    later = SqliteBuffer(world.home.state_db, clock=lambda: time.time() + 301)
    msgs = later.receive("jamf", 100, 300)
    assert len(msgs) == 12


@pytest.mark.parametrize("stop", ["lake-error", "run-terminated"])
def test_a_drain_failing_after_landing_records_only_hours_the_asset_has(
    world, monkeypatch, stop: str
) -> None:
    """Jamf's published sample (Elastic's fixture) is stamped 2024-09-02, before the
    source's first partition: it lands, and that hour is no partition of the asset. A
    drain that then fails (or is terminated from the UI: Dagster interrupts it with a
    BaseException) must record the hours it landed that are partitions, as a
    successful drain does, and no materialization of a partition the asset lacks."""
    from lip_dagster.errors import LakeWriteError
    from lip_dagster.lake.writer import LakeWriter
    from lip_dagster.webhook.message import encode
    from lip_dagster_tests.webhook.conftest import fixture

    now = datetime.now(UTC)
    (recent,) = world.sim.jamf_deliveries(1, start=now - timedelta(seconds=2), end=now)
    (later,) = world.sim.jamf_deliveries(1, start=now - timedelta(seconds=1), end=now)
    t = now.timestamp()
    # buffered in three arrival hours: the drain lands each with a write of its own
    bodies = encode("jamf", t - 7200, [fixture("jamf/webhook_computer_added.json")])
    bodies += encode("jamf", t - 3600, recent.events)
    bodies += encode("jamf", t, later.events)
    flush = world.backend.buffer.append("jamf", bodies)
    if flush is not None:
        flush()
    write = LakeWriter.write
    calls: list[int] = []

    def third_write_fails(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 3:
            if stop == "run-terminated":
                raise dg.DagsterExecutionInterruptedError()
            raise LakeWriteError("could not write lake object: disk failure")
        return write(self, *args, **kwargs)

    monkeypatch.setattr(LakeWriter, "write", third_write_fails)
    instance = dg.DagsterInstance.ephemeral()
    failed = run_drain(world, "jamf", instance=instance)
    assert not failed.success and len(calls) == 3
    assert instance.get_materialized_partitions(dg.AssetKey("jamf")) == {
        hour_of(datetime.fromtimestamp(recent.events[0]["webhook"]["eventTimestamp"] / 1000, UTC))
    }


def test_dead_letters_fail_their_check_and_the_replay_job_brings_them_back(
    world, monkeypatch
) -> None:
    monkeypatch.setenv("LIP_BUFFER_MAX_RECEIVES", "1")
    backend = EmbeddedBackend(Settings.from_env())
    deliver(world, world.sim.github_deliveries(3))
    backend.buffer.receive("github", 10, 0)
    backend.buffer.receive("github", 10, 0)  # a second receive dead-letters them
    assert backend.buffer.depth("github").dead_letters == 3
    drained = run_drain(world, "github")
    (check,) = [c for c in drained.get_asset_check_evaluations() if c.check_name == "dead_letters"]
    assert not check.passed and "github_replay" in (check.description or "")
    replayed = world.defs.resolve_job_def("github_replay").execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    assert replayed.success and replayed.output_for_node("github_redrive") == 3
    monkeypatch.delenv("LIP_BUFFER_MAX_RECEIVES")
    assert run_drain(world, "github").success
    assert len(lake_ids(world.home.lake_dir, "github")) == 3


def test_secrets_never_reach_run_logs_or_metadata(world) -> None:
    deliver(world, world.sim.okta_deliveries(20))
    result = run_drain(world, "okta_hooks")
    text = "\n".join(
        orjson.dumps(str(e.event_specific_data), default=str).decode() + (e.message or "")
        for e in result.all_events
    )
    for value in world.sim.credentials().values():
        assert value not in text
    for value in world.sim.credentials().values():
        assert value not in repr(world.backend.secrets)


def test_the_demo_delivers_every_vendor_and_each_source_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIP_HOME", str(tmp_path / "demo-home"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    settings = Settings.from_env()
    demo = start_webhook_demo(settings)
    try:
        lines = demo.summary_lines()
        assert demo.base_url in lines[0]
        assert demo.delivered["okta_hooks"] == {
            "requests": 14,
            "events": 140,
            "accepted": 14,
            "refused": 0,
            "redelivered": 20,
        }
        okta_line = next(line for line in lines if "okta_hooks" in line)
        assert "140 events, 20 of them sent twice on purpose" in okta_line
        assert demo.delivered["github"]["refused"] == 1 and demo.delivered["jamf"]["refused"] == 1
        totals = {source: drain_once(source) for source in demo.sources}
    finally:
        demo.stop()
    assert totals["okta_hooks"]["events"] == 120  # the two redeliveries were not buffered
    assert totals["github"]["events"] == 30 and totals["jamf"]["events"] == 30
    assert settings.secrets_file.stat().st_mode & 0o077 == 0  # merged secrets stay private


def test_drains_page_as_live_collection_and_a_ui_materialize_as_a_backfill(
    world, monkeypatch
) -> None:
    """The arrival sensor's drains are the source's live collection (``run|jamf``). A
    backfill of a past hour is refused by design (nothing to fetch, nothing lost) and
    pages nobody; a Materialize of the current hour from the UI that fails is a
    backfill (``backfill|jamf``), which the sensor's drains do not close."""
    from lip_dagster.alerts.health import declared_sources, source_health
    from lip_dagster.alerts.incidents import problems_of

    instance = dg.DagsterInstance.ephemeral()
    (spec,) = [s for s in declared_sources(world.defs.get_repository_def()) if s.name == "jamf"]

    def paging() -> list[str]:
        health = source_health(instance, spec, world.backend)
        return sorted(p.key for p in problems_of(health, time.time()) if p.kind != "check")

    def lake_down(self: LocalLake, key: str, data: bytes) -> None:
        from lip_dagster.errors import LakeWriteError

        raise LakeWriteError(f"could not write lake object {key}: disk failure")

    def ui(partition: str) -> dg.ExecuteInProcessResult:
        job = world.defs.resolve_implicit_job_def_def_for_assets([dg.AssetKey("jamf")])
        return job.execute_in_process(
            partition_key=partition,
            asset_selection=[dg.AssetKey("jamf")],
            instance=instance,
            raise_on_error=False,
        )

    (req,) = sensor_tick(world, "jamf", None, instance=instance).run_requests

    def sensor_drain() -> dg.ExecuteInProcessResult:
        return run_drain(world, "jamf", instance=instance, tags=req.tags)

    deliver(world, world.sim.jamf_deliveries(3))
    with monkeypatch.context() as m:
        m.setattr(LocalLake, "put", lake_down)
        assert not sensor_drain().success
    assert paging() == ["run|jamf"]
    assert not ui(hour_of(datetime.now(UTC) - timedelta(days=1))).success  # refused
    assert paging() == ["run|jamf"]
    assert sensor_drain().success
    assert paging() == []

    deliver(world, world.sim.jamf_deliveries(3))
    with monkeypatch.context() as m:
        m.setattr(LocalLake, "put", lake_down)
        assert not ui(hour_of(datetime.now(UTC))).success
    assert paging() == ["backfill|jamf"]
    assert sensor_drain().success  # the live collection is fine: still open
    assert not ui(hour_of(datetime.now(UTC) - timedelta(days=1))).success  # refused
    assert paging() == ["backfill|jamf"]
    health = source_health(instance, spec, world.backend)
    (problem,) = [p for p in problems_of(health, time.time()) if p.kind == "backfill"]
    assert "Materialize its current hour" in problem.message
    assert "could not write lake object" in problem.message
    assert ui(hour_of(datetime.now(UTC))).success
    assert paging() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("freshness_fail_minutes", 0),
        ("freshness_warn_minutes", 0),  # read as "no warning" while it says 0 minutes
        ("freshness_warn_minutes", -5),
        ("freshness_warn_minutes", 60),  # not before the 60-minute failure
        ("flush_age_seconds", -1),
        ("step_retries", -1),
    ],
)
def test_a_number_that_makes_no_sense_is_refused_as_the_yaml_loads_naming_it(
    field: str, value: int
) -> None:
    from lip_dagster.components.webhook import WebhookSource

    block = {"name": "hooks", "vendor": "github", "auth": {"type": "github", "secret": "s"}}
    with pytest.raises(Exception, match=field):
        WebhookSource.resolve_from_dict({**block, field: value})
    assert WebhookSource.resolve_from_dict(block)
