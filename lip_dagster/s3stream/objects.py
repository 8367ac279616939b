"""Where vendor objects are read from, and how their arrival is announced.

``ObjectSource`` (list after a key, head, stream a body) has two implementations,
picked by the backend like every other store: ``LocalObjectSource`` (a landing
directory that plays the vendor's bucket, the embedded default) and
``S3ObjectSource`` (the vendor's bucket, through a boto3 client with timeouts and
bounded retries). ``ArrivalQueue`` is the SQS queue the bucket's
``s3:ObjectCreated:*`` notifications go to; only the AWS backend has one.

Vendor objects are only ever read: nothing here can put, copy or delete one.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lip_dagster.errors import ConfigError, StateError
from lip_dagster.lake.layout import validate_source_name

READ_CHUNK = 1 << 20
_STREAM_ATTEMPTS = 4


class ObjectReadError(StateError):
    """One vendor object could not be read: access denied (the bucket policy, or the
    KMS key the vendor encrypted it with), a server error that outlasted botocore's
    retries, a body that kept breaking off. Only that object failed, so the transcoder
    goes on with the others and the run then fails naming it; ``code`` is the S3 error
    code (``AccessDenied``) when there is one, for the quarantine reason."""

    def __init__(self, message: str, *, key: str, code: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.code = code


class ObjectMissing(ObjectReadError):
    """An announced or listed object is gone (deleted or expired before it was read)."""


class ObjectChanged(ObjectReadError):
    """An object was replaced while it was being read (its ETag changed)."""


NETWORK_CODE = "network/timeout"
"""What a read error without an S3 error code is called in run tags and reasons: a
timeout or a dropped connection that outlasted botocore's retries."""

ACCESS_DENIED_CODES = frozenset({"AccessDenied", "403", "AllAccessDisabled"})
"""S3 error codes that mean LIP may not read the object (the HEAD of a 403 has no
body, so its code is just the status)."""


def read_error_hint(code: str | None) -> str:
    """What an on-call engineer should look at for a read error code."""
    if code in ACCESS_DENIED_CODES:
        return (
            "access denied: the bucket policy or the KMS key the object is encrypted "
            "with does not let LIP's role read it (s3:GetObject, kms:Decrypt)"
        )
    if code and code.startswith("KMS."):
        return f"{code}: the KMS key the object is encrypted with cannot be used"
    if code == "InvalidObjectState":
        return "the object is archived (a Glacier storage class): restore it first"
    if code in (None, "", NETWORK_CODE):
        return (
            f"{NETWORK_CODE}: the read failed without an S3 error code (a timeout or a "
            "dropped connection that outlasted botocore's retries)"
        )
    return f"read error {code}"


@dataclass(frozen=True)
class ObjectInfo:
    """One vendor object as listed or announced. ``key`` is the full object key
    (prefix included), decoded."""

    key: str
    size: int | None = None
    last_modified: datetime | None = None
    etag: str | None = None


@dataclass(frozen=True)
class ObjectLocation:
    """Where one source's vendor objects live, as names of environment variables
    (resolved at tick or run time, so one set of definitions serves production, a
    staging account and the local demo). A missing required value raises
    ``ConfigError`` naming the variable."""

    source: str
    bucket_env: str | None = None
    prefix_env: str | None = None
    prefix_default: str = ""
    queue_env: str | None = None
    landing_dir_env: str | None = None

    def bucket(self, env: Mapping[str, str] | None = None) -> str:
        env = os.environ if env is None else env
        value = env.get(self.bucket_env) if self.bucket_env else None
        if not value:
            name = self.bucket_env or "bucket_env"
            raise ConfigError(
                f"source {self.source!r}: set {name} to the bucket the vendor writes to"
            )
        return value

    def prefix(self, env: Mapping[str, str] | None = None) -> str:
        env = os.environ if env is None else env
        raw = (env.get(self.prefix_env) if self.prefix_env else None) or self.prefix_default
        if raw.startswith("/") or ".." in PurePosixPath(raw).parts:
            raise ConfigError(
                f"source {self.source!r}: {self.prefix_env or 'prefix'} must be a relative "
                f"key prefix, got {raw!r}"
            )
        return raw

    def queue_url(self, env: Mapping[str, str] | None = None) -> str | None:
        env = os.environ if env is None else env
        value = env.get(self.queue_env) if self.queue_env else None
        if value and not value.startswith(("https://", "http://")):
            raise ConfigError(
                f"source {self.source!r}: {self.queue_env} must be an SQS queue URL, got {value!r}"
            )
        return value or None

    def landing_dir(self, home: Path, env: Mapping[str, str] | None = None) -> Path:
        env = os.environ if env is None else env
        value = env.get(self.landing_dir_env) if self.landing_dir_env else None
        if value:
            return Path(value).expanduser().absolute()
        return home / "landing" / validate_source_name(self.source)


