"""Fixtures for the production profiles: a real PostgreSQL server, a Dagster instance
built from ``deploy/ecs/dagster.yaml`` on it, and the project's code location loaded
the way the daemon loads it."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from .postgres import PostgresServer, PostgresUnavailable

REPO = Path(__file__).resolve().parents[2]
ECS_PROFILE = REPO / "deploy" / "ecs" / "dagster.yaml"
LOG = logging.getLogger("lip.tests.deploy")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One server per test process; each test gets its own database on it."""
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is required for these tests: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


def load_profile(path: Path = ECS_PROFILE, **replace: Any) -> dict[str, Any]:
    config = yaml.safe_load(path.read_text())
    config.update(replace)
    return config


def build_instance(home: Path, config: dict[str, Any]) -> dg.DagsterInstance:
    """An instance the way a deployment builds one: ``$DAGSTER_HOME/dagster.yaml``."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return dg.DagsterInstance.from_config(str(home))


@pytest.fixture(scope="session")
def dagster_template(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database holding Dagster's schema, created once and copied per test."""
    name = postgres.create_database("lip_dagster_template")
    saved = {k: os.environ.get(k) for k in postgres.env(name)}
    os.environ.update(postgres.env(name))
    try:
        from .launcher import CONFIG

        home = tmp_path_factory.mktemp("template-home")
        instance = build_instance(home, load_profile(run_launcher=CONFIG))
        instance.dispose()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return name


@pytest.fixture
def pg_db(postgres: PostgresServer, dagster_template: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database with Dagster's schema, named in the environment exactly as the
    ECS task definitions name it (``DAGSTER_PG_*``)."""
    name = postgres.create_database(f"t_{uuid.uuid4().hex[:12]}", template=dagster_template)
    for k, v in postgres.env(name).items():
        monkeypatch.setenv(k, v)
    return name


@pytest.fixture
def make_instance(pg_db: str, tmp_path: Path) -> Iterator[Callable[..., dg.DagsterInstance]]:
    made: list[dg.DagsterInstance] = []

    def make(**replace: Any) -> dg.DagsterInstance:
        instance = build_instance(tmp_path / f"dagster-home-{len(made)}", load_profile(**replace))
        made.append(instance)
        return instance

    yield make
    for instance in made:
        instance.dispose()


@contextmanager
def code_location(instance: dg.DagsterInstance) -> Iterator[Any]:
    """The project's definitions as a code location, in this process: what the
    daemon's scheduler, sensor and queue loops see through the code server."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="lip_dagster.definitions", working_directory=str(REPO)),
        location_name="lip",
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as context:
        entry = next(iter(context.create_request_context().get_code_location_entries().values()))
        assert entry.code_location is not None, entry.load_error
        yield context


def repository(context: Any) -> Any:
    location = context.create_request_context().get_code_location("lip")
    return location.get_repository("__repository__")


class Daemon:
    """One iteration at a time of the daemon's own loops (scheduler, sensors,
    backfills, run queue, freshness), at a chosen wall-clock time."""

    def __init__(self, context: Any) -> None:
        import dagster._daemon  # noqa: F401  (breaks an import cycle in dagster)

        self.context = context

    def schedules(self, at: datetime) -> None:
        from dagster._core.test_utils import freeze_time
        from dagster._scheduler.scheduler import launch_scheduled_runs

        with freeze_time(at):
            list(launch_scheduled_runs(self.context, LOG, at, iteration_times={}))

    def sensors(self, at: datetime) -> None:
        from dagster._core.test_utils import freeze_time
        from dagster._daemon.sensor import execute_sensor_iteration

        with freeze_time(at):
            list(execute_sensor_iteration(self.context, LOG, None, None))

    def backfills(self) -> None:
        from dagster._daemon.backfill import execute_backfill_iteration

        list(execute_backfill_iteration(self.context, LOG))

    def queue(self) -> None:
        from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
            QueuedRunCoordinatorDaemon,
        )

        with QueuedRunCoordinatorDaemon(interval_seconds=1) as daemon:
            list(daemon.run_iteration(self.context))

    def freshness(self, at: datetime) -> None:
        from dagster._core.test_utils import freeze_time
        from dagster._daemon.freshness import FreshnessDaemon

        with freeze_time(at), FreshnessDaemon() as daemon:
            list(daemon.run_iteration(self.context))
