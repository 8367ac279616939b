"""Webhook receiver throughput and end-to-end latency.

Throughput: requests/s and events/s of one uvicorn worker (httptools + uvloop, access
log off) serving the LIP receiver (auth, parse, dedupe, durable SQLite buffer: the
embedded backend) for 1-event and 100-event Okta Event Hook deliveries and 1-event
GitHub deliveries (HMAC-SHA256 over the body), against a bare Starlette handler
that only answers 200, same server settings, same bodies, same load generator, same
run. p50/p99 latency as the generator sees it. Each side runs ``LIP_BENCH_WEBHOOK_ROUNDS``
times (default 2), alternated, and its best round counts: the machine is shared,
and a neighbour's burst only ever slows a run down.

The load generator is a separate process: asyncio on uvloop over raw sockets, HTTP/1.1
keep-alive, 16 and then 64 requests in flight (and 256 for 1-event deliveries), every
request carrying new event ids (and, for GitHub, its own signature and delivery id) so
dedupe never short-cuts. It is checked not to be the bottleneck twice: its own CPU use
is reported per row, and a "load generator ceiling" row measures it against a minimal
raw-socket responder. With 100-event bodies (185 KB each) the bare handler, which never
reads a body, can still outrun the generator (its CPU column near 1.0 says so): the bare
figure of those rows is then the generator's limit, and their ratio an upper bound.
Those rows also run a third handler that only reads and parses the body
(``parse_only_*``): the ceiling of the ratio for any receiver that keeps its deliveries.

End to end: the receiver, ``dagster-daemon`` running the ``okta_hooks`` arrival
sensor and drain job with the default thresholds (30 s ticks, 500 messages or 60 s),
and a sender posting one event every half second for ``LIP_BENCH_E2E_SECONDS``
(default 150; 0 skips it). For each event: the time from its POST answer to the
first moment an object holding it is in the lake.

    python -m benchmarks.webhook            # all rows, printed
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import free_port, print_table
from lip_dagster.simulator.processes import LocalServerError, wait_until_answering

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = (16, 64)
# Many senders at once (a receiver fronting several organisations' hooks): 1-event
# deliveries only. 100-event bodies at this depth only measure queueing in the client.
MANY_CONNECTIONS = 256
ROUNDS = int(os.environ.get("LIP_BENCH_WEBHOOK_ROUNDS", "2"))
WARMUP_S = 1.0
MEASURE_S = 5.0
MARK = b"@@LIPID@@"
# Where each request's send time goes: Okta delivers events moments after they
# happen, so a delivery's events carry the current second, not a fixed template time.
TIME_MARK = b"@@LIPTIME@@"
OKTA_SECRET = "bench-okta-shared-secret"
GITHUB_SECRET = "bench-github-webhook-secret"
SECRETS_ENV = {
    "LIP_SECRET_OKTA_HOOKS_SHARED_SECRET": OKTA_SECRET,
    "LIP_SECRET_GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
    "LIP_SECRET_JAMF_WEBHOOK_AUTH": '{"Authorization": "bench"}',
}


# ------------------------------------------------------------------ servers


def _bare_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def ok(request: Request) -> Response:
        return Response(status_code=200)

    return Starlette(routes=[Route("/webhooks/{source}", ok, methods=["POST"])])


def _parse_app() -> Any:
    """The least any receiver that keeps what it is sent must do: read the body and
    parse it, then answer (no auth, no dedupe, nothing stored). Its rate against the
    bare handler's is the ceiling of that ratio for every receiver, LIP's included."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def parse(request: Request) -> Response:
        orjson.loads(await request.body())
        return Response(status_code=200)

    return Starlette(routes=[Route("/webhooks/{source}", parse, methods=["POST"])])


def _lip_app() -> Any:
    from lip_dagster.resources import backend_from_env
    from lip_dagster.webhook.receiver import app_for_backend

    backend = backend_from_env()
    for name in ("okta_hooks", "github"):
        backend.ensure_source(name)
    return app_for_backend(backend)


