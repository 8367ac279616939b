"""Shared fixtures: a real moto server on 127.0.0.1 reached over HTTP with boto3, and an
isolated LIP_HOME per test."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from lip_dagster.config import Settings
from lip_dagster.demo import demo_env, write_secrets
from lip_dagster.simulator import SimConfig, VendorSimulator
from lip_dagster.simulator.processes import free_port
from lip_dagster.state.aws import DynamoDedupeStore
from lip_dagster.state.base import DedupeStore
from lip_dagster.state.sqlite import SqliteDedupeStore

AWS_REGION = "us-east-1"


def aws_settings(endpoint: str, home: Path, run: str) -> Settings:
    """The AWS backend's settings against the local server, every name carrying
    ``run`` so tests sharing the server never see each other's buckets and keys:
    bucket ``lake-<run>-<source>``, key alias ``alias/lip-<run>-<source>``."""
    return Settings.from_env(
        {
            "LIP_HOME": str(home),
            "LIP_BACKEND": "aws",
            "LIP_AWS_REGION": AWS_REGION,
            "LIP_AWS_ENDPOINT_URL": endpoint,
            "LIP_S3_BUCKET": f"lake-{run}-{{source}}",
            "LIP_KMS_KEY": f"alias/lip-{run}-{{source}}",
            "LIP_AWS_RESOURCE_PREFIX": f"lip-{run}-",
        }
    )


class ShortPollSampling:
    """An SQS client whose short polls find nothing, as SQS's may. A short poll
    (``WaitTimeSeconds`` 0) asks only a sample of the SQS hosts, so it can answer
    empty while the queue holds messages, most often when it holds few; a long poll
    asks every host (AWS, "Amazon SQS short and long polling"). moto always answers
    from the whole queue, so this stands in for the sampling: long polls and every
    other call go to the real client."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def receive_message(self, **request: Any) -> dict[str, Any]:
        if not request.get("WaitTimeSeconds"):
            return {}
        return dict(self._client.receive_message(**request))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class _AtomicDynamoDB:
    """DynamoDB applies each conditional write atomically; moto checks the condition
    and then writes, without a lock, so two concurrent requests can both pass the
    check (two writers of one cursor version both "won" under load). Serializing
    DynamoDB requests gives the compare-and-set tests the service's semantics; other
    services (an SQS long poll) still run concurrently."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with self.lock:
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server for the whole test session, in server mode over HTTP."""
    app = _AtomicDynamoDB(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", free_port(), app, True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Credentials and region for boto3 against the local server only."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", AWS_REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_endpoint


@pytest.fixture
def boto_session(aws_env: str) -> boto3.session.Session:
    return boto3.session.Session(region_name=AWS_REGION)


def store_of_backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite: Callable[[Path], Any],
    dynamo: Callable[..., Any],
) -> tuple[Any, str]:
    """The store of the backend ``request.param`` names (``sqlite``: in ``tmp_path``;
    ``dynamodb``: on the moto server, its table created), and a source name of its
    own. A fixture parametrized over both backends yields it and closes it."""
    source = f"t{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        return sqlite(tmp_path / "state.db"), source
    store = dynamo(
        session=request.getfixturevalue("boto_session"),
        endpoint_url=request.getfixturevalue("moto_endpoint"),
    )
    store.ensure(source)
    return store, source


@pytest.fixture(params=["sqlite", "dynamodb"])
def dedupe_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[DedupeStore, str]]:
    """A dedupe store of each backend (DynamoDB on the moto server), and a source name
    of its own."""
    dedupe, source = store_of_backend(request, tmp_path, SqliteDedupeStore, DynamoDedupeStore)
    yield dedupe, source
    dedupe.close()


@pytest.fixture
def lip_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "lip-home"
    home.mkdir()
    monkeypatch.setenv("LIP_HOME", str(home))
    return home


@pytest.fixture
def demo_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[VendorSimulator]:
    """The simulator plus the environment a deployment would set, pointed at it."""
    home = tmp_path / "home"
    monkeypatch.setenv("LIP_HOME", str(home))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with VendorSimulator(SimConfig(live_rate_per_s=0, history_hours=3, events_per_hour=120)) as sim:
        for k, v in demo_env(sim.base_url).items():
            monkeypatch.setenv(k, v)
        write_secrets(Settings.from_env().secrets_file, sim.credentials())
        yield sim


def all_tables(ddb: object) -> list[str]:
    """Every table name: ListTables pages at 100, and the shared test server holds more."""
    names: list[str] = []
    for page in ddb.get_paginator("list_tables").paginate():  # type: ignore[attr-defined]
        names += page["TableNames"]
    return names


def all_secrets(sm: object) -> list[str]:
    names: list[str] = []
    for page in sm.get_paginator("list_secrets").paginate():  # type: ignore[attr-defined]
        names += [s["Name"] for s in page["SecretList"]]
    return names
