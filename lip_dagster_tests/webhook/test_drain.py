"""The drain: buffer -> lake exactly once, whatever fails or dies in between; poison
to quarantine; a batch that keeps failing to the dead-letter queue and back."""

from __future__ import annotations

import gzip
import logging
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from lip_dagster.errors import LakeWriteError, StateError
from lip_dagster.lake.backends import LocalLake, LocalQuarantine
from lip_dagster.lake.identity_keys import event_key
from lip_dagster.lake.writer import LakeWriter
from lip_dagster.resources import EmbeddedBackend
from lip_dagster.simulator.webhooks import Delivery, WebhookSimulator
from lip_dagster.state.base import Buffer, DedupeKey
from lip_dagster.state.sqlite import SqliteBuffer, SqliteDedupeStore
from lip_dagster.webhook.arrival import ArrivalState, Thresholds, decide
from lip_dagster.webhook.drain import DrainConfig, Drainer, replay
from lip_dagster.webhook.message import encode
from lip_dagster.webhook.receiver import create_app
from lip_dagster.webhook.vendors import JAMF_IDENTITY, OKTA_EVENT_IDENTITY
from lip_dagster_tests.conftest import ShortPollSampling

from .conftest import Client, fixture

T0 = 1_780_000_000.0  # a fixed "now" for buffers whose visibility timeouts tests control


class Crash(Exception):
    """Stands in for the process dying at that line."""


def lake_lines(root: Path, source: str | None = None) -> list[dict]:
    out = []
    pattern = f"source={source}/**/*.ndjson.gz" if source else "**/*.ndjson.gz"
    for p in root.glob(pattern):
        out += [orjson.loads(x) for x in gzip.decompress(p.read_bytes()).splitlines()]
    return out


def lake_ids(root: Path, source: str | None = None) -> Counter[str]:
    return Counter(rec["_lip"]["id"] for rec in lake_lines(root, source))


def deliver(client: Client, deliveries: Sequence[Delivery]) -> None:
    for d in deliveries:
        r = client.post(f"/webhooks/{d.source}", headers=d.headers, content=d.body)
        assert r.status_code in (200, 204), r.text


def drainer(
    backend: EmbeddedBackend,
    specs,
    source: str,
    *,
    buffer: Buffer | None = None,
    lake: LocalLake | None = None,
    dedupe: SqliteDedupeStore | None = None,
    batch: int = 100,
    vt: float = 300.0,
) -> tuple[Drainer, LakeWriter]:
    writer = LakeWriter(lake or backend.lake, dedupe or backend.dedupe)
    cfg = DrainConfig.from_spec(specs[source])
    cfg = DrainConfig(cfg.source, cfg.identity, batch, vt, 60.0)
    d = Drainer(cfg, buffer=buffer or backend.buffer, writer=writer, quarantine=backend.quarantine)
    return d, writer


def clocked_buffer(backend: EmbeddedBackend, now: list[float]) -> SqliteBuffer:
    return SqliteBuffer(backend.settings.state_db, clock=lambda: now[0], max_receives=3)


# ------------------------------------------------------------------ landing


def test_each_vendor_lands_in_its_hours_and_leaves_the_buffer(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend, specs
) -> None:
    okta = sim.okta_deliveries(60, per_delivery=20)
    github = sim.github_deliveries(5)
    jamf = [sim.jamf_delivery(fixture("jamf/webhook_computer_added.json"))]
    deliver(client, okta + github + jamf)
    root = backend.settings.lake_dir
    for source in ("okta_hooks", "github", "jamf"):
        d, w = drainer(backend, specs, source)
        report = d.run()
        w.close()
        assert report.error is None and report.stopped == "empty"
        assert backend.buffer.depth(source).messages == 0
    okta_lines = lake_lines(root, "okta_hooks")
    assert {r["uuid"] for r in okta_lines} == {e["uuid"] for d in okta for e in d.events}
    assert all(r["_lip"]["pattern"] == "webhook" for r in okta_lines)
    gh = lake_lines(root, "github")
    assert {r["guid"] for r in gh} == {d.headers["X-GitHub-Delivery"] for d in github}
    assert all(r["_lip"]["hour_from"] == "arrival" for r in gh)
    (j,) = lake_lines(root, "jamf")
    key = next(root.glob("source=jamf/**/*.ndjson.gz")).as_posix()
    assert "year=2024/month=09/day=02/hour=09" in key  # eventTimestamp 1725269730 (seconds)
    assert j["_lip"]["id"] == JAMF_IDENTITY.event_id(fixture("jamf/webhook_computer_added.json"))
    # the commit log moved the receiver's ids from accepted to landed
    ev = okta[0].events[0]
    k = DedupeKey(datetime.fromisoformat(ev["published"]).strftime("%Y-%m-%d-%H:%M:%S"), ev["uuid"])
    assert backend.dedupe.get("okta_hooks", [k])[k].status == "landed"