async def _ceiling_server(port: int) -> None:
    """The cheapest HTTP/1.1 responder asyncio can run: what the generator can drive."""
    reply = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"

    class Proto(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buf[:end].lower()
                i = head.find(b"content-length:")
                n = int(head[i + 15 :].split(b"\r\n", 1)[0]) if i >= 0 else 0
                if len(self.buf) < end + 4 + n:
                    return
                self.buf = self.buf[end + 4 + n :]
                self.t.write(reply)  # type: ignore[attr-defined]

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Proto, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def _serve(kind: str, port: int) -> None:
    import uvloop

    if kind == "ceiling":
        uvloop.run(_ceiling_server(port))
        return
    from lip_dagster.webhook.server import serve

    # both through the receiver's own uvicorn settings (httptools, uvloop, no access log)
    app = {"bare": _bare_app, "parse": _parse_app, "lip": _lip_app}[kind]()
    serve(app, "127.0.0.1", port, log_level="warning")


class Server:
    """A server in its own process (``python -m benchmarks.webhook --serve KIND``)."""

    def __init__(self, kind: str, env: dict[str, str]) -> None:
        self.port = free_port()
        # to a file, not a pipe nobody reads: a server that logs a lot must not block
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.webhook", "--serve", kind, str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        try:
            wait_until_answering(self.proc, f"http://127.0.0.1:{self.port}/", f"{kind} server")
        except LocalServerError as exc:
            self.proc.kill()
            self.proc.wait(timeout=5)
            self.log.seek(0)
            err = self.log.read().decode(errors="replace")
            self.log.close()
            raise RuntimeError(f"{exc}: {err[-2000:]}") from None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.log.close()


# ------------------------------------------------------------- load generator


def _scenario_templates(scenario: str) -> tuple[str, list[bytes], dict[str, str], int]:
    """(path, body split at the id marks, fixed headers, events per request)."""
    from datetime import UTC, datetime, timedelta

    from lip_dagster.simulator.generators import okta_events

    now = datetime.now(UTC)
    if scenario.startswith("okta"):
        n = int(scenario.split("-")[1])
        events = okta_events(n, now - timedelta(minutes=5), now, seed=n)
        for e in events:
            e["uuid"] = MARK.decode()
            e["published"] = TIME_MARK.decode()
        doc = {
            "eventType": "com.okta.event_hook",
            "eventTypeVersion": "1.0",
            "cloudEventsVersion": "0.1",
            "source": "https://example.okta.com/api/v1/eventHooks/whoBENCH",
            "eventId": "85b60edb-4263-4e13-993b-818e26201052",
            "data": {"events": events},
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "contentType": "application/json",
        }
        headers = {"Content-Type": "application/json", "Authorization": OKTA_SECRET}
        return "/webhooks/okta_hooks", orjson.dumps(doc).split(MARK), headers, n
    from lip_dagster.simulator.webhooks import WebhookSimulator

    d = WebhookSimulator(seed=5).github_deliveries(1)[0]
    headers = {
        k: v
        for k, v in d.headers.items()
        if k not in ("X-Hub-Signature", "X-Hub-Signature-256", "X-GitHub-Delivery")
    }
    return "/webhooks/github", [d.body], headers, 1


def _uid_prefix(worker: int, n: int) -> bytes:
    """The part of a UUID-shaped id naming the connection and its request; with
    ``_UID_SUFFIXES[i]`` after it, the id of event ``i`` of that request. Built once
    per request, so a 100-event body costs the generator 100 concatenations, not
    100 formatted ids (which made the generator, not the server, the limit)."""
    h = f"{worker:04x}{n:08x}"
    return f"{h[:8]}-{h[8:12]}-4000-8000-".encode()


_UID_SUFFIXES = [f"{i:012x}".encode() for i in range(1000)]
_STAMP: list[Any] = [0, b""]


def _stamp() -> bytes:
    """The current second as Okta writes it, made once a second."""
    now = int(time.time())
    if _STAMP[0] != now:
        _STAMP[0], _STAMP[1] = (
            now,
            time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now)).encode(),
        )
    return _STAMP[1]


