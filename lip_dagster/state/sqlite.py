"""SQLite state stores: the embedded default, one file (normally ``$LIP_HOME/state.db``).

The cursor, the dedupe commit log and the buffer can share one file (separate tables),
so one backup covers a deployment, and WAL keeps every commit a sequential
append: a crash loses at most a suffix of transactions, never a middle one, so the
order of effects (land, mark landed, commit cursor / delete from buffer) survives it.

Concurrency: every thread gets its own connection (``sqlite3`` connections are not
meant to be shared), a process that forks opens fresh ones, every read-modify-write
runs in ``BEGIN IMMEDIATE`` so two writers queue on the file lock instead of failing
with a deadlock on upgrade, and ``busy_timeout`` makes that queueing wait rather than
error. Transactions are one call long: nothing holds the write lock between calls.

``synchronous=FULL`` is the default so a ``send`` to the buffer that returned (the
webhook receiver then answered 200 to the vendor) survives a power cut, not only a
killed process. ``NORMAL`` is available where that trade is acceptable. The buffer's
``append`` commits as ``NORMAL`` would and returns the WAL sync that ``FULL`` would
have made, so the receiver can overlap the next group's commit with this one's sync.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import re
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import orjson

from lip_dagster.errors import StateError
from lip_dagster.lake.layout import validate_source_name
from lip_dagster.state._common import chunks, cursor_conflict, later_high_water
from lip_dagster.state.base import (
    Buffer,
    BufferDepth,
    BufferMessage,
    CursorRecord,
    CursorStore,
    DedupeKey,
    DedupeStore,
    IdState,
    IdStatus,
    KeyResolution,
    MovableStatus,
)

__all__ = [
    "SqliteBuffer",
    "SqliteCursorStore",
    "SqliteDedupeStore",
    "cursor_conflict",
    "later_high_water",
]

Synchronous = Literal["FULL", "NORMAL"]

DEFAULT_BUSY_TIMEOUT_SECONDS = 30.0
DEFAULT_TTL_SECONDS = 30 * 24 * 3600

log = logging.getLogger(__name__)

_WAL_SWITCH = threading.Lock()

# Host parameters per statement: below even the 999 of SQLite builds older than 3.32,
# large enough that a page of 1,000 ids is two or three statements.
_CHUNK = 500
_CACHE_KIB = 32 * 1024
_WAL_CHECKPOINT_PAGES = 10_000
# The receiver's buffer copies its WAL into the database on a thread of its own once
# this many bytes were appended (see ``_Checkpointer``), well before a commit would
# reach ``_WAL_CHECKPOINT_PAGES`` and checkpoint in the committing thread.
_BACKGROUND_CHECKPOINT_BYTES = 4 * 1024 * 1024
# Passes one wake-up makes at most: each copies only the frames added since the last,
# so a few passes catch up with any write rate this process can reach.
_CHECKPOINT_PASSES = 8


# ------------------------------------------------------------------ shared connection


class _Database:
    """Per-thread connections to one SQLite file, schema created on first use.

    One object per store; several stores (and processes) may point at the same file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: Sequence[str],
        busy_timeout: float,
        synchronous: Synchronous,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise StateError(f"synchronous must be 'FULL' or 'NORMAL', not {synchronous!r}")
        self.path = Path(path)
        self._schema = tuple(schema)
        self._busy_ms = max(0, int(busy_timeout * 1000))
        self._synchronous = synchronous
        self._local = threading.local()
        self._lock = threading.Lock()
        self._generation = 0
        # (pid, owning thread, connection): a connection whose thread has ended is
        # closed at the next open, so a long-lived process that runs each job on fresh
        # threads does not keep a file handle and a page cache per finished thread.
        self._open_conns: list[tuple[int, weakref.ref[threading.Thread], sqlite3.Connection]] = []
        self._schema_ready = False

    def __repr__(self) -> str:
        return f"<SQLite state database {str(self.path)!r}>"

    def _error(self, what: str, err: sqlite3.Error) -> StateError:
        return StateError(f"SQLite state database {str(self.path)!r}: {what} failed: {err}")

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened (and the schema created) on first use."""
        local = self._local
        pid = os.getpid()
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if (
            conn is not None
            and getattr(local, "pid", None) == pid
            and getattr(local, "generation", None) == self._generation
        ):
            return conn
        conn = self._open()
        local.conn, local.pid, local.generation = conn, pid, self._generation
        return conn

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StateError(
                f"SQLite state database {str(self.path)!r}: cannot create its directory: "
                f"{err.strerror}"
            ) from err
        try:
            # isolation_level=None: this module issues BEGIN/COMMIT itself, so a
            # transaction is exactly as long as the code says.
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            mode = self._wal(conn)
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            # The hot end of the dedupe index (the current hours) must stay in memory,
            # and a larger WAL rewrites those pages into the main file less often.
            conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {_WAL_CHECKPOINT_PAGES}")
        except sqlite3.Error as err:
            raise self._error("opening the database", err) from err
        if str(mode).lower() != "wal":
            conn.close()
            raise StateError(
                f"SQLite state database {str(self.path)!r}: WAL mode is not available "
                f"(journal_mode stayed {mode!r}); put LIP_HOME on a local filesystem"
            )
        pid = os.getpid()
        with self._lock:
            orphans = [c for p, t, c in self._open_conns if p == pid and not _alive(t)]
            self._open_conns = [(p, t, c) for p, t, c in self._open_conns if p != pid or _alive(t)]
            self._open_conns.append((pid, weakref.ref(threading.current_thread()), conn))
            ready = self._schema_ready
        for orphan in orphans:
            _close_quietly(orphan)
        if not ready:
            self._create_schema(conn)
        return conn

    def _wal(self, conn: sqlite3.Connection) -> str:
        """Switch to WAL. On a brand-new file two connections switching at once can get
        "database is locked" without SQLite's busy handler being asked, so the switch
        is serialized within the process and retried, briefly and boundedly, across
        processes."""
        deadline = time.monotonic() + self._busy_ms / 1000
        while True:
            try:
                with _WAL_SWITCH:
                    return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in self._schema:
                    conn.execute(statement)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            raise self._error("creating tables", err) from err
        with self._lock:
            self._schema_ready = True

    @contextmanager
    def write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed if the block returns, rolled
        back if it raises (``CursorConflict`` and friends pass through unchanged)."""
        conn = self.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            raise self._error(what, err) from err
        try:
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            self._rollback(conn)
            raise self._error(what, err) from err
        except BaseException:
            self._rollback(conn)
            raise

    @contextmanager
    def read(self, what: str) -> Iterator[sqlite3.Connection]:
        """One deferred (read) transaction, so a multi-statement read is one snapshot."""
        conn = self.connection()
        try:
            conn.execute("BEGIN")
        except sqlite3.Error as err:
            raise self._error(what, err) from err
        try:
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            self._rollback(conn)
            raise self._error(what, err) from err
        except BaseException:
            self._rollback(conn)
            raise

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        # SQLite may already have rolled back (e.g. on SQLITE_FULL); a second ROLLBACK
        # would raise and hide the original error.
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def close(self) -> None:
        """Close the connections this process opened; the next call reopens."""
        pid = os.getpid()
        with self._lock:
            self._generation += 1
            mine = [c for p, _, c in self._open_conns if p == pid]
            # Connections inherited through fork belong to the parent: never close
            # them here (closing can checkpoint or unlink the parent's WAL).
            self._open_conns = []
        for conn in mine:
            _close_quietly(conn)


