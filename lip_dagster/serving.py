"""uvicorn from a daemon thread on a socket bound first: the webhook receiver in the
demo and tests, and the vendor simulator. Binding first lets an app know its own
address (``port=0`` picks a free one) before it is built."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

__all__ = ["ThreadedServer", "bind"]


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
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=name, daemon=True
        )
        self._stopped = False

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
                raise RuntimeError(f"{name} did not start serving on port {port}")
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
