"""A local stub that records what notifiers send it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest


class Stub:
    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []
        self.fail_next = 0
        self.lock = threading.Lock()
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with stub.lock:
                    if stub.fail_next:
                        stub.fail_next -= 1
                        self.send_response(500)
                        self.end_headers()
                        return
                    stub.received.append((self.path, orjson.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        return H

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()
    yield s
    s.close()