def test_an_event_without_a_timestamp_lands_in_the_hour_it_arrived(
    specs, backend: EmbeddedBackend, secrets, sim: WebhookSimulator
) -> None:
    arrived = datetime(2026, 3, 1, 10, 59, 59, tzinfo=UTC).timestamp()
    app = create_app(
        specs, buffer=backend.buffer, dedupe=backend.dedupe, secrets=secrets, clock=lambda: arrived
    )
    client = Client(app)
    try:
        deliver(client, sim.github_deliveries(3))
    finally:
        client.close()
    d, w = drainer(backend, specs, "github")  # drained now, years later
    d.run()
    w.close()
    keys = [p.as_posix() for p in backend.settings.lake_dir.glob("source=github/**/*.gz")]
    assert keys and all("year=2026/month=03/day=01/hour=10" in k for k in keys)


def test_go_zero_time_lands_by_arrival_and_its_batch_leaves_the_buffer(
    backend: EmbeddedBackend, specs
) -> None:
    """Go's zero time (``0001-01-01T00:00:00Z``, what Go-based senders write for an
    unset time) is no event time: that event lands in its arrival hour, flagged, and
    the deliveries drained with it land too, instead of the batch failing on every
    drain until all of it sits in the dead-letter queue."""
    now = [T0]
    buffer = clocked_buffer(backend, now)  # max_receives=3
    for i in range(20):
        published = "0001-01-01T00:00:00Z" if i == 7 else f"2026-05-28T18:00:{i:02d}.000Z"
        buffer.send(
            "okta_hooks", encode("okta_hooks", T0, [{"uuid": f"e{i}", "published": published}])
        )
    d, w = drainer(backend, specs, "okta_hooks", buffer=buffer, vt=60)
    report = d.run()
    assert (report.error, report.stopped, report.messages) == (None, "empty", 20)
    now[0] += 61  # past the visibility timeout: nothing comes back
    assert d.run().stopped == "empty"
    w.close()
    depth = buffer.depth("okta_hooks")
    assert (depth.messages, depth.dead_letters) == (0, 0)
    root = backend.settings.lake_dir
    assert lake_ids(root, "okta_hooks") == Counter(f"e{i}" for i in range(20))
    for p in root.glob("source=okta_hooks/**/*.ndjson.gz"):
        for line in gzip.decompress(p.read_bytes()).splitlines():
            rec = orjson.loads(line)
            hour, hour_from = ("20", "arrival") if rec["uuid"] == "e7" else ("18", "event")
            assert f"/year=2026/month=05/day=28/hour={hour}/" in p.as_posix()
            assert rec["_lip"]["hour_from"] == hour_from
    zero = {"uuid": "e7", "published": "0001-01-01T00:00:00Z"}
    key = event_key(zero, OKTA_EVENT_IDENTITY, backend.dedupe.key_resolution).dedupe_key
    assert backend.dedupe.get("okta_hooks", [key])[key].status == "landed"


