"""Serving the receiver with uvicorn: in the foreground (``lip webhook serve``) or in
a background thread (the demo and tests).

uvicorn runs its httptools parser on a uvloop event loop (both installed with
``uvicorn[standard]``): about twice the requests per second of the pure-Python h11
stack on the same worker (DESIGN §10). One worker per process; run more processes
behind a load balancer (the receiver keeps no state between requests).
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import socket
from types import TracebackType
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from lip_dagster.errors import ServerStartError
from lip_dagster.serving import ThreadedServer, bind
from lip_dagster.webhook.spec import DEFAULT_REQUEST_TIMEOUT

__all__ = ["DEFAULT_REQUEST_TIMEOUT", "BackgroundServer", "listen", "serve"]

log = logging.getLogger(__name__)

_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 44\r\nconnection: close\r\n\r\n"
    b"the request was not received whole in time\r\n"
)


class _DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for receiving each request.

    uvicorn has none: its keep-alive timer runs only between requests and restarts on
    every byte, and the ASGI app runs only once the headers are in. A client sending
    a byte every few seconds (Slowloris) therefore held a connection, and a body
    buffer of up to ``max_body_bytes``, for as long as it liked, and a few thousand
    such clients exhausted the receiver's sockets while vendors were refused. The
    deadline is armed when a connection opens and when a request begins, disarmed
    once the request is whole; at expiry the client gets a 408 (if no answer was
    started) and the connection is closed. The app then reads a disconnect: nothing
    of the request is stored. One timer per request: about a microsecond."""

    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.info(
            "closed %s: its request was not received whole in %gs", client, self.request_timeout
        )
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            self.transport.write(_TIMED_OUT)
        self.transport.close()


def _protocol(request_timeout: float) -> type[_DeadlineProtocol]:
    if not request_timeout > 0:
        raise ValueError(
            f"request timeout must be a positive number of seconds, not {request_timeout!r}"
        )
    return type("DeadlineProtocol", (_DeadlineProtocol,), {"request_timeout": request_timeout})


def _config(
    app: ASGIApp,
    *,
    access_log: bool,
    log_level: str,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> uvicorn.Config:
    http: Any = _protocol(request_timeout)
    return uvicorn.Config(
        app,
        loop="uvloop",
        http=http,
        access_log=access_log,
        log_level=log_level,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=5,
    )


def listen(host: str, port: int) -> socket.socket:
    """The receiver's listening socket, bound before anything is printed or built: a
    port already in use is one sentence naming the address, not uvicorn's bind
    error after it announced a startup (and after URLs vendors would be pointed at)."""
    try:
        return bind(host, port)
    except OSError as exc:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        why = (
            "the address is already in use (another receiver, or another program, "
            "listens there): stop it or choose another --port"
            if exc.errno == errno.EADDRINUSE
            else (exc.strerror or str(exc))
        )
        raise ServerStartError(f"cannot serve on {shown}: {why}") from None


def serve(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    sock: socket.socket | None = None,
    access_log: bool = False,
    log_level: str = "info",
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> None:
    """Serve until interrupted, on ``sock`` if given (bound by ``listen``; ``host``
    and ``port`` then only name it in uvicorn's log). The access log (off by
    default) shows method, path and status, never headers."""
    config = _config(
        app, access_log=access_log, log_level=log_level, request_timeout=request_timeout
    )
    config.host, config.port = host, port
    # Everything loaded so far lives as long as the process: keep it out of the
    # cyclic collector's passes. A delivery's parsed JSON has no cycles and dies by
    # reference counting when its request ends, so collecting less often means it
    # is mostly gone before a pass, instead of being scanned (and promoted) while
    # the request waits for its commit.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    uvicorn.Server(config).run(sockets=None if sock is None else [sock])


class BackgroundServer:
    """The receiver on ``127.0.0.1`` in a daemon thread; ``port=0`` picks a free one."""

    def __init__(
        self,
        app: ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.request_timeout = request_timeout
        self._served: ThreadedServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        sock = bind(self.host, self.port)
        self._served = ThreadedServer(
            _config(
                self.app,
                access_log=False,
                log_level="warning",
                request_timeout=self.request_timeout,
            ),
            sock,
            "lip-webhook-receiver",
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