_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


class _Checkpointer:
    """Copies a database's WAL into the database file on a thread of its own.

    SQLite's automatic checkpoint runs inside the commit that crosses its threshold,
    on the committing thread: for the webhook receiver that is one group's commit,
    and every request waiting behind it, stalled for as long as tens of megabytes take
    to copy and sync (measured with 100-event deliveries at 16 connections: p99 76-84
    ms with it, 48 ms without). Here the copy is a ``PASSIVE`` checkpoint, which never
    waits for and never blocks the writer: commits go on appending meanwhile, and each
    further pass copies only what they added, until the WAL is fully copied and the
    next commit starts it over from the beginning. The automatic checkpoint stays on
    as the backstop should this thread fall behind or fail.

    Durability is SQLite's own: a checkpoint syncs the WAL before copying and the
    database after, and the WAL is only reused once everything in it was copied.
    """

    def __init__(self, db: _Database) -> None:
        self._db = db
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def poke(self) -> None:
        """Ask for a checkpoint soon; returns at once."""
        with self._lock:
            if self._closed:
                return
            if self._thread is None or not self._thread.is_alive():  # first call, or forked
                self._thread = threading.Thread(
                    target=self._run, name="lip-wal-checkpoint", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            self.checkpoint()

    def checkpoint(self) -> bool:
        """Copy the WAL into the database, in a few passes if writers keep adding to
        it; True once it was all copied. A failure is logged, not raised: the commits'
        own automatic checkpoint takes over."""
        for _ in range(_CHECKPOINT_PASSES):
            try:
                _busy, in_wal, copied = (
                    self._db.connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                )
            except (sqlite3.Error, StateError) as err:
                log.warning(
                    "SQLite state database %r: background WAL checkpoint failed (%s); "
                    "commits checkpoint it themselves",
                    str(self._db.path),
                    err,
                )
                return False
            if copied >= in_wal:
                return True
        return False

    def close(self) -> None:
        """Stop the thread (after the pass under way); a later ``poke`` starts a new
        one, as the store's connections reopen after its ``close``."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        with self._lock:
            self._closed = False
            self._wake.clear()


def _alive(ref: weakref.ref[threading.Thread]) -> bool:
    thread = ref()
    return thread is not None and thread.is_alive()


def _close_quietly(conn: sqlite3.Connection) -> None:
    # Closing only releases the handle; an error here has nothing left to lose.
    try:
        conn.close()
    except sqlite3.Error as err:
        log.debug("closing a SQLite connection failed: %s", err)


def _keys_json(keys: Sequence[DedupeKey]) -> str | None:
    """``keys`` as the JSON array ``[[bucket, id], ...]`` that ``json_each`` reads; None
    for ids JSON cannot carry to SQLite (not valid UTF-8 text, or holding a NUL,
    where SQLite's JSON text ends): those take the statements with bound values."""
    try:
        payload = orjson.dumps(keys, default=tuple)  # a DedupeKey is a 2-array
    except orjson.JSONEncodeError:
        return None
    return None if b"\\u0000" in payload else payload.decode()


# ----------------------------------------------------------------------------- cursor

_CURSOR_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS lip_cursor (
        source     TEXT NOT NULL,
        endpoint   TEXT NOT NULL,
        value      TEXT NOT NULL,
        version    INTEGER NOT NULL,
        high_water TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (source, endpoint)
    ) WITHOUT ROWID""",
)


class SqliteCursorStore(CursorStore):
    """Cursors in the ``lip_cursor`` table, compare-and-set on ``version``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_SECONDS,
        synchronous: Synchronous = "FULL",
    ) -> None:
        self._db = _Database(path, _CURSOR_SCHEMA, busy_timeout, synchronous)

    def __repr__(self) -> str:
        return f"SqliteCursorStore({str(self._db.path)!r})"

    def get(self, source: str, endpoint: str) -> CursorRecord | None:
        validate_source_name(source)
        with self._db.read(f"reading the cursor of source {source!r}") as conn:
            row = conn.execute(
                "SELECT value, version, high_water, updated_at FROM lip_cursor "
                "WHERE source = ? AND endpoint = ?",
                (source, endpoint),
            ).fetchone()
        if row is None:
            return None
        return CursorRecord(value=row[0], version=row[1], high_water=row[2], updated_at=row[3])

    def commit(
        self,
        source: str,
        endpoint: str,
        value: str,
        expected_version: int | None,
        high_water: str | None = None,
    ) -> CursorRecord:
        validate_source_name(source)
        where = f"cursor of source {source!r} endpoint {endpoint!r}"
        with self._db.write(f"committing the {where}") as conn:
            row = conn.execute(
                "SELECT version, high_water FROM lip_cursor WHERE source = ? AND endpoint = ?",
                (source, endpoint),
            ).fetchone()
            stored_version = None if row is None else int(row[0])
            if stored_version != expected_version:
                raise cursor_conflict(source, endpoint, expected_version, stored_version)
            new_high = later_high_water(None if row is None else row[1], high_water, where=where)
            new_version = 1 if expected_version is None else expected_version + 1
            now = time.time()
            conn.execute(
                "INSERT INTO lip_cursor (source, endpoint, value, version, high_water, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (source, endpoint) DO UPDATE SET value = excluded.value, "
                "version = excluded.version, high_water = excluded.high_water, "
                "updated_at = excluded.updated_at",
                (source, endpoint, value, new_version, new_high, now),
            )
        return CursorRecord(value=value, version=new_version, high_water=new_high, updated_at=now)

    def close(self) -> None:
        self._db.close()


# ----------------------------------------------------------------------------- dedupe

_STATUS_CODE: dict[IdStatus, int] = {"accepted": 0, "pending": 1, "landed": 2}
_CODE_STATUS: dict[int, IdStatus] = {v: k for k, v in _STATUS_CODE.items()}
_LANDED = _STATUS_CODE["landed"]
_PENDING = _STATUS_CODE["pending"]
_ACCEPTED = _STATUS_CODE["accepted"]

# A key's bucket: an hour (YYYY-MM-DD-HH:00) or a second (YYYY-MM-DD-HH:MM:SS); both
# sort in time order, and a second sorts after its hour, so pruning stays in order.
_BUCKET = r"[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{2}:(?:00|[0-9]{2}:[0-9]{2})"
_BUCKET_RE = re.compile(_BUCKET + r"\Z")
# A page's keys span hundreds of seconds: checked in one pass over them all, joined.
_BUCKET_LINES_RE = re.compile(f"(?:{_BUCKET}\n)*\\Z")
_RESOLUTION = "dedupe_key_resolution"
_HOUR_FORMAT = "%Y-%m-%d-%H:00"

# Rows are pruned only in hours older than (now - ttl + this). An id is written after
# its event happened, so a row in a younger hour cannot have expired unless its event
# claimed to be from the future; such rows are pruned once their hour ages into range.
_PRUNE_HORIZON_SLACK_SECONDS = 2 * 24 * 3600
_PRUNE_CHUNK = 5000

_DEDUPE_SCHEMA = (
    # Key order (source, hour, event_id): within a source, ids arrive in hour order, so
    # writes stay in the hot end of the B-tree instead of random pages (DESIGN §10:
    # ~10x). WITHOUT ROWID keeps the row in the key's B-tree: one B-tree write per id.
    # There is deliberately no index on expires_at: it would double the bytes written
    # per id; ``prune`` walks old hours by primary key instead.
    """CREATE TABLE IF NOT EXISTS lip_dedupe (
        source     TEXT NOT NULL,
        hour       TEXT NOT NULL,
        event_id   TEXT NOT NULL,
        status     INTEGER NOT NULL,
        object_id  INTEGER,
        expires_at REAL NOT NULL,
        PRIMARY KEY (source, hour, event_id)
    ) WITHOUT ROWID""",
    # Object keys are ~90 bytes and shared by a whole batch: stored once here and
    # referenced by number, which halves the size of every dedupe row. An object row
    # outlives every row pointing at it: its expires_at and max_hour are the max over
    # all writes that referenced it, and prune deletes it only when both are past.
    """CREATE TABLE IF NOT EXISTS lip_dedupe_object (
        id         INTEGER PRIMARY KEY,
        object_key TEXT NOT NULL UNIQUE,
        max_hour   TEXT NOT NULL,
        expires_at REAL NOT NULL
    )""",
    # Objects marked landed whole: an id still ``pending`` under such an object, and
    # written there by the one claim that was marked (its expires_at is that claim's,
    # ``claim_expires``), reads as ``landed`` there. Marking a 1,000-id object is then
    # one row, not a rewrite of 1,000 rows (and of every B-tree page they sit on).
    # A table of its own, so a state.db written before it existed needs no
    # migration: it just has no such rows, and its rows mean what they always meant.
    """CREATE TABLE IF NOT EXISTS lip_dedupe_landed (
        object_id     INTEGER PRIMARY KEY,
        claim_expires REAL NOT NULL
    )""",
    # Settings fixed for the life of the data, such as the time resolution of the
    # keys (``DedupeStore.key_resolution``), decided when the first store opens it.
    """CREATE TABLE IF NOT EXISTS lip_meta (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
)

# The status an id reads as (in ``_states``): see lip_dedupe_landed.
_EFFECTIVE_STATUS = (
    "CASE WHEN d.status = 1 AND d.expires_at = l.claim_expires THEN 2 ELSE d.status END"
)
# Claims remembered for a whole-object mark (see ``SqliteDedupeStore.claim``): a few
# objects are in flight per writer; forgetting one only costs the per-id path.
_CLAIM_MEMO_SIZE = 32


@functools.cache
def _json_each_available() -> bool:
    """Whether this SQLite has ``json_each`` (built in from 3.38, optional before);
    asked once per process, not once per store."""
    try:
        with contextlib.closing(sqlite3.connect(":memory:")) as conn:
            conn.execute("SELECT count(*) FROM json_each('[1]')").fetchone()
    except sqlite3.Error:
        return False
    return True


@dataclass
class _Claim:
    """The first claim of an object: the rows it left pending there carry
    ``expires`` and are among ``keys`` (rows only ever move away, or are marked
    landed one by one, which removes them from ``keys``)."""

    object_id: int
    expires: float
    keys: set[DedupeKey]


class SqliteDedupeStore(DedupeStore):
    """The commit log in the ``lip_dedupe`` table.

    Every call is one transaction however many keys it carries. Rows past
    ``expires_at`` still count until ``prune`` deletes them, as on DynamoDB, whose TTL
    deletion is also lazy.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_SECONDS,
        synchronous: Synchronous = "FULL",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_seconds <= 0:
            raise StateError(f"dedupe ttl_seconds must be positive, not {ttl_seconds!r}")
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._db = _Database(path, _DEDUPE_SCHEMA, busy_timeout, synchronous)
        self._json_each = _json_each_available()
        self._claims: dict[tuple[str, str], _Claim] = {}
        self._claims_lock = threading.Lock()
        # A writer claims on one thread while it marks on others: queued here, a
        # waiting thread wakes the moment the other commits, where SQLite's own busy
        # handler would sleep 1, 2, 5 ... ms between tries.
        self._write_lock = threading.Lock()
        self._resolution: KeyResolution | None = None

    def __repr__(self) -> str:
        return f"SqliteDedupeStore({str(self._db.path)!r}, ttl_seconds={self.ttl_seconds})"

    @property
    def key_resolution(self) -> KeyResolution:  # type: ignore[override]
        """``"second"`` for a file whose commit log starts empty; ``"hour"`` for one
        that already held keys when this setting was introduced, so ids it knows
        keep their keys. Read from the file once, then remembered."""
        known = self._resolution
        if known is None:
            with self._db.write("reading the key resolution of the dedupe store") as conn:
                row = conn.execute(
                    "SELECT value FROM lip_meta WHERE name = ?", (_RESOLUTION,)
                ).fetchone()
                if row is None:
                    held = conn.execute("SELECT 1 FROM lip_dedupe LIMIT 1").fetchone()
                    row = ("hour" if held else "second",)
                    conn.execute(
                        "INSERT INTO lip_meta (name, value) VALUES (?, ?)", (_RESOLUTION, row[0])
                    )
            if row[0] not in ("hour", "second"):
                raise StateError(
                    f"SQLite state database {str(self._db.path)!r}: unknown dedupe key "
                    f"resolution {row[0]!r} in lip_meta"
                )
            known = self._resolution = row[0]
        return known

    @staticmethod
    def _unique(source: str, keys: Sequence[DedupeKey]) -> list[DedupeKey]:
        """Keys without repeats, in first-seen order; refuses a malformed bucket,
        which would sort outside the time order that pruning relies on."""
        validate_source_name(source)
        unique = list(dict.fromkeys(keys))
        buckets = {k.bucket for k in unique}
        try:
            lines = "\n".join(buckets) + "\n"
        except TypeError:  # not all text: the loop below names the culprit
            lines = ""
        if lines.count("\n") == len(buckets) and _BUCKET_LINES_RE.match(lines):
            return unique
        for bucket in buckets:
            if not isinstance(bucket, str) or not _BUCKET_RE.match(bucket):
                raise StateError(
                    f"dedupe key time {bucket!r} of source {source!r} is neither an hour "
                    "(YYYY-MM-DD-HH:00) nor a second (YYYY-MM-DD-HH:MM:SS)"
                )
        return unique

    @staticmethod
    def _object_id(
        conn: sqlite3.Connection, object_key: str, keys: Sequence[DedupeKey], expires: float
    ) -> tuple[int, bool]:
        """The object's row id, and whether this call created the row."""
        max_hour = max(keys).bucket  # keys sort by their time first
        row = conn.execute(
            "SELECT id FROM lip_dedupe_object WHERE object_key = ?", (object_key,)
        ).fetchone()
        if row is None:
            cur = conn.execute(
                "INSERT INTO lip_dedupe_object (object_key, max_hour, expires_at) VALUES (?, ?, ?)",
                (object_key, max_hour, expires),
            )
            return int(cur.lastrowid or 0), True
        conn.execute(
            "UPDATE lip_dedupe_object SET max_hour = max(max_hour, ?), "
            "expires_at = max(expires_at, ?) WHERE id = ?",
            (max_hour, expires, row[0]),
        )
        return int(row[0]), False

    def _states(
        self, conn: sqlite3.Connection, source: str, keys: Sequence[DedupeKey]
    ) -> dict[DedupeKey, tuple[int, int | None, str | None]]:
        """Stored (status, object id, object key) of the keys that exist: one
        statement joining the keys, sent as one JSON array, to the index (a page's
        keys span hundreds of seconds); else chunked ``IN`` per bucket."""
        found: dict[DedupeKey, tuple[int, int | None, str | None]] = {}
        payload = _keys_json(keys) if self._json_each else None
        if payload is not None:
            rows = conn.execute(
                f"SELECT d.hour, d.event_id, {_EFFECTIVE_STATUS}, d.object_id, "  # noqa: S608
                "o.object_key FROM json_each(?) j CROSS JOIN lip_dedupe d "
                "LEFT JOIN lip_dedupe_object o ON o.id = d.object_id "
                "LEFT JOIN lip_dedupe_landed l ON l.object_id = d.object_id "
                "WHERE d.source = ? AND d.hour = json_extract(j.value, '$[0]') "
                "AND d.event_id = json_extract(j.value, '$[1]')",
                (payload, source),
            )
            for bucket, event_id, status, object_id, object_key in rows:
                found[DedupeKey(bucket, event_id)] = (int(status), object_id, object_key)
            return found
        by_bucket: dict[str, list[str]] = {}
        for key in keys:
            by_bucket.setdefault(key.bucket, []).append(key.event_id)
        for bucket, ids in by_bucket.items():
            for chunk in chunks(ids, _CHUNK):
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT d.event_id, {_EFFECTIVE_STATUS}, d.object_id, "  # noqa: S608
                    "o.object_key FROM lip_dedupe d "
                    "LEFT JOIN lip_dedupe_object o ON o.id = d.object_id "
                    "LEFT JOIN lip_dedupe_landed l ON l.object_id = d.object_id "
                    f"WHERE d.source = ? AND d.hour = ? AND d.event_id IN ({marks})",
                    (source, bucket, *chunk),
                )
                for event_id, status, object_id, object_key in rows:
                    found[DedupeKey(bucket, event_id)] = (int(status), object_id, object_key)
        return found

    def accept(self, source: str, keys: Sequence[DedupeKey]) -> list[bool]:
        unique = self._unique(source, keys)
        if not unique:
            return []
        expires = self._clock() + self.ttl_seconds
        known: set[DedupeKey] = set()
        with self._db.write(f"accepting ids of source {source!r}") as conn:
            # The webhook receiver marks a tenth of a second of deliveries at once,
            # from the thread that also commits its buffer appends: one statement per
            # hour instead of one step per id keeps that thread from queueing for the
            # GIL behind the receiver's event loop once per id. Those ids were just
            # found absent, so the insert is tried first, under a savepoint; only if
            # some existed is it undone and the states read, to say which.
            conn.execute("SAVEPOINT lip_accept")
            if self._insert_new(conn, source, unique, _ACCEPTED, None, expires) != len(unique):
                conn.execute("ROLLBACK TO lip_accept")
                known = set(self._states(conn, source, unique))
                new = [k for k in unique if k not in known]
                if new:
                    self._insert_new(conn, source, new, _ACCEPTED, None, expires)
            conn.execute("RELEASE lip_accept")
        result: list[bool] = []
        for key in keys:
            # The first occurrence of a new key is new; a repeat in the same call is a
            # duplicate delivery like any other.
            result.append(key not in known)
            known.add(key)
        return result

    def _insert_new(
        self,
        conn: sqlite3.Connection,
        source: str,
        keys: Sequence[DedupeKey],
        status: int,
        object_id: int | None,
        expires: float,
    ) -> int:
        """Insert the keys that are absent (existing rows are left alone); returns how
        many were inserted. With ``json_each`` the keys travel as one JSON array in
        one statement, not one bound statement per id: the insert then runs in C,
        outside Python's GIL, start to end."""
        payload = _keys_json(keys) if self._json_each else None
        if payload is not None:
            return conn.execute(
                "INSERT INTO lip_dedupe (source, hour, event_id, status, object_id, "
                "expires_at) SELECT ?, json_extract(value, '$[0]'), "
                "json_extract(value, '$[1]'), ?, ?, ? FROM json_each(?) "
                "WHERE true ON CONFLICT (source, hour, event_id) DO NOTHING",
                (source, status, object_id, expires, payload),
            ).rowcount
        return conn.executemany(
            "INSERT INTO lip_dedupe (source, hour, event_id, status, object_id, "
            "expires_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (source, hour, event_id) DO NOTHING",
            [(source, k.bucket, k.event_id, status, object_id, expires) for k in keys],
        ).rowcount

    def claim(
        self, source: str, keys: Sequence[DedupeKey], object_key: str
    ) -> dict[DedupeKey, IdState]:
        """As ``DedupeStore.claim``. The first claim of an object (the writer's
        normal case; a retry re-claims) is remembered, so that ``mark_landed`` of
        this object with at least the ids it left pending can mark the object
        instead of each id."""
        unique = self._unique(source, keys)
        if not unique:
            return {}
        expires = self._clock() + self.ttl_seconds
        report: dict[DedupeKey, IdState] = {}
        with self._write_lock, self._db.write(f"claiming ids of source {source!r}") as conn:
            oid, first = self._object_id(conn, object_key, unique, expires)
            # A polling page is almost always all new ids: try the plain insert first
            # and look at prior states only if some ids already existed. Reading after
            # the insert is still exact: the ids just inserted read back as
            # pending(object_key), which is "claimed cleanly", as they should.
            inserted = self._insert_new(conn, source, unique, _PENDING, oid, expires)
            if inserted != len(unique):
                taken: list[tuple[int, int, float, str, str, str]] = []
                for key, (status, old_id, old_key) in self._states(conn, source, unique).items():
                    if status == _LANDED:
                        report[key] = IdState("landed", old_key)
                    elif status == _PENDING and old_id != oid:
                        report[key] = IdState("pending", old_key)  # the caller looks first
                    elif status == _ACCEPTED:
                        taken.append((_PENDING, oid, expires, source, key.bucket, key.event_id))
                conn.executemany(
                    "UPDATE lip_dedupe SET status = ?, object_id = ?, expires_at = ? "
                    "WHERE source = ? AND hour = ? AND event_id = ?",
                    taken,
                )
        claimed = {k for k in unique if k not in report}
        with self._claims_lock:
            self._claims.pop((source, object_key), None)
            if first and claimed:
                self._claims[(source, object_key)] = _Claim(oid, expires, claimed)
                while len(self._claims) > _CLAIM_MEMO_SIZE:
                    del self._claims[next(iter(self._claims))]
        return report

    def reclaim(
        self,
        source: str,
        keys: Sequence[DedupeKey],
        from_key: str | None,
        object_key: str,
        *,
        from_status: MovableStatus = "pending",
    ) -> list[DedupeKey]:
        """As ``DedupeStore.reclaim``. The stored state compared is the one an id
        reads as, so an id landed through its object's whole mark moves too; its
        row then points at ``object_key`` and no longer at that mark."""
        if from_status not in ("pending", "landed"):
            raise StateError(f"reclaim moves pending or landed ids, not {from_status!r} ones")
        wanted = _STATUS_CODE[from_status]
        unique = self._unique(source, keys)
        if not unique:
            return []
        expires = self._clock() + self.ttl_seconds
        moved: list[DedupeKey] = []
        with self._write_lock, self._db.write(f"reclaiming ids of source {source!r}") as conn:
            oid, _ = self._object_id(conn, object_key, unique, expires)
            mark = conn.execute(
                "SELECT claim_expires FROM lip_dedupe_landed WHERE object_id = ?", (oid,)
            ).fetchone()
            if mark is not None and mark[0] == expires:
                # A row reads landed when it is pending under a marked object with the
                # mark's expires_at: a moved row must read pending until it is marked
                # itself (the same instant twice: a coarse or a test clock).
                expires = math.nextafter(expires, math.inf)
            for key, (status, _old_id, old_key) in self._states(conn, source, unique).items():
                if status == wanted and old_key == from_key:
                    moved.append(key)
            conn.executemany(
                "UPDATE lip_dedupe SET status = ?, object_id = ?, expires_at = ? "
                "WHERE source = ? AND hour = ? AND event_id = ?",
                [(_PENDING, oid, expires, source, k.bucket, k.event_id) for k in moved],
            )
        self._forget_claimed(source, moved)
        return moved

    def _forget_claimed(self, source: str, keys: Sequence[DedupeKey]) -> None:
        """These ids left whatever object a remembered claim had put them under."""
        if not keys:
            return
        gone = set(keys)
        with self._claims_lock:
            for (src, _), claim in self._claims.items():
                if src == source:
                    claim.keys -= gone

    def mark_landed(self, source: str, keys: Sequence[DedupeKey], object_key: str) -> None:
        unique = self._unique(source, keys)
        if not unique:
            return
        expires = self._clock() + self.ttl_seconds
        with self._claims_lock:
            memo = self._claims.pop((source, object_key), None)
        rest: Sequence[DedupeKey] = unique
        with self._write_lock, self._db.write(f"marking ids of source {source!r} landed") as conn:
            oid, _ = self._object_id(conn, object_key, unique, expires)
            if memo is not None and memo.object_id == oid and memo.keys.issubset(unique):
                # Every row its claim left pending here is one of ``keys``: mark the
                # object, and one by one only ids that claim did not carry.
                conn.execute(
                    "INSERT INTO lip_dedupe_landed (object_id, claim_expires) VALUES (?, ?) "
                    "ON CONFLICT (object_id) DO UPDATE SET claim_expires = excluded.claim_expires",
                    (oid, memo.expires),
                )
                rest = [k for k in unique if k not in memo.keys]
            if rest:
                # Claimed ids exist, so a plain UPDATE is the fast path; ids marked
                # without a claim are inserted rather than forgotten.
                updated = conn.executemany(
                    "UPDATE lip_dedupe SET status = ?, object_id = ?, expires_at = ? "
                    "WHERE source = ? AND hour = ? AND event_id = ?",
                    [(_LANDED, oid, expires, source, k.bucket, k.event_id) for k in rest],
                ).rowcount
                if updated != len(rest):
                    self._insert_new(conn, source, rest, _LANDED, oid, expires)
        self._forget_claimed(source, rest)

    def get(self, source: str, keys: Sequence[DedupeKey]) -> dict[DedupeKey, IdState]:
        unique = self._unique(source, keys)
        if not unique:
            return {}
        with self._db.read(f"reading ids of source {source!r}") as conn:
            found = self._states(conn, source, unique)
        return {key: IdState(_CODE_STATUS[st], ok) for key, (st, _, ok) in found.items()}

    def prune(self, now: float | None = None) -> int:
        """Delete ids whose ``expires_at`` has passed, in short transactions so the
        receiver and the writers are never locked out for long.

        Only hours older than ``now - ttl`` (plus two days of slack) are visited, so
        a prune reads about a day of rows, not the whole table. An id whose event
        claimed a future time is therefore pruned late, never early.
        """
        cutoff = self._clock() if now is None else now
        horizon_at = cutoff - self.ttl_seconds + _PRUNE_HORIZON_SLACK_SECONDS
        horizon = datetime.fromtimestamp(max(0.0, horizon_at), UTC).strftime(_HOUR_FORMAT)
        total = 0
        source: str | None = ""
        while True:
            with self._db.read("listing sources in the dedupe store") as conn:
                (source,) = conn.execute(
                    "SELECT min(source) FROM lip_dedupe WHERE source > ?", (source,)
                ).fetchone()
            if source is None:
                break
            total += self._prune_source(source, horizon, cutoff)
        with self._db.write("pruning expired dedupe object keys") as conn:
            # Safe: every id pointing at such an object has hour <= max_hour < horizon
            # and expires_at <= the object's expires_at <= cutoff, so it is gone.
            # Its landed mark goes in the same transaction: a later object may reuse
            # the row id, and must not inherit the mark.
            conn.execute(
                "DELETE FROM lip_dedupe_landed WHERE object_id IN (SELECT id FROM "
                "lip_dedupe_object WHERE expires_at <= ? AND max_hour < ?)",
                (cutoff, horizon),
            )
            conn.execute(
                "DELETE FROM lip_dedupe_object WHERE expires_at <= ? AND max_hour < ?",
                (cutoff, horizon),
            )
        return total

    def _prune_source(self, source: str, horizon: str, cutoff: float) -> int:
        deleted = 0
        last_hour, last_id = "", ""
        while True:
            with self._db.write(f"pruning expired ids of source {source!r}") as conn:
                rows = conn.execute(
                    "SELECT hour, event_id, expires_at FROM lip_dedupe "
                    "WHERE source = ? AND hour < ? AND (hour, event_id) > (?, ?) "
                    "ORDER BY hour, event_id LIMIT ?",
                    (source, horizon, last_hour, last_id, _PRUNE_CHUNK),
                ).fetchall()
                expired = [(source, h, e) for h, e, x in rows if x <= cutoff]
                conn.executemany(
                    "DELETE FROM lip_dedupe WHERE source = ? AND hour = ? AND event_id = ?",
                    expired,
                )
            deleted += len(expired)
            # Keyset walk: each pass starts after the last key seen, so the loop ends
            # after one pass over the old hours.
            if len(rows) < _PRUNE_CHUNK:
                return deleted
            last_hour, last_id = rows[-1][0], rows[-1][1]

    def close(self) -> None:
        self._db.close()


# ----------------------------------------------------------------------------- buffer

_BUFFER_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS lip_buffer (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        source        TEXT NOT NULL,
        message_id    TEXT NOT NULL UNIQUE,
        body          BLOB NOT NULL,
        sent_at       REAL NOT NULL,
        receive_count INTEGER NOT NULL DEFAULT 0,
        visible_at    REAL NOT NULL,
        receipt       TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS lip_buffer_order ON lip_buffer (source, seq, visible_at)",
    "CREATE INDEX IF NOT EXISTS lip_buffer_receipt ON lip_buffer (receipt)",
    """CREATE TABLE IF NOT EXISTS lip_buffer_dead (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        source        TEXT NOT NULL,
        message_id    TEXT NOT NULL UNIQUE,
        body          BLOB NOT NULL,
        sent_at       REAL NOT NULL,
        receive_count INTEGER NOT NULL,
        dead_at       REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS lip_buffer_dead_order ON lip_buffer_dead (source, seq)",
)


_SEND_ROWS = 100  # 500 host parameters, like _CHUNK
_SEND_SQL = [
    "INSERT INTO lip_buffer (source, message_id, body, sent_at, visible_at) VALUES "  # noqa: S608
    + ",".join(["(?, ?, ?, ?, ?)"] * rows)
    for rows in range(_SEND_ROWS + 1)
]


class SqliteBuffer(Buffer):
    """An at-least-once queue per source in ``lip_buffer``, dead letters in
    ``lip_buffer_dead``.

    Matches SQS with a redrive policy where it matters to the drain run: a receive
    hides a message for the visibility timeout and hands out a fresh receipt, and the
    receive that would be number ``max_receives + 1`` moves the message to the
    dead-letter table instead. Unlike SQS, a stale receipt deletes nothing.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_receives: int = 5,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_SECONDS,
        synchronous: Synchronous = "FULL",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_receives < 1:
            raise StateError(f"max_receives must be at least 1, not {max_receives!r}")
        self.max_receives = max_receives
        self._clock = clock
        self._db = _Database(path, _BUFFER_SCHEMA, busy_timeout, synchronous)
        # connections for ``append``: they commit without the fsync, which
        # ``_flush_wal`` then does once for many commits
        self._deferred = (
            _Database(path, _BUFFER_SCHEMA, busy_timeout, "NORMAL")
            if synchronous == "FULL"
            else None
        )
        self._wal_inode: int | None = None
        self._checkpointer = _Checkpointer(self._db)
        self._appended = 0  # bytes appended since the last background checkpoint
        # computed once: the flush runs for every group the receiver commits
        self._wal_path = f"{self._db.path}-wal"
        self._wal_dir = str(self._db.path.parent)

    def __repr__(self) -> str:
        return f"SqliteBuffer({str(self._db.path)!r}, max_receives={self.max_receives})"

    def send(self, source: str, bodies: Sequence[bytes]) -> list[str]:
        return self._insert(self._db, source, bodies)

    def append(self, source: str, bodies: Sequence[bytes]) -> Callable[[], None]:
        """As ``Buffer.append``: the transaction commits without waiting for the disk
        (``synchronous=NORMAL`` on a connection of its own), and the call returned
        flushes the WAL it was written to, which makes it durable exactly as a
        ``FULL`` commit would. One flush covers every append before it, so the
        receiver's next group commits while the last one's flush is under way."""
        if self._deferred is None:  # synchronous=NORMAL was asked for: a plain send
            return super().append(source, bodies)
        self._insert(self._deferred, source, bodies)
        self._appended += sum(len(b) for b in bodies)
        if self._appended >= _BACKGROUND_CHECKPOINT_BYTES:
            self._appended = 0
            self._checkpointer.poke()
        return self._flush_wal

    def _flush_wal(self) -> None:
        """fdatasync of the WAL file. A WAL that is gone was checkpointed into the
        database, which SQLite syncs before it removes the WAL. The first flush of a
        new WAL file also syncs its directory, so the file itself survives a power
        cut."""
        path = self._db.path
        try:
            fd = os.open(self._wal_path, os.O_RDONLY)
        except FileNotFoundError:
            return
        except OSError as err:
            raise StateError(f"SQLite buffer {str(path)!r}: opening its WAL failed: {err}") from err
        try:
            _datasync(fd)
            ino = os.fstat(fd).st_ino
            if ino != self._wal_inode:
                dir_fd = os.open(self._wal_dir, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
                self._wal_inode = ino
        except OSError as err:
            raise StateError(
                f"SQLite buffer {str(path)!r}: flushing its WAL to disk failed: {err}"
            ) from err
        finally:
            os.close(fd)

    def _insert(self, db: _Database, source: str, bodies: Sequence[bytes]) -> list[str]:
        validate_source_name(source)
        if not bodies:
            return []
        now = self._clock()
        ids = [str(uuid.uuid4()) for _ in bodies]
        params: list[object] = []
        for mid, body in zip(ids, bodies, strict=True):
            params += (source, mid, bytes(body), now, now)
        # One multi-row INSERT per _SEND_ROWS messages rather than executemany: every
        # statement step lets go of the GIL and must win it back, and the webhook
        # receiver calls this from a thread while its event loop is busy, so each
        # step saved is a wait saved.
        width = 5 * _SEND_ROWS
        with db.write(f"buffering messages of source {source!r}") as conn:
            for start in range(0, len(params), width):
                chunk = params[start : start + width]
                conn.execute(_SEND_SQL[len(chunk) // 5], chunk)
        return ids

    def receive(
        self, source: str, max_messages: int, visibility_timeout: float
    ) -> list[BufferMessage]:
        validate_source_name(source)
        if max_messages <= 0:
            return []
        hide_for = max(0.0, float(visibility_timeout))
        out: list[BufferMessage] = []
        with self._db.write(f"receiving messages of source {source!r}") as conn:
            now = self._clock()
            after = 0
            while len(out) < max_messages:
                # Walk forward by seq: every row seen is either handed out or moved to
                # the dead-letter table, so a zero visibility timeout cannot loop.
                rows = conn.execute(
                    "SELECT seq, message_id, body, sent_at, receive_count FROM lip_buffer "
                    "WHERE source = ? AND seq > ? AND visible_at <= ? ORDER BY seq LIMIT ?",
                    (source, after, now, min(_CHUNK, max_messages - len(out))),
                ).fetchall()
                if not rows:
                    break
                after = rows[-1][0]
                dead = [r[0] for r in rows if r[4] + 1 > self.max_receives]
                if dead:
                    self._bury(conn, dead, now)
                updates: list[tuple[int, float, str, int]] = []
                for seq, message_id, body, sent_at, count in rows:
                    if count + 1 > self.max_receives:
                        continue
                    receipt = f"{message_id}:{uuid.uuid4().hex}"
                    updates.append((count + 1, now + hide_for, receipt, seq))
                    out.append(
                        BufferMessage(
                            message_id=message_id,
                            receipt=receipt,
                            body=bytes(body),
                            receive_count=count + 1,
                            sent_at=sent_at,
                        )
                    )
                conn.executemany(
                    "UPDATE lip_buffer SET receive_count = ?, visible_at = ?, receipt = ? "
                    "WHERE seq = ?",
                    updates,
                )
        return out

    @staticmethod
    def _bury(conn: sqlite3.Connection, seqs: Sequence[int], now: float) -> None:
        marks = ",".join("?" * len(seqs))
        conn.execute(
            "INSERT INTO lip_buffer_dead (source, message_id, body, sent_at, receive_count, "  # noqa: S608
            "dead_at) SELECT source, message_id, body, sent_at, receive_count, ? "
            f"FROM lip_buffer WHERE seq IN ({marks}) ORDER BY seq",
            (now, *seqs),
        )
        conn.execute(f"DELETE FROM lip_buffer WHERE seq IN ({marks})", tuple(seqs))  # noqa: S608

    def delete(self, source: str, receipts: Sequence[str]) -> None:
        """Delete by current receipt; a stale or unknown receipt deletes nothing (the
        message went back to the queue and someone else holds it now)."""
        validate_source_name(source)
        if not receipts:
            return
        with self._db.write(f"deleting messages of source {source!r}") as conn:
            conn.executemany(
                "DELETE FROM lip_buffer WHERE receipt = ? AND source = ?",
                [(r, source) for r in dict.fromkeys(receipts)],
            )

    def depth(self, source: str) -> BufferDepth:
        validate_source_name(source)
        with self._db.read(f"measuring the buffer of source {source!r}") as conn:
            now = self._clock()
            count, hidden, oldest = conn.execute(
                "SELECT count(*), coalesce(sum(visible_at > ?), 0), min(sent_at) "
                "FROM lip_buffer WHERE source = ?",
                (now, source),
            ).fetchone()
            (dead,) = conn.execute(
                "SELECT count(*) FROM lip_buffer_dead WHERE source = ?", (source,)
            ).fetchone()
        age = None if oldest is None else max(0.0, now - float(oldest))
        return BufferDepth(
            messages=int(count),
            oldest_age_seconds=age,
            dead_letters=int(dead),
            in_flight=int(hidden),
        )

    def dead_letters(self, source: str, max_messages: int = 10) -> list[BufferMessage]:
        """Oldest dead letters first. Their ``receipt`` is a fresh token that deletes
        nothing: dead letters leave only through ``redrive``."""
        validate_source_name(source)
        if max_messages <= 0:
            return []
        with self._db.read(f"reading dead letters of source {source!r}") as conn:
            rows = conn.execute(
                "SELECT message_id, body, sent_at, receive_count FROM lip_buffer_dead "
                "WHERE source = ? ORDER BY seq LIMIT ?",
                (source, max_messages),
            ).fetchall()
        return [
            BufferMessage(
                message_id=mid,
                receipt=f"dead:{uuid.uuid4().hex}",
                body=bytes(body),
                receive_count=count,
                sent_at=sent_at,
            )
            for mid, body, sent_at, count in rows
        ]

    def redrive(self, source: str) -> int:
        """Move dead letters back in chunks (short transactions), receive count reset,
        original ``sent_at`` and message id kept so age and tracing stay truthful."""
        validate_source_name(source)
        moved = 0
        with self._db.read(f"counting dead letters of source {source!r}") as conn:
            (pending,) = conn.execute(
                "SELECT count(*) FROM lip_buffer_dead WHERE source = ?", (source,)
            ).fetchone()
        # Bounded by what was there at the start, so letters dying meanwhile (a drain
        # that keeps failing) cannot keep this loop alive.
        for _ in range(int(pending) // _CHUNK + 1):
            with self._db.write(f"redriving dead letters of source {source!r}") as conn:
                seqs = [
                    r[0]
                    for r in conn.execute(
                        "SELECT seq FROM lip_buffer_dead WHERE source = ? ORDER BY seq LIMIT ?",
                        (source, _CHUNK),
                    )
                ]
                if not seqs:
                    break
                marks = ",".join("?" * len(seqs))
                now = self._clock()
                conn.execute(
                    "INSERT INTO lip_buffer (source, message_id, body, sent_at, "  # noqa: S608
                    "receive_count, visible_at) SELECT source, message_id, body, sent_at, "
                    f"0, ? FROM lip_buffer_dead WHERE seq IN ({marks}) ORDER BY seq",
                    (now, *seqs),
                )
                conn.execute(
                    f"DELETE FROM lip_buffer_dead WHERE seq IN ({marks})",  # noqa: S608
                    tuple(seqs),
                )
            moved += len(seqs)
        return moved

    def close(self) -> None:
        self._checkpointer.close()
        self._db.close()
        if self._deferred is not None:
            self._deferred.close()