async def _drive(
    port: int, scenario: str, connections: int, warmup: float, measure: float
) -> dict[str, Any]:
    path, parts, headers, per_request = _scenario_templates(scenario)
    github = scenario.startswith("github")
    key = GITHUB_SECRET.encode()
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
    head += b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    t_start = time.perf_counter()
    t_measure, t_end = t_start + warmup, t_start + warmup + measure
    done = 0

    # The template with the current second in it, rebuilt when the second changes:
    # a per-request substitution in 185 KB bodies would make the generator the limit.
    stamped: dict[str, Any] = {"at": None}

    def template() -> tuple[bytes, list[bytes]]:
        stamp = _stamp()
        if stamped["at"] != stamp:
            fixed = [p.replace(TIME_MARK, stamp) for p in parts]
            stamped["at"], stamped["head"] = stamp, fixed[0]
            stamped["tails"] = [s + p for s, p in zip(_UID_SUFFIXES, fixed[1:], strict=False)]
        return stamped["head"], stamped["tails"]

    async def conn(worker: int) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        n = 0
        while True:
            n += 1
            prefix = _uid_prefix(worker, n)
            if github:
                body = parts[0]
                uid = prefix + _UID_SUFFIXES[0]
                sig = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
                extra = b"X-GitHub-Delivery: " + uid + b"\r\nX-Hub-Signature-256: sha256=" + sig
                extra += b"\r\n"
            else:
                first, tails = template()
                body = first + b"".join([prefix + t for t in tails])
                extra = b""
            req = head + extra + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
            t0 = time.perf_counter()
            if t0 >= t_end:
                break
            writer.write(req + body)
            status_line = await reader.readuntil(b"\r\n\r\n")
            status = int(status_line[9:12])
            length = 0
            low = status_line.lower()
            i = low.find(b"content-length:")
            if i >= 0:
                length = int(low[i + 15 :].split(b"\r\n", 1)[0])
            if length:
                await reader.readexactly(length)
            t1 = time.perf_counter()
            if t0 >= t_measure:
                latencies.append(t1 - t0)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                done += 1
        writer.close()

    cpu0 = time.process_time()
    await asyncio.gather(*(conn(w) for w in range(connections)))
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - t_start
    latencies.sort()
    return {
        "requests": done,
        "requests_per_s": done / measure,
        "events_per_s": done * per_request / measure,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None,
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else None,
        "statuses": statuses,
        "loadgen_cpu": cpu / wall,
    }