def test_poison_goes_to_quarantine_with_its_reason_and_the_rest_lands(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend, specs
) -> None:
    deliver(client, sim.okta_deliveries(10, per_delivery=10))
    foreign = encode("github", T0, [{"guid": "x"}])[0]
    damaged = b"\x1f\x8b" + b"\x00" * 40
    junk = [b"not json at all", damaged, foreign, gzip.compress(b"[1]")]
    backend.buffer.send("okta_hooks", junk)
    d, w = drainer(backend, specs, "okta_hooks")
    report = d.run()
    w.close()
    assert report.quarantined == 4 and report.result.events == 10
    assert backend.buffer.depth("okta_hooks").messages == 0
    qdir = backend.settings.quarantine_dir / "okta_hooks"
    reasons = sorted(orjson.loads(p.read_bytes())["reason"] for p in qdir.glob("*.reason.json"))
    assert any("not JSON" in r for r in reasons)
    assert any("damaged gzip" in r for r in reasons)
    assert any("belongs to source 'github'" in r for r in reasons)
    assert any("not a LIP webhook message" in r for r in reasons)
    assert backend.quarantine.count("okta_hooks") == 4


# ------------------------------------------------------- failures and crashes


class FlakyLake(LocalLake):
    def __init__(self, root: Path, tmp: Path, mode: str = "ok") -> None:
        super().__init__(root, tmp)
        self.mode = mode

    def put(self, key: str, data: bytes) -> bool:
        if self.mode == "fail":
            raise LakeWriteError(f"could not write lake object {key}: service unavailable")
        if self.mode == "crash_before_put":
            self.mode = "ok"
            raise Crash("died after claim, before put")
        written = super().put(key, data)
        if self.mode == "crash_after_put":
            self.mode = "ok"
            raise Crash("died after put, before marking landed")
        return written


class CrashingDedupe(SqliteDedupeStore):
    armed = True

    def mark_landed(self, source: str, keys: Sequence[DedupeKey], object_key: str) -> None:
        super().mark_landed(source, keys, object_key)
        if self.armed:
            self.armed = False
            raise Crash("died after marking landed, before deleting from the buffer")


class CrashingBuffer(SqliteBuffer):
    mode = ""

    def receive(self, source: str, max_messages: int, visibility_timeout: float):  # type: ignore[no-untyped-def]
        got = super().receive(source, max_messages, visibility_timeout)
        if self.mode == "after_receive" and got:
            self.mode = ""
            raise Crash("died after receiving")
        return got

    def delete(self, source: str, receipts: Sequence[str]) -> None:
        if self.mode == "before_delete":
            self.mode = ""
            raise Crash("died after landing, before deleting from the buffer")
        super().delete(source, receipts)


@pytest.mark.parametrize(
    "where",
    ["after_receive", "crash_before_put", "crash_after_put", "after_mark", "before_delete"],
)
def test_a_drain_that_dies_anywhere_and_is_rerun_lands_each_event_once(
    client: Client,
    sim: WebhookSimulator,
    backend: EmbeddedBackend,
    specs,
    tmp_path: Path,
    where: str,
) -> None:
    okta = sim.okta_deliveries(300, per_delivery=30)
    deliver(client, okta)
    now = [time.time()]
    db = backend.settings.state_db
    buffer = CrashingBuffer(db, clock=lambda: now[0])
    buffer.mode = where
    lake_mode = where if where.startswith("crash_") else "ok"
    lake = FlakyLake(backend.settings.lake_dir, backend.settings.tmp_dir, lake_mode)
    dedupe = CrashingDedupe(db)
    dedupe.armed = where == "after_mark"
    d, w = drainer(backend, specs, "okta_hooks", buffer=buffer, lake=lake, dedupe=dedupe, batch=4)
    with pytest.raises(Crash):
        d.run()
    w.close()
    # a new drain before the visibility timeout ends leaves the dead run's batch alone
    now[0] += 301
    d2, w2 = drainer(backend, specs, "okta_hooks", buffer=buffer, lake=lake, batch=7)
    report = d2.run()
    w2.close()
    assert report.error is None
    ids = lake_ids(backend.settings.lake_dir, "okta_hooks")
    assert set(ids) == {e["uuid"] for x in okta for e in x.events}, "an event was lost"
    assert max(ids.values()) == 1, "an event landed twice"
    assert buffer.depth("okta_hooks").messages == 0


