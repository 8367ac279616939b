"""Adapters against the local vendor simulator over real HTTP, landing in a real
embedded backend."""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from lip_dagster.config import Settings
from lip_dagster.demo import write_secrets
from lip_dagster.polling.base import BasePoller, PollerConfig
from lip_dagster.polling.http import HttpClient, RetryPolicy
from lip_dagster.resources import EmbeddedBackend
from lip_dagster.simulator import SimConfig, VendorSimulator
from lip_dagster.sources import poller_class

VENDOR_PREFIX = {
    "okta": "okta",
    "onepassword": "onepassword",
    "slack": "slack",
    "google_workspace": "google",
}


@pytest.fixture
def sim() -> Iterator[VendorSimulator]:
    with VendorSimulator(SimConfig(live_rate_per_s=0, history_hours=3, events_per_hour=300)) as s:
        yield s


@pytest.fixture
def backend(tmp_path: Path, sim: VendorSimulator) -> Iterator[EmbeddedBackend]:
    settings = Settings.from_env({"LIP_HOME": str(tmp_path / "home")})
    write_secrets(settings.secrets_file, sim.credentials())
    b = EmbeddedBackend(settings)
    yield b


class Harness:
    """Builds pollers as the component would, with retries that do not really sleep."""

    def __init__(self, sim: VendorSimulator, backend: EmbeddedBackend) -> None:
        self.sim = sim
        self.backend = backend
        self.slept: list[float] = []
        self._open: list[Any] = []

    def poller(
        self,
        adapter: str,
        *,
        max_attempts: int = 6,
        page_size: int = 100,
        options: dict[str, str] | None = None,
        endpoints: tuple[str, ...] | None = None,
        transport: httpx.BaseTransport | None = None,
        **cfg: Any,
    ) -> BasePoller:
        cls = poller_class(adapter)
        http = HttpClient(
            retry=RetryPolicy(max_attempts=max_attempts, base_delay=0.01),
            sleep=self.slept.append,
            seed=0,
            transport=transport,
        )
        writer = self.backend.writer()
        self._open += [http, writer]
        config = PollerConfig(
            source=adapter,
            base_url=f"{self.sim.base_url}/{VENDOR_PREFIX[adapter]}",
            endpoints=endpoints or cls.default_endpoints,
            page_size=page_size,
            options=options or {},
            **cfg,
        )
        return cls(
            config,
            http=http,
            secrets=self.backend.secrets,
            cursors=self.backend.cursors,
            writer=writer,
        )

    def lake_ids(self, source: str) -> Counter[str]:
        ids: Counter[str] = Counter()
        root = self.backend.settings.lake_dir / f"source={source}"
        for p in root.rglob("*.ndjson.gz"):
            for line in gzip.decompress(p.read_bytes()).splitlines():
                ids[orjson.loads(line)["_lip"]["id"]] += 1
        return ids

    def close(self) -> None:
        for o in self._open:
            o.close()


@pytest.fixture
def harness(sim: VendorSimulator, backend: EmbeddedBackend) -> Iterator[Harness]:
    h = Harness(sim, backend)
    yield h
    h.close()


@pytest.fixture
def ids_of() -> Callable[[list[dict[str, Any]], str], set[str]]:
    def ids(events: list[dict[str, Any]], field: str) -> set[str]:
        return {str(e[field]) for e in events}

    return ids


@pytest.fixture
def vendor_clock_follows_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests that move the poller's clock to make time pass: the simulator
    answers with its real Date, which would read as the vendor's clock lagging ours
    by hours. Here the vendor's clock is taken to be ours (no Date read)."""
    for module in ("slack", "google_workspace"):
        monkeypatch.setattr(f"lip_dagster.sources.{module}.vendor_time", lambda resp: None)