def load(port: int, scenario: str, connections: int) -> dict[str, Any]:
    """Run the generator in its own process; its result."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.webhook",
            "--load",
            str(port),
            scenario,
            str(connections),
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=True,
    )
    return orjson.loads(out.stdout.splitlines()[-1])


# ------------------------------------------------------------------ throughput


def throughput_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    base_env = {**os.environ, **SECRETS_ENV, "LIP_BACKEND": "embedded"}
    ceiling_srv = Server("ceiling", base_env)
    try:
        ceiling = load(ceiling_srv.port, "okta-1", CONNECTIONS[0])
    finally:
        ceiling_srv.stop()
    scenarios = [
        (sc, f"{lbl}, {c} conn", c)
        for c in CONNECTIONS
        for sc, lbl in (
            ("okta-1", "webhook okta 1 event/POST"),
            ("okta-100", "webhook okta 100 events/POST"),
            ("github-1", "webhook github 1 event/POST HMAC"),
        )
    ]
    many = MANY_CONNECTIONS
    scenarios += [
        ("okta-1", f"webhook okta 1 event/POST, {many} conn", many),
        ("github-1", f"webhook github 1 event/POST HMAC, {many} conn", many),
    ]
    for scenario, label, connections in scenarios:
        # 100-event deliveries also run the parse-only handler: where reading and
        # parsing a body alone stays far under half the bare rate, no receiver can
        # reach it, and the row says so with that figure beside LIP's
        kinds = ("bare", "parse", "lip") if scenario == "okta-100" else ("bare", "lip")
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        for _ in range(ROUNDS):  # alternated, so both sides meet the same neighbours
            for kind in kinds:
                home = Path(tempfile.mkdtemp(prefix="lip-bench-webhook-"))
                srv = Server(kind, {**base_env, "LIP_HOME": str(home)})
                try:
                    runs[kind].append(load(srv.port, scenario, connections))
                finally:
                    srv.stop()
                    shutil.rmtree(home, ignore_errors=True)
        for got in runs["lip"]:
            if got["statuses"].get("204", 0) != got["requests"]:
                raise RuntimeError(f"{scenario}: the receiver refused requests: {got['statuses']}")
        # Best round of each side: on a shared machine, noise only ever slows a run.
        lip, bare = (max(runs[k], key=lambda r: r["requests_per_s"]) for k in ("lip", "bare"))
        rows.append(
            {
                "name": label,
                "events_per_s": lip["events_per_s"],
                "baseline_events_per_s": bare["events_per_s"],
                "ratio": lip["requests_per_s"] / bare["requests_per_s"],
                "requests_per_s": lip["requests_per_s"],
                "baseline_requests_per_s": bare["requests_per_s"],
                "p50_ms": lip["p50_ms"],
                "p99_ms": lip["p99_ms"],
                "baseline_p50_ms": bare["p50_ms"],
                "baseline_p99_ms": bare["p99_ms"],
                "loadgen_cpu": lip["loadgen_cpu"],
                "baseline_loadgen_cpu": bare["loadgen_cpu"],
                "connections": connections,
                "seconds": MEASURE_S,
                "rounds_requests_per_s": [r["requests_per_s"] for r in runs["lip"]],
                "rounds_baseline_requests_per_s": [r["requests_per_s"] for r in runs["bare"]],
                "target": "ratio >= 0.5 (requests/s vs bare Starlette), p99_ms < 100",
            }
        )
        if "parse" in runs:
            parse = max(runs["parse"], key=lambda r: r["requests_per_s"])
            rows[-1]["parse_only_requests_per_s"] = parse["requests_per_s"]
            rows[-1]["parse_only_ratio"] = parse["requests_per_s"] / bare["requests_per_s"]
            rows[-1]["vs_parse_only"] = lip["requests_per_s"] / parse["requests_per_s"]
    rows.append(
        {
            "name": "webhook load generator ceiling",
            "events_per_s": ceiling["events_per_s"],
            "requests_per_s": ceiling["requests_per_s"],
            "loadgen_cpu": ceiling["loadgen_cpu"],
            "target": "well above every baseline: the generator is not the bottleneck",
        }
    )
    return rows


# ------------------------------------------------------------------ end to end

E2E_DAGSTER_YAML = """
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 4
    tag_concurrency_limits:
      - key: lip/source
        value:
          applyLimitPerUniqueValue: true
        limit: 1
