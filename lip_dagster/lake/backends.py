"""Where lake objects and quarantined input are stored: a local directory (the
embedded default) or S3 with SSE-KMS. Both write whole objects atomically; callers
pass lake-relative keys built by ``layout``.
"""

from __future__ import annotations

import os
import stat
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from lip_dagster.errors import LakeReadError, LakeWriteError
from lip_dagster.lake.layout import parse_object_key, validate_source_name

STALE_TEMPORARY_SECONDS = 24 * 3600.0
"""Age past which a temporary file of ``write_atomically`` is a leftover: a write takes
seconds, so a file this old belongs to a process that was killed before it could
delete it (``finally`` does not run on SIGKILL or a power cut)."""

_TEMPORARY_GLOB = ".put-*.tmp"


class LakeBackend(ABC):
    """An object store holding nothing but lake objects."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> bool:
        """Write ``data`` at ``key`` so that no reader ever sees part of it, unless an
        object is there already: then write nothing and return False. Objects are
        immutable (DESIGN §1); the one object a put finds in place is the one an
        earlier run put under the same key and died before marking, and the writer
        reads that instead of rewriting it with other bytes (a new ``ingested_at``),
        which on S3 would also notify the SAM of the same key a second time."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def get(self, key: str) -> bytes: ...

    @abstractmethod
    def list_keys(self, source: str, prefix: str = "") -> Iterator[str]:
        """Lake-relative keys of one source under ``prefix`` (a key prefix)."""

    @abstractmethod
    def describe(self) -> str:
        """Where the lake is, for logs and the UI (never credentials)."""

    def object_kms_key(self, key: str) -> str | None:
        """The KMS key an object is encrypted with (None where not applicable)."""
        return None

    def prune_temporary(self, older_than_seconds: float = STALE_TEMPORARY_SECONDS) -> int:
        """Delete what writes killed mid-way left behind, older than
        ``older_than_seconds``; returns how many. Nothing to do where a put leaves
        nothing behind (S3: an upload that never completed creates no object)."""
        return 0


def prune_temporary_files(tmp_dir: Path, older_than_seconds: float) -> int:
    """Delete ``write_atomically``'s temporary files in ``tmp_dir`` last modified more
    than ``older_than_seconds`` ago; returns how many. Only names it makes are
    touched. A file deleted under a write still in progress (a write hung for a day)
    makes that write fail, and its run retry, rather than land anything wrong."""
    if not tmp_dir.is_dir():
        return 0
    cutoff = time.time() - older_than_seconds
    deleted = 0
    try:
        for path in tmp_dir.glob(_TEMPORARY_GLOB):
            try:
                st = path.lstat()
                if not stat.S_ISREG(st.st_mode) or st.st_mtime >= cutoff:
                    continue
                path.unlink()
            except FileNotFoundError:  # deleted meanwhile, by its own write or another prune
                continue
            deleted += 1
    except OSError as exc:
        raise LakeWriteError(
            f"could not delete stale temporary files in {tmp_dir}: {exc.strerror}"
        ) from exc
    return deleted


def write_atomically(dest: Path, data: bytes, tmp_dir: Path, *, replace: bool = True) -> bool:
    """Write ``data`` to a temporary file in ``tmp_dir`` (same filesystem as ``dest``),
    fsync it and move it to ``dest``: a reader sees the whole file or none, even after
    a crash, and a failed write leaves no temporary file behind. ``replace=False``
    never replaces ``dest``: the file is hard-linked into place, which fails if
    ``dest`` exists (atomic, also between processes); returns False then.

    The new directory entry is made durable too (an fsync of ``dest``'s directory, and
    of the parent of each directory this call created): the caller marks the object
    landed once this returns, and a power cut that kept the mark but lost the
    directory entry would lose the events for good."""
    created = _make_dirs(dest.parent)
    # the name prune_temporary_files looks for
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix=".put-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, dest)
        else:
            try:
                os.link(tmp, dest)
            except FileExistsError:
                return False
    finally:
        Path(tmp).unlink(missing_ok=True)
    for directory in (dest.parent, *(d.parent for d in created)):
        _fsync_dir(directory)
    return True


