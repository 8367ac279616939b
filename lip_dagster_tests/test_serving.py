"""A server bound first and served from a thread: it knows its port before its app
is built, answers once ``start`` returns, and gives the port back when stopped,
including when it could not start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from lip_dagster.errors import ServerStartError
from lip_dagster.serving import ThreadedServer, bind


def _config(app: Starlette) -> uvicorn.Config:
    return uvicorn.Config(app, log_level="warning", access_log=False)


def test_it_answers_once_started_and_frees_its_port_when_stopped() -> None:
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = Starlette(routes=[Route("/", lambda r: PlainTextResponse(f"on {port}"))])
    server = ThreadedServer(_config(app), sock, "test-server")
    server.start()
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == f"on {port}"
    finally:
        server.stop()
    server.stop()  # idempotent
    bind("127.0.0.1", port).close()  # the port is free again


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_server_that_cannot_start_says_so_and_frees_its_port() -> None:
    @asynccontextmanager
    async def broken(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("startup failed")
        yield

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = ThreadedServer(_config(Starlette(lifespan=broken)), sock, "broken-server")
    with pytest.raises(
        ServerStartError, match=f"broken-server did not start serving on port {port}"
    ) as err:
        server.start(timeout=5)
    assert "its startup failed" in str(err.value)
    bind("127.0.0.1", port).close()
