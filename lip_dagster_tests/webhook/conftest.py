from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette

from lip_dagster.config import Settings
from lip_dagster.resources import EmbeddedBackend
from lip_dagster.simulator.webhooks import WebhookSimulator
from lip_dagster.state.base import SecretStore
from lip_dagster.webhook.receiver import create_app
from lip_dagster.webhook.spec import WebhookSourceSpec, load_specs

FIXTURES = Path(__file__).parent.parent / "fixtures"
SOURCES = ("okta_hooks", "github", "jamf")


def fixture(path: str) -> Any:
    return orjson.loads((FIXTURES / path).read_bytes())


def fixture_bytes(path: str) -> bytes:
    return (FIXTURES / path).read_bytes()


class MemorySecrets(SecretStore):
    """Secrets held in a dict; counts how often the backing store is read."""

    def __init__(self, values: dict[str, str], ttl_seconds: float = 300.0) -> None:
        super().__init__(ttl_seconds)
        self.values = dict(values)
        self.fetches = 0

    def _fetch(self, name: str) -> str:
        from lip_dagster.errors import SecretNotFound

        self.fetches += 1
        if name not in self.values:
            raise SecretNotFound(f"secret {name!r} not found")
        return self.values[name]


@pytest.fixture
def sim() -> WebhookSimulator:
    return WebhookSimulator(seed=7)


@pytest.fixture
def specs() -> dict[str, WebhookSourceSpec]:
    return {k: v for k, v in load_specs().items() if k in SOURCES}


@pytest.fixture
def backend(lip_home: Path) -> Iterator[EmbeddedBackend]:
    b = EmbeddedBackend(Settings.from_env())
    for name in SOURCES:
        b.ensure_source(name)
    yield b
    for store in (b.buffer, b.dedupe, b.cursors):
        store.close()


@pytest.fixture
def secrets(sim: WebhookSimulator) -> MemorySecrets:
    return MemorySecrets(sim.credentials())


@pytest.fixture
def app(
    specs: dict[str, WebhookSourceSpec], backend: EmbeddedBackend, secrets: MemorySecrets
) -> Starlette:
    return create_app(specs, buffer=backend.buffer, dedupe=backend.dedupe, secrets=secrets)


class Client:
    """httpx over ``ASGITransport`` on one event loop, called synchronously."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://receiver.test"
        )

    def run(self, coro: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.run(self.http.request(method, path, **kw))

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def gather(self, calls: list[Callable[[], Awaitable[httpx.Response]]]) -> list[httpx.Response]:
        async def all_of() -> list[httpx.Response]:
            return list(await asyncio.gather(*(c() for c in calls)))

        return self.run(all_of())

    def flush_marks(self) -> None:
        """Let the receiver write its coalesced ``accepted`` marks now."""
        self.run(self.app.state.receiver.intake.flush_marks())

    def close(self) -> None:
        self.flush_marks()
        self.run(self.http.aclose())
        self.loop.close()


@pytest.fixture
def client(app: Starlette) -> Iterator[Client]:
    c = Client(app)
    yield c
    c.close()
    app.state.receiver.intake.close()
