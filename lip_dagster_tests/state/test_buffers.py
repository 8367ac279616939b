"""Buffer contract, run against SQLite and against SQS on the local moto server:
at least once, visibility timeout, dead letters after max_receives, redrive."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lip_dagster.errors import StateError
from lip_dagster.state import sqlite as sqlite_module
from lip_dagster.state.aws import SqsBuffer
from lip_dagster.state.base import Buffer
from lip_dagster.state.sqlite import SqliteBuffer


@dataclass
class Case:
    buffer: Buffer
    source: str
    backend: str
    # A visibility timeout short enough for a test but one the backend honours: SQS
    # counts whole seconds.
    short_visibility: float


def make(request: pytest.FixtureRequest, tmp_path: Path, max_receives: int) -> Case:
    source = f"t{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        return Case(
            SqliteBuffer(tmp_path / "state.db", max_receives=max_receives), source, "sqlite", 0.3
        )
    # moto answers a short poll from the whole queue, as SQS answers a long poll: a
    # long poll here would only make every empty receive take a second
    sqs = SqsBuffer(
        session=request.getfixturevalue("boto_session"),
        endpoint_url=request.getfixturevalue("moto_endpoint"),
        max_receives=max_receives,
        receive_wait_seconds=0,
        dlq_wait_seconds=0,
    )
    sqs.ensure(source)
    return Case(sqs, source, "sqs", 1.0)


@pytest.fixture(params=["sqlite", "sqs"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    c = make(request, tmp_path, max_receives=5)
    yield c
    c.buffer.close()


@pytest.fixture(params=["sqlite", "sqs"])
def case_two_receives(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    c = make(request, tmp_path, max_receives=2)
    yield c
    c.buffer.close()


BODIES = [
    json.dumps({"id": "e1", "msg": "héllo"}).encode(),
    b"\x00\xff\xfe binary \r\n and not UTF-8 \x80",
    b"",
]


def test_bodies_round_trip_exactly(case: Case) -> None:
    before = time.time()
    ids = case.buffer.send(case.source, BODIES)
    assert len(ids) == 3 and len(set(ids)) == 3
    got = case.buffer.receive(case.source, 10, 30)
    assert sorted(m.body for m in got) == sorted(BODIES)
    assert {m.message_id for m in got} == set(ids)
    assert all(m.receive_count == 1 for m in got)
    assert all(before - 2 <= m.sent_at <= time.time() + 2 for m in got)


def test_an_append_once_flushed_is_received_like_a_send(case: Case) -> None:
    flush = case.buffer.append(case.source, BODIES[:2])
    flush()
    case.buffer.send(case.source, BODIES[2:])
    assert sorted(m.body for m in case.buffer.receive(case.source, 10, 30)) == sorted(BODIES)


def test_a_received_message_is_hidden_then_comes_back(case: Case) -> None:
    buffer, source = case.buffer, case.source
    buffer.send(source, [b"event"])
    first = buffer.receive(source, 10, case.short_visibility)
    assert [m.body for m in first] == [b"event"]
    assert buffer.receive(source, 10, case.short_visibility) == []
    assert buffer.depth(source).messages == 1  # in flight still counts
    time.sleep(case.short_visibility + 0.2)
    again = buffer.receive(source, 10, 30)
    assert [m.body for m in again] == [b"event"]
    assert again[0].message_id == first[0].message_id
    assert again[0].receive_count == 2
    assert again[0].receipt != first[0].receipt


def test_delete_removes_only_what_it_names(case: Case) -> None:
    buffer, source = case.buffer, case.source
    buffer.send(source, [b"a", b"b", b"c"])
    got = {m.body: m for m in buffer.receive(source, 10, 30)}
    buffer.delete(source, [got[b"a"].receipt, got[b"c"].receipt])
    depth = buffer.depth(source)
    assert depth.messages == 1 and depth.dead_letters == 0
    # Deleting again (a retried drain step) is harmless.
    buffer.delete(source, [got[b"a"].receipt])
    buffer.delete(source, [])
    assert buffer.depth(source).messages == 1


def test_receive_returns_at_most_max_messages_and_pages_past_ten(case: Case) -> None:
    buffer, source = case.buffer, case.source
    bodies = [f"m{i}".encode() for i in range(25)]
    buffer.send(source, bodies)
    first = buffer.receive(source, 7, 30)
    rest = buffer.receive(source, 100, 30)
    assert len(first) == 7
    assert sorted(m.body for m in first + rest) == sorted(bodies)
    assert buffer.receive(source, 10, 30) == []


@pytest.fixture(params=["sqlite"])
def sqlite_case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    """SQLite only: on SQS, exclusive delivery is the service's own guarantee (the local
    test server does not lock receives), and LIP never runs two drains of one source."""
    c = make(request, tmp_path, max_receives=5)
    yield c
    c.buffer.close()


def test_concurrent_receivers_never_get_the_same_message(sqlite_case: Case) -> None:
    buffer, source = sqlite_case.buffer, sqlite_case.source
    bodies = [f"c{i}".encode() for i in range(40)]
    buffer.send(source, bodies)
    got: list[list[bytes]] = [[], []]
    barrier = threading.Barrier(2)

    def drain(slot: int) -> None:
        barrier.wait()
        for _ in range(10):
            got[slot].extend(m.body for m in buffer.receive(source, 5, 30))

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got[0] + got[1]) == sorted(bodies)
    assert not set(got[0]) & set(got[1])


def test_nothing_is_lost_until_deleted(case: Case) -> None:
    """At least once: a drain that dies after receiving loses nothing."""
    buffer, source = case.buffer, case.source
    buffer.send(source, [b"x", b"y"])
    buffer.receive(source, 10, case.short_visibility)  # the drain dies here
    time.sleep(case.short_visibility + 0.2)
    retry = buffer.receive(source, 10, 30)
    assert sorted(m.body for m in retry) == [b"x", b"y"]
    buffer.delete(source, [m.receipt for m in retry])
    assert buffer.depth(source).messages == 0


def test_a_message_received_too_often_goes_to_the_dead_letters(case_two_receives: Case) -> None:
    buffer, source = case_two_receives.buffer, case_two_receives.source
    buffer.send(source, [b"poison"])
    # Zero visibility: visible again at once, so each receive counts.
    assert [m.receive_count for m in buffer.receive(source, 10, 0)] == [1]
    assert [m.receive_count for m in buffer.receive(source, 10, 0)] == [2]
    assert buffer.receive(source, 10, 0) == []  # the third receive buries it
    depth = buffer.depth(source)
    assert (depth.messages, depth.dead_letters) == (0, 1)

    peeked = buffer.dead_letters(source)
    assert [m.body for m in peeked] == [b"poison"]
    # A peek takes nothing away: the DLQ check can run any time.
    assert [m.body for m in buffer.dead_letters(source)] == [b"poison"]
    assert buffer.depth(source).dead_letters == 1

    assert buffer.redrive(source) == 1
    depth = buffer.depth(source)
    assert (depth.messages, depth.dead_letters) == (1, 0)
    back = buffer.receive(source, 10, 30)
    assert [m.body for m in back] == [b"poison"]
    assert back[0].receive_count == 1  # the count starts over
    assert buffer.redrive(source) == 0


def test_a_dead_letter_sqs_keeps_hidden_is_said_in_the_log(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """A peek hides dead letters while it pages, then shows them again; if SQS refuses
    that, a replay in the next 30 s moves fewer than the check counted: the log says
    why."""
    source = f"t{uuid.uuid4().hex[:12]}"
    buffer = SqsBuffer(
        session=request.getfixturevalue("boto_session"),
        endpoint_url=request.getfixturevalue("moto_endpoint"),
        max_receives=1,
        receive_wait_seconds=0,
        dlq_wait_seconds=0,
    )
    buffer.ensure(source)
    buffer.send(source, [b"poison"])
    assert len(buffer.receive(source, 10, 0)) == 1
    assert buffer.receive(source, 10, 0) == []  # the second receive buries it
    client = buffer._client
    real = client.change_message_visibility_batch

    def refused(**request: object) -> dict[str, object]:
        entries = request["Entries"]
        return {
            "Successful": [],
            "Failed": [{"Id": e["Id"], "Code": "InternalError"} for e in entries],  # type: ignore[attr-defined]
        }

    client.change_message_visibility_batch = refused
    try:
        with caplog.at_level("WARNING"):
            assert [m.body for m in buffer.dead_letters(source)] == [b"poison"]
    finally:
        client.change_message_visibility_batch = real
    assert "1 dead letters stay hidden for up to 30 s" in caplog.text
    buffer.close()


def test_redrive_moves_every_dead_letter(case_two_receives: Case) -> None:
    buffer, source = case_two_receives.buffer, case_two_receives.source
    bodies = [f"d{i}".encode() for i in range(13)]
    buffer.send(source, bodies)
    for _ in range(10):  # SQS hands out at most 10 per zero-visibility receive
        buffer.receive(source, 100, 0)
    assert buffer.depth(source).dead_letters == 13
    assert len(buffer.dead_letters(source, max_messages=5)) == 5
    assert buffer.redrive(source) == 13
    assert sorted(m.body for m in buffer.receive(source, 100, 30)) == sorted(bodies)


def test_sources_have_separate_queues(case: Case) -> None:
    buffer, source = case.buffer, case.source
    other = f"t{uuid.uuid4().hex[:12]}"
    ensure = getattr(buffer, "ensure", None)
    if ensure is not None:
        ensure(other)
    buffer.send(source, [b"mine"])
    assert buffer.receive(other, 10, 30) == []
    assert buffer.depth(other).messages == 0


# ---------------------------------------------------------------------- SQLite only


def test_sqlite_a_stale_receipt_deletes_nothing(tmp_path: Path) -> None:
    buffer = SqliteBuffer(tmp_path / "state.db")
    buffer.send("okta", [b"event"])
    stale = buffer.receive("okta", 1, 0.05)[0]
    time.sleep(0.1)
    fresh = buffer.receive("okta", 1, 30)[0]
    buffer.delete("okta", [stale.receipt])
    assert buffer.depth("okta").messages == 1
    buffer.delete("okta", [fresh.receipt])
    assert buffer.depth("okta").messages == 0


def test_depth_tells_received_messages_from_ready_ones(case: Case) -> None:
    """What the arrival sensor drains on: a failed drain's batch is in flight, not
    ready, until its visibility timeout runs out."""
    case.buffer.send(case.source, [b"a", b"b", b"c"])
    got = case.buffer.receive(case.source, 2, case.short_visibility)
    assert len(got) == 2
    d = case.buffer.depth(case.source)
    assert (d.messages, d.in_flight, d.ready) == (3, 2, 1)
    time.sleep(case.short_visibility + 0.2)
    d = case.buffer.depth(case.source)
    assert (d.messages, d.in_flight, d.ready) == (3, 0, 3)


def test_sqlite_depth_reports_the_age_of_the_oldest_message(tmp_path: Path) -> None:
    clock_now = [1_000_000.0]
    buffer = SqliteBuffer(tmp_path / "state.db", clock=lambda: clock_now[0])
    assert buffer.depth("okta").oldest_age_seconds is None
    buffer.send("okta", [b"old"])
    clock_now[0] += 90
    buffer.send("okta", [b"new"])
    clock_now[0] += 10
    assert buffer.depth("okta").oldest_age_seconds == pytest.approx(100)


def test_sqlite_redrive_keeps_the_original_send_time(tmp_path: Path) -> None:
    clock_now = [1_000_000.0]
    buffer = SqliteBuffer(tmp_path / "state.db", max_receives=1, clock=lambda: clock_now[0])
    buffer.send("okta", [b"x"])
    buffer.receive("okta", 1, 0)
    clock_now[0] += 50
    buffer.receive("okta", 1, 0)
    buffer.redrive("okta")
    assert buffer.receive("okta", 1, 30)[0].sent_at == 1_000_000.0


def test_sqlite_large_receives_and_redrives_work_in_chunks(tmp_path: Path) -> None:
    buffer = SqliteBuffer(tmp_path / "state.db", max_receives=1)
    bodies = [f"b{i}".encode() for i in range(1200)]
    buffer.send("okta", bodies)
    assert len(buffer.receive("okta", 5000, 0)) == 1200
    assert buffer.receive("okta", 5000, 0) == []
    assert buffer.depth("okta").dead_letters == 1200
    assert buffer.redrive("okta") == 1200
    assert sorted(m.body for m in buffer.receive("okta", 5000, 30)) == sorted(bodies)


def test_sqlite_append_is_made_durable_by_syncing_the_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``append`` commits without waiting for the disk; the call it returns syncs the
    WAL that commit went to (and its directory, the first time), which is what a
    ``synchronous=FULL`` commit does."""
    buffer = SqliteBuffer(tmp_path / "state.db")
    synced: list[str] = []
    real = sqlite_module._datasync

    def recording(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(sqlite_module, "_datasync", recording)
    flush = buffer.append("okta", [b"one"])
    assert synced == []
    flush()
    assert synced == [str(tmp_path / "state.db-wal")]
    assert [m.body for m in buffer.receive("okta", 10, 30)] == [b"one"]
    buffer.close()


def test_sqlite_a_failed_flush_names_the_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = SqliteBuffer(tmp_path / "state.db")

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(sqlite_module, "_datasync", failing)
    flush = buffer.append("okta", [b"one"])
    with pytest.raises(StateError, match=r"state\.db.*flushing its WAL to disk failed"):
        flush()
    buffer.close()


def test_sqlite_appends_are_checkpointed_off_the_committing_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receiver's commits must not stall copying the WAL into the database: once
    enough was appended, a thread of the buffer's own copies it (the database file
    grows long before SQLite's automatic checkpoint, at 10,000 pages, would run), and
    every message is still there to receive."""
    monkeypatch.setattr(sqlite_module, "_BACKGROUND_CHECKPOINT_BYTES", 64 * 1024)
    buffer = SqliteBuffer(tmp_path / "state.db")
    bodies = [os.urandom(16 * 1024) for _ in range(40)]  # incompressible: 640 KiB
    for body in bodies:
        buffer.append("okta", [body])()
    database = tmp_path / "state.db"
    deadline = time.monotonic() + 30
    while database.stat().st_size < 600 * 1024 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert database.stat().st_size >= 600 * 1024, "the WAL was never copied into the database"
    assert sorted(m.body for m in buffer.receive("okta", 100, 30)) == sorted(bodies)
    buffer.close()


def test_sqlite_a_failed_background_checkpoint_is_logged_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint that cannot run leaves the work to the commits' own automatic
    checkpoint; the receiver keeps answering."""
    buffer = SqliteBuffer(tmp_path / "state.db")
    buffer.append("okta", [b"one"])()

    def unavailable() -> None:
        raise StateError("SQLite state database 'state.db': disk I/O error")

    monkeypatch.setattr(buffer._db, "connection", unavailable)
    assert buffer._checkpointer.checkpoint() is False
    assert "background WAL checkpoint failed" in caplog.text
    monkeypatch.undo()
    assert [m.body for m in buffer.receive("okta", 10, 30)] == [b"one"]
    buffer.close()
