"""Serving the receiver with uvicorn: in the foreground (``lip webhook serve``) or in
a background thread (the demo and tests).

uvicorn runs its httptools parser on a uvloop event loop (both installed with
``uvicorn[standard]``): about twice the requests per second of the pure-Python h11
stack on the same worker (DESIGN §10). One worker per process; run more processes
behind a load balancer (the receiver keeps no state between requests).
"""

from __future__ import annotations

import gc
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

from lip_dagster.serving import ThreadedServer, bind

__all__ = ["BackgroundServer", "serve"]


def _config(app: ASGIApp, *, access_log: bool, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        access_log=access_log,
        log_level=log_level,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=5,
    )


def serve(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    access_log: bool = False,
    log_level: str = "info",
) -> None:
    """Serve until interrupted. The access log (off by default) shows method, path
    and status, never headers."""
    config = _config(app, access_log=access_log, log_level=log_level)
    config.host, config.port = host, port
    # Everything loaded so far lives as long as the process: keep it out of the
    # cyclic collector's passes. A delivery's parsed JSON has no cycles and dies by
    # reference counting when its request ends, so collecting less often means it
    # is mostly gone before a pass, instead of being scanned (and promoted) while
    # the request waits for its commit.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    uvicorn.Server(config).run()


class BackgroundServer:
    """The receiver on ``127.0.0.1`` in a daemon thread; ``port=0`` picks a free one."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._served: ThreadedServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        sock = bind(self.host, self.port)
        self._served = ThreadedServer(
            _config(self.app, access_log=False, log_level="warning"), sock, "lip-webhook-receiver"
        )
        self.port = self._served.port
        self._served.start()
        return self

    def stop(self) -> None:
        """Stop serving (in-flight requests finish) and release the port; idempotent."""
        served, self._served = self._served, None
        if served is not None:
            served.stop()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