def _make_dirs(path: Path) -> list[Path]:
    """``mkdir -p path``; returns the directories it created, deepest first."""
    missing: list[Path] = []
    p = path
    while not p.is_dir():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
    return missing


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalLake(LakeBackend):
    """A directory lake. Objects are written to a temporary file in ``tmp_dir`` (same
    filesystem, outside the lake root), flushed, fsynced and renamed into place, so a
    reader sees a whole object or none, and the lake root never holds a temp file."""

    def __init__(self, root: Path, tmp_dir: Path) -> None:
        self.root = Path(root)
        self.tmp_dir = Path(tmp_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        if self.tmp_dir.resolve().is_relative_to(self.root.resolve()):
            raise LakeWriteError(f"temporary directory {self.tmp_dir} must be outside the lake")

    def _path(self, key: str) -> Path:
        parse_object_key(key)  # untrusted keys never choose a path
        return self.root / key

    def put(self, key: str, data: bytes) -> bool:
        dest = self._path(key)
        try:
            return write_atomically(dest, data, self.tmp_dir, replace=False)
        except OSError as exc:
            raise LakeWriteError(f"could not write lake object {key}: {exc.strerror}") from exc

    def exists(self, key: str) -> bool:
        """Absent only when the file is not there: a directory that cannot be read is
        an error (``LakeReadError``), never "absent", or the writer would land the
        events of an object it cannot see a second time. (``Path.is_file`` says False
        for every ``OSError`` from Python 3.14.)"""
        try:
            return stat.S_ISREG(os.stat(self._path(key)).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise LakeReadError(
                f"could not check whether lake object {key} exists: {exc.strerror}"
            ) from exc

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise LakeReadError(f"could not read lake object {key}: {exc.strerror}") from exc

    def list_keys(self, source: str, prefix: str = "") -> Iterator[str]:
        base = self.root / f"source={validate_source_name(source)}"
        if not base.is_dir():
            return
        for p in sorted(base.rglob("*")):
            if p.is_file():
                rel = p.relative_to(self.root).as_posix()
                if rel.startswith(prefix):
                    yield rel

    def describe(self) -> str:
        return str(self.root)

    def prune_temporary(self, older_than_seconds: float = STALE_TEMPORARY_SECONDS) -> int:
        return prune_temporary_files(self.tmp_dir, older_than_seconds)


class S3Lake(LakeBackend):
    """An S3 lake: every put carries SSE-KMS with the source's own key.

    ``bucket_for`` and ``kms_key_for`` map a source name to its bucket and key (one
    isolated stack per source by default); ``prefix`` is the lake prefix the SAM
    indexes, so quarantine can live beside it, outside it.
    """

    def __init__(
        self,
        client: Any,
        bucket_for: Callable[[str], str],
        kms_key_for: Callable[[str], str],
        prefix: str = "",
    ) -> None:
        self.client = client
        self.bucket_for = bucket_for
        self.kms_key_for = kms_key_for
        self.prefix = prefix

    def _loc(self, key: str) -> tuple[str, str, str]:
        source, _ = parse_object_key(key)
        return source, self.bucket_for(source), self.prefix + key

    def put(self, key: str, data: bytes) -> bool:
        source, bucket, s3key = self._loc(key)
        try:
            self.client.put_object(
                Bucket=bucket,
                Key=s3key,
                Body=data,
                # the object is the gzip file its .gz key names: no Content-Encoding,
                # or HTTP clients (browsers, requests, some SDKs) gunzip it on the way
                # and a reader that gunzips by the key's suffix fails
                ContentType="application/gzip",
                ServerSideEncryption="aws:kms",
                SSEKMSKeyId=self.kms_key_for(source),
                IfNoneMatch="*",  # S3 conditional write: create, never replace
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                return False
            raise LakeWriteError(f"could not put s3://{bucket}/{s3key}: {exc}") from exc
        except BotoCoreError as exc:
            raise LakeWriteError(f"could not put s3://{bucket}/{s3key}: {exc}") from exc
        return True

    def exists(self, key: str) -> bool:
        _, bucket, s3key = self._loc(key)
        try:
            self.client.head_object(Bucket=bucket, Key=s3key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise LakeWriteError(f"could not check s3://{bucket}/{s3key}: {exc}") from exc
        except BotoCoreError as exc:  # a timeout, a dropped connection: retried later
            raise LakeWriteError(f"could not check s3://{bucket}/{s3key}: {exc}") from exc
        return True

    def get(self, key: str) -> bytes:
        _, bucket, s3key = self._loc(key)
        try:
            body = self.client.get_object(Bucket=bucket, Key=s3key)["Body"]
            return bytes(body.read())
        except (ClientError, BotoCoreError) as exc:
            raise LakeReadError(f"could not read s3://{bucket}/{s3key}: {exc}") from exc

    def object_kms_key(self, key: str) -> str | None:
        _, bucket, s3key = self._loc(key)
        try:
            head = self.client.head_object(Bucket=bucket, Key=s3key)
        except (ClientError, BotoCoreError) as exc:
            raise LakeReadError(
                f"could not read the encryption of s3://{bucket}/{s3key}: {exc}"
            ) from exc
        return head.get("SSEKMSKeyId")

    def list_keys(self, source: str, prefix: str = "") -> Iterator[str]:
        bucket = self.bucket_for(validate_source_name(source))
        full = self.prefix + (prefix or f"source={source}/")
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=full):
                for obj in page.get("Contents", []):
                    yield obj["Key"][len(self.prefix) :]
        except (ClientError, BotoCoreError) as exc:
            raise LakeReadError(f"could not list s3://{bucket}/{full}: {exc}") from exc

    def describe(self) -> str:
        return f"s3://{self.bucket_for('<source>')}/{self.prefix}"


class Quarantine(ABC):
    """Input we could not land, kept with its reason, outside the lake root."""

    @abstractmethod
    def put(
        self, source: str, name: str, data: bytes, reason: str, *, stable_id: str | None = None
    ) -> str:
        """Store ``data`` and ``reason``; returns where it went.

        ``stable_id``: a caller that may quarantine the same input again (a step or
        run retry reading the same damaged object, a sensor tick re-evaluated after
        it failed) passes an id derived from what the input is, and the item is
        written only if no item with that id exists yet: a retry adds no copy, so
        the quarantine count stays the number of distinct bad inputs. Without it,
        every put is a new item (a uuid in the name)."""

    @abstractmethod
    def count(self, source: str) -> int: ...

    def prune_temporary(self, older_than_seconds: float = STALE_TEMPORARY_SECONDS) -> int:
        """As ``LakeBackend.prune_temporary``: nothing to do on S3."""
        return 0


QUARANTINE_NAME_CHARS = 120
"""How much of the caller's name (a vendor key, ``notification``) a quarantine name
keeps; the full name is in the reason beside the data."""


def quarantine_name(name: str, stable_id: str | None = None) -> str:
    """``<YYYYMMDDTHHMMSS.ffffffZ>_<name, made safe, cut>_<uuid4 hex>``: sorts by the
    time it was quarantined, still says what it was, and is unique, so nothing put in
    quarantine is ever overwritten. Time and name alone are not unique: the S3 sensor
    quarantines every bad notification under ``notification`` in one loop, and
    organization-trail CloudTrail keys differ only past the cut. Only ASCII letters,
    digits and ``-_.`` are kept (the name is untrusted and becomes a file name).

    With ``stable_id``: ``<name, made safe, cut>_<stable_id, made safe>``, the same
    on every call, so a second put of the same input finds the first (no time: a
    retry an hour later must find it too)."""
    safe = _safe(name)[:QUARANTINE_NAME_CHARS] or "input"
    if stable_id is not None:
        sid = _safe(stable_id)[:64]
        if not sid:
            raise ValueError("stable_id must contain letters or digits")
        return f"{safe}_{sid}"
    t = datetime.now(UTC)
    stamp = (
        f"{t.year:04d}{t.month:02d}{t.day:02d}T{t.hour:02d}{t.minute:02d}{t.second:02d}"
        f".{t.microsecond:06d}Z"
    )
    return f"{stamp}_{safe}_{uuid.uuid4().hex}"


def _safe(name: str) -> str:
    return "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "_" for c in name)


def _reason_json(source: str, name: str, reason: str) -> bytes:
    return orjson.dumps({"source": source, "name": name, "reason": reason})


class LocalQuarantine(Quarantine):
    """``<root>/<source>/<name>.data`` with ``<name>.reason.json`` beside it (see
    ``quarantine_name``). Both are written atomically through ``tmp_dir`` (default
    ``<root>/.tmp``, which no source name can be), the reason first: a ``.data``
    that ``count`` sees always has its reason, and never half its bytes."""

    def __init__(self, root: Path, tmp_dir: Path | None = None) -> None:
        self.root = Path(root)
        self.tmp_dir = Path(tmp_dir) if tmp_dir is not None else self.root / ".tmp"

    def put(
        self, source: str, name: str, data: bytes, reason: str, *, stable_id: str | None = None
    ) -> str:
        d = self.root / validate_source_name(source)
        base = d / quarantine_name(name, stable_id)
        try:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            # With a stable id, put-if-absent: the first put's reason and data stay; a
            # crash between the two leaves a reason only, which a retry completes.
            replace = stable_id is None
            write_atomically(
                d / (base.name + ".reason.json"),
                _reason_json(source, name, reason),
                self.tmp_dir,
                replace=replace,
            )
            write_atomically(d / (base.name + ".data"), data, self.tmp_dir, replace=replace)
        except OSError as exc:
            raise LakeWriteError(
                f"could not quarantine input {name!r} of source {source!r} to {base}: "
                f"{exc.strerror}"
            ) from exc
        return str(base)

    def count(self, source: str) -> int:
        d = self.root / validate_source_name(source)
        return len(list(d.glob("*.data"))) if d.is_dir() else 0

    def prune_temporary(self, older_than_seconds: float = STALE_TEMPORARY_SECONDS) -> int:
        return prune_temporary_files(self.tmp_dir, older_than_seconds)


class S3Quarantine(Quarantine):
    """Quarantine under a prefix of the source's bucket outside the lake prefix, so
    the SAM's notifications and queries never see it."""

    def __init__(
        self,
        client: Any,
        bucket_for: Callable[[str], str],
        kms_key_for: Callable[[str], str],
        prefix: str,
    ) -> None:
        self.client = client
        self.bucket_for = bucket_for
        self.kms_key_for = kms_key_for
        self.prefix = prefix

    def put(
        self, source: str, name: str, data: bytes, reason: str, *, stable_id: str | None = None
    ) -> str:
        """Like ``LocalQuarantine.put``: the reason first, so a ``.data`` that
        ``count`` sees has its reason beside it (each put is atomic on S3). With
        ``stable_id`` each put is conditional (``If-None-Match: *``): S3 refuses it
        when the object exists, so a retry keeps the first item and adds none."""
        bucket = self.bucket_for(validate_source_name(source))
        key = f"{self.prefix}{source}/{quarantine_name(name, stable_id)}"
        extra: dict[str, str] = {
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": self.kms_key_for(source),
        }
        if stable_id is not None:
            extra["IfNoneMatch"] = "*"
        try:
            for suffix, body in (
                (".reason.json", _reason_json(source, name, reason)),
                (".data", data),
            ):
                try:
                    self.client.put_object(Bucket=bucket, Key=key + suffix, Body=body, **extra)
                except ClientError as exc:
                    if stable_id is None or not _already_there(exc):
                        raise
        except (ClientError, BotoCoreError) as exc:
            raise LakeWriteError(f"could not quarantine to s3://{bucket}/{key}: {exc}") from exc
        return f"s3://{bucket}/{key}"

    def count(self, source: str) -> int:
        bucket = self.bucket_for(validate_source_name(source))
        prefix = f"{self.prefix}{source}/"
        paginator = self.client.get_paginator("list_objects_v2")
        n = 0
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                n += sum(1 for o in page.get("Contents", []) if o["Key"].endswith(".data"))
        except (ClientError, BotoCoreError) as exc:
            where = f"s3://{bucket}/{prefix}"
            raise LakeReadError(f"could not count quarantine {where}: {exc}") from exc
        return n


_EXISTS_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
"""What S3 answers a conditional put when the object exists (412), or while another
conditional put of the same key is in flight (409): either way, an item is there."""


def _already_there(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _EXISTS_CODES
