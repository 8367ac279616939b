"""Vendor objects built from the recorded fixtures, and backends to land them in."""

from __future__ import annotations

import copy
import gzip
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from lip_dagster.config import Settings
from lip_dagster.resources import EmbeddedBackend

FIXTURES = Path(__file__).parent.parent / "fixtures"
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def fixture(path: str) -> Any:
    return orjson.loads((FIXTURES / path).read_bytes())


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def cloudtrail_records(n: int, start: datetime = T0, seed: int = 0) -> list[dict[str, Any]]:
    """The recorded ConsoleLogin record, re-stamped: unique eventIDs, a minute apart."""
    (base,) = fixture("cloudtrail/console_login.json")["Records"]
    out = []
    for i in range(n):
        rec = copy.deepcopy(base)
        rec["eventID"] = str(uuid.UUID(int=(seed << 64) + i))
        rec["eventTime"] = iso(start + timedelta(minutes=i))
        out.append(rec)
    return out


def github_events(n: int, start: datetime = T0, seed: int = 0) -> list[dict[str, Any]]:
    base = fixture("github_stream/audit_event.json")
    out = []
    for i in range(n):
        ev = copy.deepcopy(base)
        ms = int((start + timedelta(minutes=i)).timestamp() * 1000)
        ev["@timestamp"] = ev["created_at"] = ms
        ev["_document_id"] = f"doc-{seed}-{i}"
        out.append(ev)
    return out


def cloudflare_audit(n: int, start: datetime = T0, seed: int = 0) -> list[dict[str, Any]]:
    base = fixture("cloudflare/audit_log.json")
    out = []
    for i in range(n):
        ev = copy.deepcopy(base)
        ev["ID"] = str(uuid.UUID(int=(seed << 64) + i))
        ev["When"] = iso(start + timedelta(minutes=i))
        out.append(ev)
    return out


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1)


def ndjson(events: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def trail_file(records: list[dict[str, Any]]) -> bytes:
    return gz(orjson.dumps({"Records": records}))


def lake_records(home: Path, source: str) -> list[dict[str, Any]]:
    out = []
    for p in sorted((home / "lake").rglob(f"source={source}/**/*.ndjson.gz")):
        out.extend(orjson.loads(x) for x in gzip.decompress(p.read_bytes()).splitlines())
    return out


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("LIP_HOME", str(h))
    monkeypatch.delenv("LIP_BACKEND", raising=False)
    return h


@pytest.fixture
def embedded(home: Path) -> Iterator[EmbeddedBackend]:
    yield EmbeddedBackend(Settings.from_env({"LIP_HOME": str(home)}))
