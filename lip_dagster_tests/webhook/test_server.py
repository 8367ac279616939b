"""The receiver over real sockets (uvicorn, httptools + uvloop): a client that sends
its request slowly (Slowloris) is answered 408 and disconnected once the request
deadline passes, stores nothing, and holds no connection; vendors sending at normal
speed are not affected."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from lip_dagster.resources import EmbeddedBackend
from lip_dagster.simulator.webhooks import Delivery, WebhookSimulator
from lip_dagster.webhook.receiver import create_app
from lip_dagster.webhook.server import BackgroundServer

DEADLINE = 0.5


@pytest.fixture
def server(specs, backend: EmbeddedBackend, secrets) -> Iterator[BackgroundServer]:
    app = create_app(specs, buffer=backend.buffer, dedupe=backend.dedupe, secrets=secrets)
    with BackgroundServer(app, request_timeout=DEADLINE) as s:
        yield s


def request_bytes(d: Delivery, host: str) -> tuple[bytes, bytes]:
    """The delivery as HTTP/1.1: (request line and headers, body)."""
    lines = [f"{d.method} /webhooks/{d.source} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in d.headers.items() if k.lower() != "content-length"]
    lines.append(f"Content-Length: {len(d.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), d.body


def connect(server: BackgroundServer) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=10)
    return sock


def read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it did."""
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got, time.monotonic()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_a_request_trickling_its_body_is_answered_408_and_nothing_is_stored(
    server: BackgroundServer, backend: EmbeddedBackend, sim: WebhookSimulator
) -> None:
    (d,) = sim.jamf_deliveries(1)
    head, body = request_bytes(d, server.host)
    with connect(server) as sock:
        sock.sendall(head + body[:10])
        started = time.monotonic()
        for i in range(10, 14):  # a byte every 0.2 s: the connection never goes idle
            time.sleep(0.2)
            try:
                sock.sendall(body[i : i + 1])
            except OSError:
                break  # the server already closed it
        answer, closed = read_until_closed(sock)
    assert status_of(answer) == 408
    assert b"not received whole in time" in answer
    # this server's deadline, not the 10 s default (a loaded machine may be late)
    assert closed - started < 5
    assert backend.buffer.depth("jamf").messages == 0


def test_headers_that_never_end_and_a_silent_connection_are_both_closed(
    server: BackgroundServer,
) -> None:
    """Before, uvicorn kept both open for good: its keep-alive timer only runs between
    requests, and the app never sees a request whose headers are incomplete."""
    with connect(server) as partial, connect(server) as silent:
        partial.sendall(b"POST /webhooks/jamf HTTP/1.1\r\nHost: x\r\nContent-Type: app")
        answer, _ = read_until_closed(partial)
        assert status_of(answer) == 408
        assert read_until_closed(silent)[0].startswith(b"HTTP/1.1 408")


def test_vendors_sending_at_normal_speed_are_not_affected(
    specs, backend: EmbeddedBackend, secrets, sim: WebhookSimulator
) -> None:
    """The deadline is per request: a keep-alive connection carrying requests for
    longer than the deadline, each sent in pieces within it, has all of them
    accepted. Each request takes a small part of its deadline, so a slow machine
    cannot make a normal one late; a slow machine only makes the connection older."""
    deadline = 2.0
    app = create_app(specs, buffer=backend.buffer, dedupe=backend.dedupe, secrets=secrets)
    deliveries = sim.jamf_deliveries(4)
    with BackgroundServer(app, request_timeout=deadline) as server, connect(server) as sock:
        opened = time.monotonic()
        for d in deliveries:
            head, body = request_bytes(d, server.host)
            sock.sendall(head)
            time.sleep(0.05)  # the body in a second piece
            sock.sendall(body)
            answer = sock.recv(65536)
            assert status_of(answer) in (200, 204), answer
            time.sleep(0.6)  # idle between requests: keep-alive's business
        assert time.monotonic() - opened > deadline  # the connection outlived one deadline
    assert backend.buffer.depth("jamf").messages == len(deliveries)


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "soon"])
def test_the_request_timeout_option_refuses_what_is_not_a_duration(bad: str, capsys) -> None:
    from lip_dagster.cli import main

    with pytest.raises(SystemExit) as info:
        main(["webhook", "serve", "--request-timeout", bad])
    assert info.value.code == 2
    assert "is not a number of seconds" in capsys.readouterr().err
