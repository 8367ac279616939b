"""Local servers in their own processes for tests, benchmarks and the soak: a free
port, and a moto server (the AWS-compatible stand-in) that competes with nothing in
the caller's interpreter."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from lip_dagster.errors import LipError

START_TIMEOUT_SECONDS = 30.0


class LocalServerError(LipError):
    """A local stand-in server did not come up."""


def free_port() -> int:
    """A port nothing listens on right now (the caller binds it soon after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_answering(
    proc: subprocess.Popen[bytes],
    url: str,
    what: str,
    *,
    timeout: float = START_TIMEOUT_SECONDS,
    hint: str = "",
) -> None:
    """Return once ``url`` answers HTTP at all (any status); ``LocalServerError`` if
    ``proc`` exits first or nothing answers within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            if proc.poll() is not None:
                raise LocalServerError(
                    f"{what} exited with status {proc.returncode} before answering{hint}"
                ) from None
            if time.monotonic() > deadline:
                raise LocalServerError(
                    f"{what} did not answer on {url} within {timeout:.0f} s{hint}"
                ) from None
            time.sleep(0.1)


@contextmanager
def moto_server(access_key: str = "testing", cpus: set[int] | None = None) -> Iterator[str]:
    """A moto server on 127.0.0.1 in a child process; its URL, stopped with the block.

    ``cpus``: the CPUs the server may run on (Linux), so a benchmark held to one CPU
    can give the server another one, as S3's own servers are nobody's CPU."""
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": access_key}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if cpus is not None:
            # set before the interpreter is up: the threads it starts inherit it
            os.sched_setaffinity(proc.pid, cpus)
        wait_until_answering(
            proc,
            url + "/moto-api/",
            "the local moto server",
            hint="; is moto[server] installed (pip install -e '.[dev]')?",
        )
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