KILL_SCRIPT = """
import os, signal, sys, threading
from pathlib import Path
from lip_dagster.lake.backends import LocalLake, LocalQuarantine
from lip_dagster.lake.writer import LakeWriter
from lip_dagster.state.sqlite import SqliteBuffer, SqliteDedupeStore
from lip_dagster.webhook.drain import DrainConfig, Drainer
from lip_dagster.webhook.vendors import OKTA_EVENT_IDENTITY

home, when = Path(sys.argv[1]), sys.argv[2]

class DyingLake(LocalLake):
    # puts run on two threads: each put takes its number once, under a lock, so
    # exactly one of them is the third whatever the other does meanwhile
    puts = 0
    lock = threading.Lock()
    def put(self, key, data):
        with self.lock:
            DyingLake.puts += 1
            n = DyingLake.puts
        if n == 3 and when == "before_put":
            os.kill(os.getpid(), signal.SIGKILL)
        super().put(key, data)
        if n == 3 and when == "after_put":
            os.kill(os.getpid(), signal.SIGKILL)

db = home / "state.db"
writer = LakeWriter(DyingLake(home / "lake", home / "tmp"), SqliteDedupeStore(db))
cfg = DrainConfig("okta_hooks", OKTA_EVENT_IDENTITY, batch_messages=3,
                  visibility_timeout_seconds=300, time_budget_seconds=60)
Drainer(cfg, buffer=SqliteBuffer(db), writer=writer,
        quarantine=LocalQuarantine(home / "quarantine")).run()
"""


@pytest.mark.parametrize("when", ["before_put", "after_put"])
def test_a_drain_killed_mid_run_and_rerun_loses_nothing_and_duplicates_nothing(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend, specs, when: str
) -> None:
    okta = sim.okta_deliveries(200, per_delivery=20)
    deliver(client, okta)
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(backend.settings.home), when],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -9, proc.stderr.decode()
    landed_before = lake_ids(backend.settings.lake_dir, "okta_hooks")
    assert 0 < len(landed_before) < 200  # it died with work done and work left
    now = [time.time() + 301]  # the killed run's batch is visible again
    d, w = drainer(backend, specs, "okta_hooks", buffer=clocked_buffer(backend, now), batch=5)
    assert d.run().error is None
    w.close()
    ids = lake_ids(backend.settings.lake_dir, "okta_hooks")
    assert set(ids) == {e["uuid"] for x in okta for e in x.events}
    assert max(ids.values()) == 1


def test_a_landing_failure_leaves_the_batch_buffered_and_reported(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend, specs
) -> None:
    deliver(client, sim.okta_deliveries(20, per_delivery=10))
    lake = FlakyLake(backend.settings.lake_dir, backend.settings.tmp_dir, "fail")
    d, w = drainer(backend, specs, "okta_hooks", lake=lake)
    report = d.run()
    w.close()
    assert isinstance(report.error, LakeWriteError) and report.stopped == "error"
    assert report.messages == 0 and backend.buffer.depth("okta_hooks").messages == 2
    assert lake_ids(backend.settings.lake_dir) == Counter()


