from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from lip_dagster.lake.backends import LocalLake
from lip_dagster.lake.envelope import EventIdentity
from lip_dagster.lake.identity_keys import event_key
from lip_dagster.lake.writer import LakeWriter
from lip_dagster.resources import AwsBackend
from lip_dagster.state.base import DedupeKey, DedupeStore
from lip_dagster.state.sqlite import SqliteDedupeStore
from lip_dagster_tests.conftest import aws_settings

FIXTURES = Path(__file__).parent.parent / "fixtures"
OKTA = EventIdentity(id_fields=("uuid",), time_field="published")


def keys_of(events: list[dict[str, Any]], dedupe: DedupeStore) -> list[DedupeKey]:
    """The keys the writer claims for these Okta events in ``dedupe``."""
    return [event_key(e, OKTA, dedupe.key_resolution).dedupe_key for e in events]


def okta_events(n: int, start: datetime, step: timedelta, seed: int = 0) -> list[dict[str, Any]]:
    """The recorded Okta event, re-stamped: unique uuids, spread timestamps."""
    base = orjson.loads((FIXTURES / "lake" / "okta_event.json").read_bytes())
    out = []
    for i in range(n):
        ev = copy.deepcopy(base)
        ev["uuid"] = str(uuid.UUID(int=(seed << 64) + i))
        t = start + step * i
        ev["published"] = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
        out.append(ev)
    return out


@pytest.fixture
def make_events() -> Callable[..., list[dict[str, Any]]]:
    def make(
        n: int,
        start: datetime = datetime(2026, 3, 1, 10, 0, tzinfo=UTC),
        step: timedelta = timedelta(seconds=10),
        seed: int = 0,
    ) -> list[dict[str, Any]]:
        return okta_events(n, start, step, seed)

    return make


@pytest.fixture
def lake(tmp_path: Path) -> LocalLake:
    return LocalLake(tmp_path / "lake", tmp_path / "tmp")


@pytest.fixture
def dedupe(tmp_path: Path) -> Iterator[SqliteDedupeStore]:
    store = SqliteDedupeStore(tmp_path / "state.db")
    yield store
    store.close()


@pytest.fixture
def writer(lake: LocalLake, dedupe: SqliteDedupeStore) -> Iterator[LakeWriter]:
    w = LakeWriter(lake, dedupe)
    yield w
    w.close()


@pytest.fixture
def aws_backend(aws_env: str, tmp_path: Path) -> Iterator[tuple[AwsBackend, str, dict[str, str]]]:
    """The AWS backend against the local server: for ``okta`` and ``slack`` a bucket
    and a KMS key of their own, named per test; yields (backend, run id, key ids)."""
    run = uuid.uuid4().hex[:8]
    b = AwsBackend(aws_settings(aws_env, tmp_path, run))
    s3, kms = b.client("s3"), b.client("kms")
    keys = {}
    for source in ("okta", "slack"):
        s3.create_bucket(Bucket=f"lake-{run}-{source}")
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=f"alias/lip-{run}-{source}", TargetKeyId=key_id)
        keys[source] = key_id
        b.ensure_source(source)
    yield b, run, keys