class ObjectSource(ABC):
    """Read-only access to the objects a vendor writes."""

    prefix: str = ""
    bucket: str | None = None  # the S3 bucket, where there is one

    @abstractmethod
    def list_all(self, under: str = "") -> Iterator[ObjectInfo]:
        """Every object under the prefix (and below it, under ``under``), a page at a
        time (never all keys at once: the caller keeps only the new ones)."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Size, time and ETag of one object; raises ``ObjectMissing`` if it is gone,
        ``ObjectReadError`` if it cannot be read."""

    @abstractmethod
    def iter_bytes(self, key: str, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
        """The object's bytes, a chunk at a time (never the whole body at once)."""

    def open(self, key: str, chunk_size: int = READ_CHUNK) -> tuple[ObjectInfo, Iterator[bytes]]:
        """The object's metadata and its bytes, from one request where the store
        allows (a GET carries size, time and ETag: no separate HEAD)."""
        return self.head(key), self.iter_bytes(key, chunk_size)

    @abstractmethod
    def describe(self, key: str = "") -> str:
        """Where an object is, for logs, metadata and quarantine reasons."""

    def kms_key(self, key: str) -> str | None:
        """The KMS key the object is encrypted with; None where objects are not
        encrypted that way (a landing directory)."""
        return None

    def _missing(self, key: str) -> ObjectMissing:
        return ObjectMissing(f"object {self.describe(key)} does not exist", key=key)

    def owns(self, key: str) -> bool:
        """Whether ``key`` is under this source's prefix: an announced key outside it
        was not written for this source and is not read."""
        return key.startswith(self.prefix) and not key.endswith("/")


class LocalObjectSource(ObjectSource):
    """A directory that plays the vendor's bucket (the embedded default).

    Keys are ``/``-joined paths relative to the directory. Hidden files (a name
    starting with ``.``) are skipped: a writer that renames its temporary file into
    place, as the simulator does, never shows a half-written object."""

    def __init__(self, root: Path, prefix: str = "") -> None:
        self.root = Path(root)
        self.prefix = prefix

    def _path(self, key: str) -> Path:
        p = PurePosixPath(key)
        if p.is_absolute() or ".." in p.parts or not key or "\x00" in key:
            raise ObjectReadError(
                f"refusing object key {key!r}: not a plain relative key", key=key, code="InvalidKey"
            )
        return self.root / key

    def list_all(self, under: str = "") -> Iterator[ObjectInfo]:
        full = self.prefix + under
        # walk only the deepest directory the key prefix names, not the whole tree
        top = self.root / PurePosixPath(full).parent if "/" in full else self.root
        if not top.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for f in filenames:
                if f.startswith("."):
                    continue
                key = f if rel == "." else f"{rel}/{f}"
                if key.startswith(full):
                    try:
                        yield self._info(key)
                    except FileNotFoundError:
                        continue  # removed between the walk and the stat: not there

    def _info(self, key: str) -> ObjectInfo:
        st = self._path(key).stat()
        return ObjectInfo(
            key=key,
            size=st.st_size,
            last_modified=datetime.fromtimestamp(st.st_mtime, tz=UTC),
            etag=f"{st.st_size:x}-{st.st_mtime_ns:x}",
        )

    def head(self, key: str) -> ObjectInfo:
        try:
            return self._info(key)
        except FileNotFoundError:
            raise self._missing(key) from None
        except OSError as exc:
            raise self._error(key, exc) from exc

    def iter_bytes(self, key: str, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
        try:
            fh = self._path(key).open("rb")
        except FileNotFoundError:
            raise self._missing(key) from None
        except OSError as exc:
            raise self._error(key, exc) from exc
        with fh:
            while True:
                try:
                    chunk = fh.read(chunk_size)
                except OSError as exc:
                    raise self._error(key, exc) from exc
                if not chunk:
                    return
                yield chunk

    def _error(self, key: str, exc: OSError) -> ObjectReadError:
        code = "AccessDenied" if isinstance(exc, PermissionError) else type(exc).__name__
        return ObjectReadError(
            f"could not read {self.describe(key)}: {exc.strerror or exc}", key=key, code=code
        )

    def describe(self, key: str = "") -> str:
        return str(self.root / key) if key else str(self.root)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3ObjectSource(ObjectSource):
    """The vendor's bucket. The client comes from ``AwsBackend.client("s3")``
    (endpoint URL, connect/read timeouts, bounded retries). A body that breaks off
    mid-stream is resumed with a ranged GET pinned to the object's ETag, at most a
    few times, so a dropped connection 150 MB into an object does not restart it."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def list_all(self, under: str = "") -> Iterator[ObjectInfo]:
        full = self.prefix + under
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full, "MaxKeys": 1000}
        while True:
            try:
                page = self.client.list_objects_v2(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise StateError(f"could not list s3://{self.bucket}/{full}: {exc}") from exc
            for obj in page.get("Contents", []):
                yield ObjectInfo(
                    key=obj["Key"],
                    size=obj.get("Size"),
                    last_modified=obj.get("LastModified"),
                    etag=str(obj.get("ETag", "")).strip('"') or None,
                )
            if not page.get("IsTruncated") or not page.get("NextContinuationToken"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def _head(self, key: str) -> dict[str, Any]:
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                raise self._missing(key) from None
            raise self._error(key, exc, _code(exc)) from exc
        except BotoCoreError as exc:
            raise self._error(key, exc) from exc

    def head(self, key: str) -> ObjectInfo:
        h = self._head(key)
        return ObjectInfo(
            key=key,
            size=h.get("ContentLength"),
            last_modified=h.get("LastModified"),
            etag=str(h.get("ETag", "")).strip('"') or None,
        )

    def kms_key(self, key: str) -> str | None:
        return self._head(key).get("SSEKMSKeyId")

    def _get(self, key: str, offset: int = 0, etag: str | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if offset:
            kwargs["Range"] = f"bytes={offset}-"
            if etag:
                kwargs["IfMatch"] = etag
        try:
            return dict(self.client.get_object(**kwargs))
        except ClientError as exc:
            code = _code(exc)
            if code in ("404", "NoSuchKey", "NotFound"):
                raise self._missing(key) from None
            if code in ("PreconditionFailed", "412"):
                raise ObjectChanged(
                    f"object {self.describe(key)} changed while it was read", key=key, code=code
                ) from exc
            raise self._error(key, exc, code) from exc
        except BotoCoreError as exc:
            raise self._error(key, exc) from exc

    def _error(self, key: str, exc: Exception, code: str | None = None) -> ObjectReadError:
        return ObjectReadError(f"could not read {self.describe(key)}: {exc}", key=key, code=code)

    def open(self, key: str, chunk_size: int = READ_CHUNK) -> tuple[ObjectInfo, Iterator[bytes]]:
        resp = self._get(key)
        info = ObjectInfo(
            key=key,
            size=resp.get("ContentLength"),
            last_modified=resp.get("LastModified"),
            etag=str(resp.get("ETag", "")).strip('"') or None,
        )
        return info, self._stream(key, resp, chunk_size)

    def iter_bytes(self, key: str, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
        return self._stream(key, None, chunk_size)

    def _stream(self, key: str, resp: dict[str, Any] | None, chunk_size: int) -> Iterator[bytes]:
        offset = 0
        etag: str | None = None
        attempt = 0
        while True:
            if resp is None:
                # botocore has retried the request itself; what is left is final
                resp = self._get(key, offset, etag)
            etag = etag or resp.get("ETag")
            body = resp["Body"]
            try:
                for chunk in body.iter_chunks(chunk_size):
                    offset += len(chunk)
                    yield chunk
                return
            except BotoCoreError as exc:  # the body broke off: resume where it stopped
                error = exc
            finally:
                body.close()
            resp = None
            attempt += 1
            if attempt >= _STREAM_ATTEMPTS:
                raise ObjectReadError(
                    f"could not read {self.describe(key)} after {attempt} attempts "
                    f"({offset} bytes read): {error}",
                    key=key,
                    code="IncompleteBody",
                ) from error
            time.sleep(min(8.0, 0.5 * 2**attempt))

    def describe(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key or self.prefix}"


# ----------------------------------------------------------------------------- SQS


@dataclass(frozen=True)
class QueueMessage:
    receipt: str
    body: bytes
    message_id: str


class ArrivalQueue(ABC):
    """The queue a bucket's ``s3:ObjectCreated:*`` notifications arrive on."""

    @abstractmethod
    def receive(self, max_messages: int, visibility_timeout: int) -> list[QueueMessage]:
        """Up to ``max_messages`` messages, hidden for ``visibility_timeout`` seconds."""

    @abstractmethod
    def delete(self, receipts: Sequence[str]) -> int:
        """Delete handled messages; returns how many the queue refused (an expired
        receipt: the message comes back and is handled again, harmlessly)."""

    @abstractmethod
    def extend(self, receipts: Sequence[str], visibility_timeout: int) -> int:
        """Keep messages hidden for another ``visibility_timeout`` seconds while the
        runs of their objects have not landed them; returns how many the queue
        refused (the message comes back and is recognised by its id)."""

    @abstractmethod
    def describe(self) -> str: ...


class SqsArrivalQueue(ArrivalQueue):
    """An SQS queue, through a client from ``AwsBackend.client("sqs")``.

    The first round trip of a receive long-polls for ``wait_seconds``: a short poll
    samples some SQS hosts and may answer empty while notifications wait, and a `lip
    run` without keys would then land nothing and succeed. A long poll answers as soon
    as a message is there, so only a tick of an empty queue waits, briefly."""

    wait_seconds: int = 1

    def __init__(self, client: Any, queue_url: str) -> None:
        self.client = client
        self.queue_url = queue_url

    def receive(self, max_messages: int, visibility_timeout: int) -> list[QueueMessage]:
        out: list[QueueMessage] = []
        try:
            while len(out) < max_messages:
                resp = self.client.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=min(10, max_messages - len(out)),
                    VisibilityTimeout=visibility_timeout,
                    # once some are in hand, messages a short poll misses wait for
                    # the next tick
                    WaitTimeSeconds=0 if out else self.wait_seconds,
                )
                msgs = resp.get("Messages", [])
                for m in msgs:
                    out.append(
                        QueueMessage(
                            receipt=m["ReceiptHandle"],
                            body=str(m.get("Body", "")).encode(),
                            message_id=m.get("MessageId", ""),
                        )
                    )
                if not msgs:
                    break
        except (ClientError, BotoCoreError) as exc:
            raise StateError(f"could not receive from {self.describe()}: {exc}") from exc
        return out

    def delete(self, receipts: Sequence[str]) -> int:
        return self._batched(self.client.delete_message_batch, receipts, {}, "delete")

    def extend(self, receipts: Sequence[str], visibility_timeout: int) -> int:
        return self._batched(
            self.client.change_message_visibility_batch,
            receipts,
            {"VisibilityTimeout": visibility_timeout},
            "changing visibility",
        )

    def _batched(self, call: Any, receipts: Sequence[str], extra: dict[str, Any], what: str) -> int:
        """``call`` on receipts 10 at a time (SQS's batch limit); how many SQS refused."""
        refused = 0
        for i in range(0, len(receipts), 10):
            batch = receipts[i : i + 10]
            try:
                resp = call(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(n), "ReceiptHandle": r, **extra} for n, r in enumerate(batch)
                    ],
                )
            except (ClientError, BotoCoreError) as exc:
                raise StateError(f"SQS queue {self.describe()}: {what} failed: {exc}") from exc
            refused += len(resp.get("Failed", []))
        return refused

    def describe(self) -> str:
        return self.queue_url