"""


def e2e_definitions() -> Any:
    """The code location ``dagster-daemon`` loads for the end-to-end row: the
    ``okta_hooks`` source as declared, nothing else."""
    import dagster as dg
    from dagster.components.core.component_tree import ComponentTree

    from lip_dagster.components.webhook import WebhookSource
    from lip_dagster.resources import backend_from_env
    from lip_dagster.webhook.spec import load_specs

    spec = load_specs()["okta_hooks"]
    component = WebhookSource.model_validate(spec.model_dump())
    built = component.build_defs(ComponentTree.for_test().load_context)
    return dg.Definitions.merge(built, dg.Definitions(resources={"lip": backend_from_env()}))


def _lake_watch(root: Path, seen: dict[str, float], stop: threading.Event) -> None:
    known: set[Path] = set()
    while not stop.is_set():
        for p in root.glob("source=okta_hooks/**/*.ndjson.gz"):
            if p in known:
                continue
            known.add(p)
            t = time.time()
            for line in gzip.decompress(p.read_bytes()).splitlines():
                seen.setdefault(orjson.loads(line)["_lip"]["id"], t)
        stop.wait(0.25)


def e2e_row(seconds: float) -> dict[str, Any]:
    from datetime import UTC, datetime

    from lip_dagster.config import Settings
    from lip_dagster.resources import backend_from_settings
    from lip_dagster.simulator.generators import okta_events
    from lip_dagster.simulator.webhooks import WebhookSimulator
    from lip_dagster.webhook.receiver import app_for_backend
    from lip_dagster.webhook.server import BackgroundServer
    from lip_dagster.webhook.spec import load_specs

    work = Path(tempfile.mkdtemp(prefix="lip-bench-e2e-"))
    home, dagster_home = work / "home", work / "dagster"
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text(E2E_DAGSTER_YAML)
    sim = WebhookSimulator(seed=9)
    env = {
        **os.environ,
        "LIP_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "LIP_SCHEDULES_ON": "1",
        "LIP_BACKEND": "embedded",
    }
    from lip_dagster.state.local_secrets import secret_env_var

    env.update({secret_env_var(k): v for k, v in sim.credentials().items()})
    settings = Settings.from_env(env)
    backend = backend_from_settings(settings)
    backend.ensure_source("okta_hooks")
    daemon = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-daemon"),
            "run",
            "-m",
            "benchmarks.webhook",
            "-a",
            "e2e_definitions",
            "-d",
            str(ROOT),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    old = {k: os.environ.get(k) for k in env if k.startswith("LIP_SECRET_")}
    os.environ.update({k: v for k, v in env.items() if k.startswith("LIP_SECRET_")})
    posted: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_lake_watch, args=(settings.lake_dir, seen, stop))
    watcher.start()
    try:
        specs = {"okta_hooks": load_specs()["okta_hooks"]}
        with BackgroundServer(app_for_backend(backend, specs)) as server:
            end = time.monotonic() + seconds
            i = 0
            while time.monotonic() < end:
                now = datetime.now(UTC)
                (event,) = okta_events(1, now.replace(microsecond=0), now, seed=i)
                d = sim.okta_delivery([event])
                (status,) = sim.send(server.base_url, [d], concurrency=1)
                if status == 204:
                    posted[event["uuid"]] = time.time()
                i += 1
                time.sleep(0.5)
            deadline = time.monotonic() + 400
            while time.monotonic() < deadline and not set(posted) <= set(seen):
                time.sleep(1)
    finally:
        stop.set()
        watcher.join()
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(work, ignore_errors=True)
    lat = sorted(seen[k] - t for k, t in posted.items() if k in seen)
    missing = len(posted) - len(lat)
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [float("nan")] * 99
    return {
        "name": "webhook end to end, POST -> lake (defaults)",
        "events": len(posted),
        "missing": missing,
        "p50_s": q[49],
        "p95_s": q[94],
        "max_s": lat[-1] if lat else None,
        "seconds": seconds,
        "target": "p95_s < 180, missing == 0",
    }


# ------------------------------------------------------------------ entry points


def run() -> list[dict[str, Any]]:
    rows = throughput_rows()
    seconds = float(os.environ.get("LIP_BENCH_E2E_SECONDS", "150"))
    if seconds > 0:
        rows.append(e2e_row(seconds))
    return rows


def main(argv: list[str]) -> int:
    if argv[:1] == ["--serve"]:
        _serve(argv[1], int(argv[2]))
        return 0
    if argv[:1] == ["--load"]:
        import uvloop

        result = uvloop.run(_drive(int(argv[1]), argv[2], int(argv[3]), WARMUP_S, MEASURE_S))
        print(orjson.dumps(result).decode())
        return 0
    rows = run()
    print_table(rows)
    for r in rows:
        extra = {k: v for k, v in r.items() if k not in ("name", "target")}
        print(r["name"], orjson.dumps(extra, default=str).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