def test_during_a_lake_outage_every_drain_the_sensor_requests_fails(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend, specs
) -> None:
    """The sensor ticks every 30 s through a 12-minute lake outage. No drain it asks
    for succeeds having received nothing while the failed batch is hidden: such a
    run would resolve the source's run alert in the middle of the outage."""
    deliver(client, sim.okta_deliveries(30, per_delivery=10))
    now = [time.time()]
    buffer = SqliteBuffer(backend.settings.state_db, clock=lambda: now[0], max_receives=10)
    lake = FlakyLake(backend.settings.lake_dir, backend.settings.tmp_dir, "fail")
    thresholds = Thresholds(flush_messages=500, flush_age_seconds=60, heartbeat_seconds=1800)
    state = ArrivalState()
    runs: list[tuple[int, str, int]] = []  # (minute, how it stopped, messages landed)
    for tick in range(40):
        if tick == 24:
            lake.mode = "ok"  # the lake is back after 12 minutes
        reason, state = decide(
            buffer.depth("okta_hooks"), state, now[0], thresholds, drain_active=False
        )
        if reason is not None:
            d, w = drainer(backend, specs, "okta_hooks", buffer=buffer, lake=lake, vt=300)
            report = d.run()
            w.close()
            runs.append((tick // 2, report.stopped, report.messages))
        now[0] += 30
    # a failed drain's batch is retried as its visibility timeout ends, and only then
    assert runs[:3] == [(0, "error", 0), (5, "error", 0), (10, "error", 0)]
    assert runs[3][0] == 15 and runs[3][1] != "error" and runs[3][2] == 3
    assert sum(lake_ids(backend.settings.lake_dir, "okta_hooks").values()) == 30


def test_a_batch_that_keeps_failing_goes_to_the_dlq_and_replay_brings_it_back(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend, specs
) -> None:
    okta = sim.okta_deliveries(30, per_delivery=10)
    deliver(client, okta)
    now = [time.time()]
    buffer = clocked_buffer(backend, now)  # max_receives=3
    lake = FlakyLake(backend.settings.lake_dir, backend.settings.tmp_dir, "fail")
    for _ in range(3):
        d, w = drainer(backend, specs, "okta_hooks", buffer=buffer, lake=lake, vt=60)
        assert d.run().stopped == "error"
        # hidden for the visibility timeout: another drain now finds nothing
        assert d.run().stopped == "empty"
        w.close()
        assert buffer.depth("okta_hooks").messages == 3  # in flight, not lost
        now[0] += 61
    d, w = drainer(backend, specs, "okta_hooks", buffer=buffer, lake=lake, vt=60)
    assert d.run().stopped == "empty"  # the fourth receive dead-letters instead
    w.close()
    depth = buffer.depth("okta_hooks")
    assert (depth.messages, depth.dead_letters) == (0, 3)
    lake.mode = "ok"  # the cause is fixed
    assert replay(buffer, "okta_hooks") == 3
    d, w = drainer(backend, specs, "okta_hooks", buffer=buffer, lake=lake, vt=60)
    assert d.run().result.events == 30
    w.close()
    assert buffer.depth("okta_hooks").dead_letters == 0
    assert sum(lake_ids(backend.settings.lake_dir, "okta_hooks").values()) == 30


def test_visibility_timeout_and_dlq_on_sqs(
    boto_session, moto_endpoint: str, tmp_path: Path, sim: WebhookSimulator
) -> None:
    from lip_dagster.state.aws import SqsBuffer

    buffer = SqsBuffer(
        session=boto_session,
        endpoint_url=moto_endpoint,
        prefix="t-drain-",
        max_receives=2,
        receive_wait_seconds=0,  # moto's short polls see the whole queue
    )
    buffer.ensure("okta_hooks")
    events = [e for d in sim.okta_deliveries(30, per_delivery=10) for e in d.events]
    bodies = [m for i in range(0, 30, 10) for m in encode("okta_hooks", T0, events[i : i + 10])]
    buffer.send("okta_hooks", bodies)
    lake = FlakyLake(tmp_path / "lake", tmp_path / "tmp", "fail")
    dedupe = SqliteDedupeStore(tmp_path / "state.db")

    def drain() -> Drainer:
        cfg = DrainConfig("okta_hooks", OKTA_EVENT_IDENTITY, 10, 1, 30)
        writer = LakeWriter(lake, dedupe)
        return Drainer(
            cfg, buffer=buffer, writer=writer, quarantine=LocalQuarantine(tmp_path / "q")
        )

    assert drain().run().stopped == "error"  # receive 1, landing fails
    # while the batch is hidden a second drain finds nothing to take
    assert drain().run().messages == 0
    assert buffer.depth("okta_hooks").messages == 3  # in flight, not lost
    time.sleep(1.2)
    assert drain().run().stopped == "error"  # receive 2: visible again, fails again
    time.sleep(1.2)
    drain().run()  # receive 3 would exceed maxReceiveCount: SQS dead-letters them
    assert buffer.depth("okta_hooks").dead_letters == 3
    lake.mode = "ok"
    assert replay(buffer, "okta_hooks") == 3
    report = drain().run()
    assert report.result.events == 30 and report.error is None
    assert sum(lake_ids(tmp_path / "lake").values()) == 30
    assert buffer.depth("okta_hooks").messages == 0


def test_a_drain_on_sqs_lands_every_buffered_delivery_though_short_polls_find_none(
    boto_session, moto_endpoint: str, tmp_path: Path, sim: WebhookSimulator
) -> None:
    """SQS may answer a short poll empty while a few messages wait; a drain that took
    that for an empty buffer ended early and left the hour's deliveries for the next
    one."""
    from lip_dagster.state.aws import SqsBuffer

    buffer = SqsBuffer(session=boto_session, endpoint_url=moto_endpoint, prefix="t-sample-")
    buffer.ensure("okta_hooks")
    events = [e for d in sim.okta_deliveries(15, per_delivery=5) for e in d.events]
    bodies = [m for i in range(0, 15, 5) for m in encode("okta_hooks", T0, events[i : i + 5])]
    buffer.send("okta_hooks", bodies)
    buffer._client = ShortPollSampling(buffer._client)
    writer = LakeWriter(
        LocalLake(tmp_path / "lake", tmp_path / "tmp"), SqliteDedupeStore(tmp_path / "state.db")
    )
    drain = Drainer(
        DrainConfig("okta_hooks", OKTA_EVENT_IDENTITY, 10, 30, 30),
        buffer=buffer,
        writer=writer,
        quarantine=LocalQuarantine(tmp_path / "q"),
    )
    report = drain.run()
    writer.close()
    assert (report.stopped, report.result.events) == ("empty", 15)
    assert sum(lake_ids(tmp_path / "lake").values()) == 15
    assert buffer.depth("okta_hooks").messages == 0
    buffer.close()


# ------------------------------------------------------------ backpressure


def test_backpressure_skips_or_shortens_the_drain_and_fails_open(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend, specs
) -> None:
    deliver(client, sim.okta_deliveries(10, per_delivery=10))
    d, w = drainer(backend, specs, "okta_hooks")
    skipped = d.run(depth_probe=lambda: 5)
    assert skipped.backpressure == "skip" and skipped.messages == 0
    assert backend.buffer.depth("okta_hooks").messages == 1

    def broken_probe() -> int:
        raise StateError("instance unreachable")

    report = d.run(depth_probe=broken_probe)
    w.close()
    assert report.backpressure == "normal" and report.result.events == 10


def test_a_batch_slower_than_half_the_visibility_timeout_is_logged(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend, specs, caplog
) -> None:
    deliver(client, sim.okta_deliveries(10, per_delivery=10))
    ticks = iter([0.0, 0.0, 0.0, 200.0, 200.0, 200.0, 200.0])
    d, w = drainer(backend, specs, "okta_hooks", vt=300)
    d.clock = lambda: next(ticks)
    with caplog.at_level(logging.WARNING):
        d.run()
    w.close()
    assert "over half the visibility timeout" in caplog.text


def test_a_replay_that_leaves_dead_letters_behind_does_not_report_success(
    boto_session, moto_endpoint: str
) -> None:
    """A replay interrupted after it received dead letters (or a look at them) hides
    them in the SQS dead-letter queue for up to a minute: a replay run meanwhile
    cannot see them. It must not say it brought everything back."""
    from lip_dagster.state.aws import SqsBuffer

    buffer = SqsBuffer(
        session=boto_session,
        endpoint_url=moto_endpoint,
        prefix="t-replay-",
        max_receives=1,
        receive_wait_seconds=0,
        dlq_wait_seconds=0,
    )
    buffer.ensure("okta_hooks")
    buffer.send("okta_hooks", [b"a", b"b"])
    assert len(buffer.receive("okta_hooks", 10, 0)) == 2
    assert buffer.receive("okta_hooks", 10, 0) == []  # the second receive buries them
    assert buffer.depth("okta_hooks").dead_letters == 2
    # what a replay killed between its receive from the DLQ and its send leaves
    _, dlq_url = buffer._queues("okta_hooks")
    taken = buffer._client.receive_message(
        QueueUrl=dlq_url, MaxNumberOfMessages=1, VisibilityTimeout=60
    )["Messages"]
    assert len(taken) == 1
    with pytest.raises(StateError, match="1 still in the dead-letter queue"):
        replay(buffer, "okta_hooks")
    depth = buffer.depth("okta_hooks")
    assert (depth.messages, depth.dead_letters) == (1, 1)
    buffer.close()
