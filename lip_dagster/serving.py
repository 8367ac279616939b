"""uvicorn from a daemon thread on a socket bound first: the webhook receiver in the
demo and tests, and the vendor simulator. Binding first lets an app know its own
address (``port=0`` picks a free one) before it is built."""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn

from lip_dagster.errors import ServerStartError

__all__ = ["ThreadedServer", "bind"]

log = logging.getLogger(__name__)


def bind(host: str, port: int, backlog: int = 256) -> socket.socket:
    """A listening, non-blocking socket on ``host:port`` (``port=0`` picks a free
    one), bound before the app is built so the app can know its own address."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class ThreadedServer:
    """uvicorn serving an already bound socket from a daemon thread: the receiver
    in the demo and tests, and the vendor simulator."""

    def __init__(self, config: uvicorn.Config, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._stopped = False
        self._failure: SystemExit | None = None

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self.sock])
        except SystemExit as exc:
            # uvicorn exits with SystemExit(3) when the app's startup fails: in a
            # thread that would only print a traceback nobody reads. start() reports
            # it; after start, it is logged.
            self._failure = exc
            if self._server.started:
                log.error("%s stopped serving: %r", self._thread.name, exc)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self, timeout: float = 10.0) -> None:
        """Serve, returning once uvicorn is accepting connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                name, port = self._thread.name, self.port
                self.stop()
                why = (
                    f"its startup failed ({self._failure!r}; the log above says why)"
                    if self._failure is not None
                    else f"no answer within {timeout:.0f} s"
                )
                raise ServerStartError(f"{name} did not start serving on port {port}: {why}")
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop serving (in-flight requests finish) and release the port; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.sock.close()
