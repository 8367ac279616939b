"""Where lake objects and quarantined input are stored: a local directory (the
embedded default) or S3 with SSE-KMS. Both write whole objects atomically; callers
pass lake-relative keys built by ``layout``.
"""

from __future__ import annotations

import os
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from lip_dagster.errors import LakeReadError, LakeWriteError
from lip_dagster.lake.layout import parse_object_key, validate_source_name


class LakeBackend(ABC):
    """An object store holding nothing but lake objects."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` so that no reader ever sees part of it."""

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

    def put(self, key: str, data: bytes) -> None:
        dest = self._path(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.tmp_dir, prefix=".put-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise LakeWriteError(f"could not write lake object {key}: {exc.strerror}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

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

    def put(self, key: str, data: bytes) -> None:
        source, bucket, s3key = self._loc(key)
        try:
            self.client.put_object(
                Bucket=bucket,
                Key=s3key,
                Body=data,
                ContentType="application/x-ndjson",
                ContentEncoding="gzip",
                ServerSideEncryption="aws:kms",
                SSEKMSKeyId=self.kms_key_for(source),
            )
        except (ClientError, BotoCoreError) as exc:
            raise LakeWriteError(f"could not put s3://{bucket}/{s3key}: {exc}") from exc

    def exists(self, key: str) -> bool:
        _, bucket, s3key = self._loc(key)
        try:
            self.client.head_object(Bucket=bucket, Key=s3key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
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
    def put(self, source: str, name: str, data: bytes, reason: str) -> str:
        """Store ``data`` and ``reason``; returns where it went."""

    @abstractmethod
    def count(self, source: str) -> int: ...


def _quarantine_name(name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:120]
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}_{safe or 'input'}"


class LocalQuarantine(Quarantine):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def put(self, source: str, name: str, data: bytes, reason: str) -> str:
        d = self.root / validate_source_name(source)
        d.mkdir(parents=True, exist_ok=True)
        base = d / _quarantine_name(name)
        base.with_suffix(".reason.json").write_bytes(
            orjson.dumps({"source": source, "name": name, "reason": reason})
        )
        base.with_suffix(".data").write_bytes(data)
        return str(base)

    def count(self, source: str) -> int:
        d = self.root / validate_source_name(source)
        return len(list(d.glob("*.data"))) if d.is_dir() else 0


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

    def put(self, source: str, name: str, data: bytes, reason: str) -> str:
        bucket = self.bucket_for(validate_source_name(source))
        key = f"{self.prefix}{source}/{_quarantine_name(name)}"
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_for(source)}
        try:
            self.client.put_object(Bucket=bucket, Key=key + ".data", Body=data, **extra)
            self.client.put_object(
                Bucket=bucket,
                Key=key + ".reason.json",
                Body=orjson.dumps({"source": source, "name": name, "reason": reason}),
                **extra,
            )
        except (ClientError, BotoCoreError) as exc:
            raise LakeWriteError(f"could not quarantine to s3://{bucket}/{key}: {exc}") from exc
        return f"s3://{bucket}/{key}"

    def count(self, source: str) -> int:
        bucket = self.bucket_for(validate_source_name(source))
        paginator = self.client.get_paginator("list_objects_v2")
        n = 0
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{self.prefix}{source}/"):
            n += sum(1 for o in page.get("Contents", []) if o["Key"].endswith(".data"))
        return n
