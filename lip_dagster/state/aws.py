"""AWS state stores: DynamoDB cursor and commit log, SQS buffer, Secrets Manager.

Resources are per source, so one noisy or compromised source cannot throttle, read or
fill another's (IAM can be scoped to ``{prefix}{source}-*``):

    DynamoDB  {prefix}{source}-cursor   key: endpoint
    DynamoDB  {prefix}{source}-dedupe   key: id = "<hour>#<event_id>", TTL on expires_at
    SQS       {prefix}{source}-buffer   redrive to the DLQ after max_receives receives
    SQS       {prefix}{source}-dlq

The dedupe table has a single partition key ``id = hour#event_id`` rather than ``hour``
as partition key and ``event_id`` as sort key: every id of a page of 1,000 events
usually shares one hour, and one partition key value is limited to about 1,000 writes
per second, so an hour-keyed table would throttle every backfill. Nothing queries by
hour (expiry is DynamoDB's TTL), so spreading the writes costs nothing. The hour
cannot contain ``#``, so the key splits back unambiguously.

``ensure(source)`` creates what is missing and never deletes or replaces: a table with
another key schema is an error, other differences are returned as drift notes.

Every client has explicit connect/read timeouts and bounded ``standard`` retries, and
takes an ``endpoint_url`` so the whole path runs against a local AWS-compatible server.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError, WaiterError

from lip_dagster.errors import ConfigError, SecretNotFound, StateError
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
    MovableStatus,
    SecretStore,
)

__all__ = [
    "AwsSecretsManagerStore",
    "DynamoCursorStore",
    "DynamoDedupeStore",
    "SqsBuffer",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PREFIX = "lip-"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 20.0
DEFAULT_MAX_ATTEMPTS = 5

# Batch items DynamoDB or SQS left unprocessed (throttling) are retried this many times
# with jittered exponential backoff, then the call fails: bounded, like every retry.
_UNPROCESSED_ATTEMPTS = 8
_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 2.0

_PREFIX_RE = re.compile(r"[A-Za-z0-9_-]{0,40}\Z")
_MISSING_CODES = frozenset(
    {"ResourceNotFoundException", "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"}
)


def _client_config(
    connect_timeout: float, read_timeout: float, max_attempts: int, pool: int
) -> Config:
    return Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        max_pool_connections=pool,
    )


def _conditionally(what: str, call: Callable[..., Any], **request: Any) -> bool:
    """One conditional write: True if it was made, False if its condition did not
    hold; any other failure is a ``StateError`` naming ``what`` was being done."""
    try:
        call(**request)
    except ClientError as err:
        if _error_code(err) == "ConditionalCheckFailedException":
            return False
        raise _state_error(what, err) from err
    except BotoCoreError as err:
        raise _state_error(what, err) from err
    return True


def _error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _state_error(what: str, err: ClientError | BotoCoreError) -> StateError:
    """An error an on-call engineer can act on: what failed, AWS's code and message."""
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        code = str(error.get("Code", "unknown error"))
        message = str(error.get("Message", "")).strip()
        detail = f"{code}: {message}" if message else code
        if code in _MISSING_CODES:
            detail += " (provision it first: the store's ensure(source) creates it)"
    else:
        detail = f"{type(err).__name__}: {err}"
    return StateError(f"{what} failed: {detail}")


@contextmanager
def _aws(what: str) -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError) as err:
        raise _state_error(what, err) from err


def _backoff(attempt: int) -> None:
    time.sleep(min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt) * random.uniform(0.5, 1.0))


class _AwsStore:
    """Client construction shared by every AWS store."""

    _service = ""

    def __init__(
        self,
        *,
        session: boto3.session.Session | None,
        region_name: str | None,
        endpoint_url: str | None,
        prefix: str,
        connect_timeout: float,
        read_timeout: float,
        max_attempts: int,
        max_pool_connections: int = 10,
    ) -> None:
        if not _PREFIX_RE.match(prefix):
            raise ConfigError(
                f"AWS resource prefix {prefix!r} is not allowed: use at most 40 letters, "
                "digits, '_' or '-' (it becomes part of table and queue names)"
            )
        if max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, not {max_attempts!r}")
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        sess = session if session is not None else boto3.session.Session()
        config = _client_config(connect_timeout, read_timeout, max_attempts, max_pool_connections)
        try:
            self._client: Any = sess.client(
                self._service,
                region_name=region_name,
                endpoint_url=endpoint_url,
                config=config,
            )
        except NoRegionError as err:
            raise ConfigError(
                f"no AWS region for {self._service}: pass region_name or set AWS_REGION "
                "(or AWS_DEFAULT_REGION)"
            ) from err
        self.region_name: str = self._client.meta.region_name

    def __repr__(self) -> str:
        where = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return (
            f"{type(self).__name__}(prefix={self.prefix!r}, region_name={self.region_name!r}"
            f"{where})"
        )

    def close(self) -> None:
        self._client.close()


# --------------------------------------------------------------------------- DynamoDB


class _DynamoStore(_AwsStore):
    _service = "dynamodb"
    _suffix = ""
    _key_attribute = ""

    def table_name(self, source: str) -> str:
        validate_source_name(source)
        return f"{self.prefix}{source}-{self._suffix}"

    def _describe(self, name: str) -> dict[str, Any] | None:
        with _aws(f"describing DynamoDB table {name!r}"):
            try:
                table: dict[str, Any] = self._client.describe_table(TableName=name)["Table"]
            except ClientError as err:
                if _error_code(err) != "ResourceNotFoundException":
                    raise
                return None
        return table

    def _schema_problem(self, name: str, table: dict[str, Any]) -> str | None:
        expected = [{"AttributeName": self._key_attribute, "KeyType": "HASH"}]
        if table.get("KeySchema") == expected:
            return None
        return (
            f"DynamoDB table {name!r} exists with key schema {table.get('KeySchema')!r}, "
            f"expected {expected!r}; LIP will not replace it: rename or remove it by hand"
        )

    def _table_drift(self, source: str) -> list[str]:
        """What ``_ensure_table`` would refuse, read without changing anything."""
        name = self.table_name(source)
        table = self._describe(name)
        problem = None if table is None else self._schema_problem(name, table)
        return [problem] if problem else []

    def _ensure_table(self, source: str) -> list[str]:
        """Create the table if missing (on-demand billing, tagged with its source),
        wait until it is ACTIVE; refuse to use one whose key schema differs."""
        name = self.table_name(source)
        expected = [{"AttributeName": self._key_attribute, "KeyType": "HASH"}]
        table = self._describe(name)
        if table is None:
            log.info("creating DynamoDB table %s", name)
            with _aws(f"creating DynamoDB table {name!r}"):
                try:
                    self._client.create_table(
                        TableName=name,
                        AttributeDefinitions=[
                            {"AttributeName": self._key_attribute, "AttributeType": "S"}
                        ],
                        KeySchema=expected,
                        BillingMode="PAY_PER_REQUEST",
                        Tags=[
                            {"Key": "lip:source", "Value": source},
                            {"Key": "lip:store", "Value": self._suffix},
                        ],
                    )
                except ClientError as err:
                    # Another process created it first: fine, wait for it below.
                    if _error_code(err) != "ResourceInUseException":
                        raise
            try:
                self._client.get_waiter("table_exists").wait(
                    TableName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 60}
                )
            except (WaiterError, ClientError, BotoCoreError) as err:
                raise StateError(
                    f"DynamoDB table {name!r} did not become ACTIVE within 2 minutes: {err}"
                ) from err
            return []
        problem = self._schema_problem(name, table)
        if problem is not None:
            raise StateError(problem)
        return []


class DynamoCursorStore(_DynamoStore, CursorStore):
    """Cursors in ``{prefix}{source}-cursor``, one item per endpoint.

    A commit reads the stored item (strongly consistent), then writes with a condition
    on ``version``; the read is what lets ``high_water`` be kept as the max of two
    instants, which a DynamoDB expression cannot compare. The condition makes the pair
    atomic: if anyone committed in between, the write fails and the caller gets
    ``CursorConflict``.
    """

    _suffix = "cursor"
    _key_attribute = "endpoint"

    def __init__(
        self,
        *,
        session: boto3.session.Session | None = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        super().__init__(
            session=session,
            region_name=region_name,
            endpoint_url=endpoint_url,
            prefix=prefix,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
        )

    def ensure(self, source: str) -> list[str]:
        """Create the cursor table if missing; returns drift notes (none for now)."""
        return self._ensure_table(source)

    def drift(self, source: str) -> list[str]:
        """What ``ensure`` would refuse or leave unchanged, read without changing
        anything: what ``lip provision --plan`` must report like the run would."""
        return self._table_drift(source)

    def _read(self, table: str, endpoint: str, what: str) -> dict[str, Any] | None:
        with _aws(what):
            item = self._client.get_item(
                TableName=table, Key={"endpoint": {"S": endpoint}}, ConsistentRead=True
            ).get("Item")
        return item or None

    @staticmethod
    def _record(item: dict[str, Any]) -> CursorRecord:
        return CursorRecord(
            value=item["cursor_value"]["S"],
            version=int(item["version"]["N"]),
            high_water=item["high_water"]["S"] if "high_water" in item else None,
            updated_at=float(item["updated_at"]["N"]) if "updated_at" in item else 0.0,
        )

    def get(self, source: str, endpoint: str) -> CursorRecord | None:
        table = self.table_name(source)
        item = self._read(table, endpoint, f"reading the cursor of source {source!r}")
        return None if item is None else self._record(item)

    def commit(
        self,
        source: str,
        endpoint: str,
        value: str,
        expected_version: int | None,
        high_water: str | None = None,
    ) -> CursorRecord:
        table = self.table_name(source)
        where = f"cursor of source {source!r} endpoint {endpoint!r}"
        now = time.time()
        if expected_version is None:
            new_high = later_high_water(None, high_water, where=where)
            item: dict[str, Any] = {
                "endpoint": {"S": endpoint},
                "cursor_value": {"S": value},
                "version": {"N": "1"},
                "updated_at": {"N": repr(now)},
            }
            if new_high is not None:
                item["high_water"] = {"S": new_high}
            self._conditional(
                source,
                endpoint,
                expected_version,
                (1, now),
                lambda: self._client.put_item(
                    TableName=table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(#ep)",
                    ExpressionAttributeNames={"#ep": "endpoint"},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                ),
            )
            return CursorRecord(value=value, version=1, high_water=new_high, updated_at=now)

        stored = self._read(table, endpoint, f"reading the {where}")
        stored_version = None if stored is None else int(stored["version"]["N"])
        if stored_version != expected_version:
            raise cursor_conflict(source, endpoint, expected_version, stored_version)
        assert stored is not None
        stored_high = stored["high_water"]["S"] if "high_water" in stored else None
        new_high = later_high_water(stored_high, high_water, where=where)
        new_version = expected_version + 1
        names = {"#val": "cursor_value", "#ver": "version", "#upd": "updated_at"}
        values: dict[str, Any] = {
            ":val": {"S": value},
            ":new": {"N": str(new_version)},
            ":upd": {"N": repr(now)},
            ":expected": {"N": str(expected_version)},
        }
        update = "SET #val = :val, #ver = :new, #upd = :upd"
        if new_high is not None:
            update += ", #hw = :hw"
            names["#hw"] = "high_water"
            values[":hw"] = {"S": new_high}
        self._conditional(
            source,
            endpoint,
            expected_version,
            (new_version, now),
            lambda: self._client.update_item(
                TableName=table,
                Key={"endpoint": {"S": endpoint}},
                UpdateExpression=update,
                ConditionExpression="#ver = :expected",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ),
        )
        return CursorRecord(value=value, version=new_version, high_water=new_high, updated_at=now)

    @staticmethod
    def _conditional(
        source: str,
        endpoint: str,
        expected: int | None,
        ours: tuple[int, float],
        write: Callable[[], object],
    ) -> None:
        """``write``, a conditional write of version ``ours[0]`` stamped ``ours[1]``.
        If its answer was lost, botocore sends it again and the retry fails its
        condition against the write itself: the item then holds exactly our version
        and our timestamp, and the commit succeeded (a stale writer's item cannot
        carry our timestamp)."""
        try:
            write()
        except ClientError as err:
            if _error_code(err) == "ConditionalCheckFailedException":
                old = err.response.get("Item") or {}
                stored = int(old["version"]["N"]) if "version" in old else None
                stamped = old.get("updated_at", {}).get("N")
                if stored == ours[0] and stamped == repr(ours[1]):
                    return
                raise cursor_conflict(source, endpoint, expected, stored) from None
            raise _state_error(
                f"committing the cursor of source {source!r} endpoint {endpoint!r}", err
            ) from err
        except BotoCoreError as err:
            raise _state_error(
                f"committing the cursor of source {source!r} endpoint {endpoint!r}", err
            ) from err


class DynamoDedupeStore(_DynamoStore, DedupeStore):
    """The commit log in ``{prefix}{source}-dedupe``.

    ``accept`` and ``claim`` are conditional writes, one per id (DynamoDB has no
    conditional batch write), run on a small bounded thread pool so a page of 1,000
    ids costs about 1,000/``concurrency`` round trips, not 1,000. ``mark_landed`` and
    ``get`` use the batch APIs. Reads are strongly consistent: a claim must see the
    ``landed`` written a moment ago by a crashed run.
    """

    _suffix = "dedupe"
    _key_attribute = "id"

    def __init__(
        self,
        *,
        session: boto3.session.Session | None = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        ttl_seconds: int = 30 * 24 * 3600,
        concurrency: int = 8,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        if ttl_seconds <= 0:
            raise ConfigError(f"dedupe ttl_seconds must be positive, not {ttl_seconds!r}")
        if not 1 <= concurrency <= 64:
            raise ConfigError(f"dedupe concurrency must be 1 to 64, not {concurrency!r}")
        super().__init__(
            session=session,
            region_name=region_name,
            endpoint_url=endpoint_url,
            prefix=prefix,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
            max_pool_connections=max(10, concurrency + 2),
        )
        self.ttl_seconds = ttl_seconds
        self._concurrency = concurrency
        # per source: whether ``claim`` reads the ids' states before writing
        self._read_first: dict[str, bool] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _ttl(self, name: str) -> tuple[bool, str | None]:
        """Whether TTL is on, and the drift note when it is on another attribute."""
        with _aws(f"reading the TTL setting of DynamoDB table {name!r}"):
            ttl = self._client.describe_time_to_live(TableName=name).get(
                "TimeToLiveDescription", {}
            )
        if ttl.get("TimeToLiveStatus", "DISABLED") not in ("ENABLED", "ENABLING"):
            return False, None
        attribute = ttl.get("AttributeName")
        if attribute == "expires_at":
            return True, None
        return True, (
            f"DynamoDB table {name!r} expires items on {attribute!r}, not "
            "'expires_at': dedupe ids will never expire"
        )

    def drift(self, source: str) -> list[str]:
        """What ``ensure`` would refuse or leave unchanged, read without changing
        anything: what ``lip provision --plan`` must report like the run would."""
        name = self.table_name(source)
        table = self._describe(name)
        if table is None:
            return []
        problem = self._schema_problem(name, table)
        if problem is not None:
            return [problem]
        _, note = self._ttl(name)
        return [note] if note else []

    def ensure(self, source: str) -> list[str]:
        """Create the table if missing and make sure TTL deletes on ``expires_at``.
        Returns drift notes (TTL on another attribute is reported, not changed)."""
        drift = self._ensure_table(source)
        name = self.table_name(source)
        on, note = self._ttl(name)
        if on:
            return [*drift, note] if note else drift
        log.info("enabling TTL on expires_at for DynamoDB table %s", name)
        with _aws(f"enabling TTL on DynamoDB table {name!r}"):
            self._client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
            )
        return drift

    # -- helpers

    def _run(self, fn: Callable[[T], Any], items: Sequence[T]) -> list[Any]:
        """Apply ``fn`` to every item on the pool; waits for all before raising the
        first error, so nothing of this call is still writing after it returns."""
        if len(items) <= 1 or self._concurrency == 1:
            return [fn(item) for item in items]
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self._concurrency, thread_name_prefix="lip-dedupe"
                )
            pool = self._pool
        futures: list[Future[Any]] = [pool.submit(fn, item) for item in items]
        wait(futures)
        return [f.result() for f in futures]

    def _expires(self) -> str:
        return str(math.ceil(time.time() + self.ttl_seconds))

    @staticmethod
    def _id(key: DedupeKey) -> str:
        return f"{key.bucket}#{key.event_id}"

    @staticmethod
    def _key(item_id: str) -> DedupeKey:
        hour, _, event_id = item_id.partition("#")
        return DedupeKey(hour, event_id)

    @staticmethod
    def _state(item: dict[str, Any]) -> IdState:
        status = item["status"]["S"]
        object_key = item["object_key"]["S"] if "object_key" in item else None
        return IdState(status, object_key)

    # -- the commit log

    def accept(self, source: str, keys: Sequence[DedupeKey]) -> list[bool]:
        table = self.table_name(source)
        unique = list(dict.fromkeys(keys))
        expires = self._expires()

        def put(key: DedupeKey) -> bool:
            return _conditionally(
                f"accepting ids of source {source!r}",
                self._client.put_item,
                TableName=table,
                Item={
                    "id": {"S": self._id(key)},
                    "status": {"S": "accepted"},
                    "expires_at": {"N": expires},
                },
                ConditionExpression="attribute_not_exists(#id)",
                ExpressionAttributeNames={"#id": "id"},
            )

        fresh = dict(zip(unique, self._run(put, unique), strict=True))
        result: list[bool] = []
        for key in keys:
            # A repeat within the same call is a duplicate like any other.
            result.append(fresh.pop(key, False))
        return result

    def claim(
        self, source: str, keys: Sequence[DedupeKey], object_key: str
    ) -> dict[DedupeKey, IdState]:
        table = self.table_name(source)
        unique = list(dict.fromkeys(keys))
        expires = self._expires()

        def claim_one(key: DedupeKey) -> IdState | None:
            try:
                self._client.update_item(
                    TableName=table,
                    Key={"id": {"S": self._id(key)}},
                    UpdateExpression="SET #s = :pending, #k = :key, #e = :exp",
                    # absent, accepted, or pending here already (a retry); an id
                    # landed or pending elsewhere is left for the caller to look at
                    ConditionExpression=(
                        "attribute_not_exists(#id) OR #s = :accepted "
                        "OR (#s = :pending AND #k = :key)"
                    ),
                    ExpressionAttributeNames={
                        "#id": "id",
                        "#s": "status",
                        "#k": "object_key",
                        "#e": "expires_at",
                    },
                    ExpressionAttributeValues={
                        ":pending": {"S": "pending"},
                        ":accepted": {"S": "accepted"},
                        ":key": {"S": object_key},
                        ":exp": {"N": expires},
                    },
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as err:
                if _error_code(err) == "ConditionalCheckFailedException":
                    item = err.response.get("Item")
                    if not item:  # the API promises the item; say so if it is missing
                        raise StateError(
                            f"claiming ids of source {source!r} in {table!r}: a claim was "
                            "refused without the item that refused it; nothing was claimed "
                            "for it, and the next run retries"
                        ) from err
                    return self._state(item)
                raise _state_error(f"claiming ids of source {source!r}", err) from err
            except BotoCoreError as err:
                raise _state_error(f"claiming ids of source {source!r}", err) from err
            return None

        report: dict[DedupeKey, IdState] = {}
        todo = unique
        if self._read_first.get(source, False):
            # What the state already says needs no write that is bound to fail; the
            # conditions below still decide for every id that is written.
            for key, state in self.get(source, unique).items():
                if state.status == "landed" or (
                    state.status == "pending" and state.object_key != object_key
                ):
                    report[key] = state
            todo = [k for k in unique if k not in report]
        for key, state in zip(todo, self._run(claim_one, todo), strict=True):
            if state is not None:
                report[key] = state
        # A failed conditional write costs a write unit, about five times a strongly
        # consistent read: once over a fifth of a page's ids were known (a source
        # that re-reads an overlap, as Google's collector does), the next page of
        # this source is read first.
        self._read_first[source] = len(report) * 5 > len(unique)
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
        """As ``DedupeStore.reclaim``: one conditional update per id, on the status
        and the object key it was read with (an absent item fails the condition and
        is not created)."""
        if from_status not in ("pending", "landed"):
            raise StateError(f"reclaim moves pending or landed ids, not {from_status!r} ones")
        table = self.table_name(source)
        unique = list(dict.fromkeys(keys))
        expires = self._expires()
        values: dict[str, Any] = {
            ":pending": {"S": "pending"},
            ":key": {"S": object_key},
            ":exp": {"N": expires},
            ":from_status": {"S": from_status},
        }
        condition = "#s = :from_status"
        if from_key is None:
            condition += " AND attribute_not_exists(#k)"
        else:
            condition += " AND #k = :from"
            values[":from"] = {"S": from_key}

        def move(key: DedupeKey) -> bool:
            return _conditionally(
                f"reclaiming ids of source {source!r}",
                self._client.update_item,
                TableName=table,
                Key={"id": {"S": self._id(key)}},
                UpdateExpression="SET #s = :pending, #k = :key, #e = :exp",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#s": "status", "#k": "object_key", "#e": "expires_at"},
                ExpressionAttributeValues=values,
            )

        return [k for k, ok in zip(unique, self._run(move, unique), strict=True) if ok]

    def mark_landed(self, source: str, keys: Sequence[DedupeKey], object_key: str) -> None:
        table = self.table_name(source)
        expires = self._expires()
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        "id": {"S": self._id(key)},
                        "status": {"S": "landed"},
                        "object_key": {"S": object_key},
                        "expires_at": {"N": expires},
                    }
                }
            }
            for key in dict.fromkeys(keys)
        ]

        def write(chunk: Sequence[dict[str, Any]]) -> None:
            pending: list[dict[str, Any]] = list(chunk)
            for attempt in range(_UNPROCESSED_ATTEMPTS):
                with _aws(f"marking ids of source {source!r} landed"):
                    left = self._client.batch_write_item(RequestItems={table: pending}).get(
                        "UnprocessedItems", {}
                    )
                pending = left.get(table, [])
                if not pending:
                    return
                _backoff(attempt)
            raise StateError(
                f"marking ids of source {source!r} landed in {table!r}: {len(pending)} "
                f"writes still unprocessed after {_UNPROCESSED_ATTEMPTS} attempts "
                "(throttled); the batch will be retried by the next run"
            )

        self._run(write, list(chunks(requests, 25)))

    def get(self, source: str, keys: Sequence[DedupeKey]) -> dict[DedupeKey, IdState]:
        table = self.table_name(source)
        ids = [self._id(key) for key in dict.fromkeys(keys)]

        def read(chunk: Sequence[str]) -> list[dict[str, Any]]:
            request: dict[str, Any] = {
                "Keys": [{"id": {"S": i}} for i in chunk],
                "ConsistentRead": True,
                "ProjectionExpression": "#id, #s, #k",
                "ExpressionAttributeNames": {"#id": "id", "#s": "status", "#k": "object_key"},
            }
            items: list[dict[str, Any]] = []
            for attempt in range(_UNPROCESSED_ATTEMPTS):
                with _aws(f"reading ids of source {source!r}"):
                    resp = self._client.batch_get_item(RequestItems={table: request})
                items.extend(resp.get("Responses", {}).get(table, []))
                left = resp.get("UnprocessedKeys", {}).get(table)
                if not left or not left.get("Keys"):
                    return items
                request = left
                _backoff(attempt)
            raise StateError(
                f"reading ids of source {source!r} from {table!r}: "
                f"{len(request['Keys'])} keys still unprocessed after "
                f"{_UNPROCESSED_ATTEMPTS} attempts (throttled)"
            )

        found: dict[DedupeKey, IdState] = {}
        for items in self._run(read, list(chunks(ids, 100))):
            for item in items:
                found[self._key(item["id"]["S"])] = self._state(item)
        return found

    def prune(self, now: float | None = None) -> int:
        """Returns 0: DynamoDB's TTL deletes items after ``expires_at`` by itself
        (within a day or two; until then they still count, which is harmless)."""
        return 0

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        super().close()


# -------------------------------------------------------------------------------- SQS

# SQS caps one message and one batch at 256 KiB. Bodies are base64 (bytes must round
# trip exactly; SQS bodies are restricted Unicode), so a raw body may be ~190 KiB.
SQS_MAX_BATCH_BYTES = 262_144
_RETENTION_SECONDS = 1_209_600  # 14 days, the SQS maximum: the buffer must not drop
_ATTR_ENCODING = "lip_encoding"
_ATTR_SENT_AT = "lip_sent_at"


def _no_queue(name: str, source: str) -> StateError:
    return StateError(
        f"SQS queue {name!r} of source {source!r} does not exist: run "
        "`lip provision` (the store's ensure(source) creates it)"
    )


class SqsBuffer(_AwsStore, Buffer):
    """The buffer as two SQS queues per source, ``{prefix}{source}-buffer`` and its
    dead-letter queue ``{prefix}{source}-dlq``.

    SQS moves a message to the DLQ itself (redrive policy, ``maxReceiveCount`` =
    ``max_receives``). Where SQS differs from the SQLite buffer:

    - ``visibility_timeout`` is rounded up to whole seconds.
    - A stale receipt may still delete its message (SQS documents this as
      unspecified). That is harmless under the order of effects: a receipt is used
      only after its events are landed.
    - ``depth().oldest_age_seconds`` is None: SQS reports the age of the oldest
      message only through CloudWatch, and receiving to find out would count as a
      receive towards the DLQ.
    - ``receive`` of an empty queue takes ``receive_wait_seconds`` (1 s): its first
      round trip long-polls, as a short poll samples some SQS hosts and may answer
      empty while messages wait.
    - ``dead_letters`` cannot peek: it receives from the DLQ, then makes the messages
      visible again at once, so a ``redrive`` right after still sees them.
    - Both queues drop a message 14 days (the SQS maximum) after it was first
      buffered, also in the DLQ, whose age SQS counts from the first enqueue.
    """

    _service = "sqs"
    retention_seconds = float(_RETENTION_SECONDS)

    def __init__(
        self,
        *,
        session: boto3.session.Session | None = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        max_receives: int = 5,
        receive_wait_seconds: int = 1,
        dlq_wait_seconds: int = 1,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        if not 1 <= max_receives <= 1000:
            raise ConfigError(f"max_receives must be 1 to 1000 on SQS, not {max_receives!r}")
        for name, seconds in (
            ("receive_wait_seconds", receive_wait_seconds),
            ("dlq_wait_seconds", dlq_wait_seconds),
        ):
            if not 0 <= seconds <= 20:
                raise ConfigError(f"{name} must be 0 to 20, not {seconds!r}")
        super().__init__(
            session=session,
            region_name=region_name,
            endpoint_url=endpoint_url,
            prefix=prefix,
            connect_timeout=connect_timeout,
            read_timeout=max(read_timeout, max(receive_wait_seconds, dlq_wait_seconds) + 5.0),
            max_attempts=max_attempts,
        )
        self.max_receives = max_receives
        # Short polls sample a subset of SQS hosts and can come back empty while
        # messages exist. A long poll asks every host and answers as soon as a message
        # is there, so it costs time only when the queue is empty: the first round
        # trip of ``receive`` and every DLQ read (rare) long-poll briefly.
        self._receive_wait = receive_wait_seconds
        self._dlq_wait = dlq_wait_seconds
        self._urls: dict[str, tuple[str, str]] = {}
        self._buffer_urls: dict[str, str] = {}  # the buffer queue alone, for ``send``
        self._redrive_ok: set[str] = set()  # sources whose redrive policy targets our DLQ

    def queue_names(self, source: str) -> tuple[str, str]:
        """The buffer queue and DLQ names of a source."""
        validate_source_name(source)
        main = f"{self.prefix}{source}-buffer"
        if len(main) > 80:
            raise ConfigError(
                f"SQS queue name {main!r} is longer than the 80 characters SQS allows: "
                "use a shorter resource prefix or source name"
            )
        return main, f"{self.prefix}{source}-dlq"

    # -- provisioning

    def _lookup(self, name: str) -> str | None:
        try:
            return str(self._client.get_queue_url(QueueName=name)["QueueUrl"])
        except ClientError as err:
            if _error_code(err) in _MISSING_CODES:
                return None
            raise _state_error(f"looking up SQS queue {name!r}", err) from err
        except BotoCoreError as err:
            raise _state_error(f"looking up SQS queue {name!r}", err) from err

    def _create(self, name: str, source: str, attributes: dict[str, str]) -> str:
        log.info("creating SQS queue %s", name)
        with _aws(f"creating SQS queue {name!r}"):
            return str(
                self._client.create_queue(
                    QueueName=name, Attributes=attributes, tags={"lip:source": source}
                )["QueueUrl"]
            )

    def _attributes(self, url: str, names: Sequence[str]) -> dict[str, str]:
        with _aws(f"reading attributes of SQS queue {url!r}"):
            attrs = self._client.get_queue_attributes(QueueUrl=url, AttributeNames=list(names))
        return dict(attrs.get("Attributes", {}))

    def ensure(self, source: str) -> list[str]:
        """Create the DLQ, then the buffer queue with a redrive policy to it, if
        missing (14-day retention, SSE). An existing buffer queue without a redrive
        policy gets one; one with a different policy is reported, not changed.
        Returns drift notes."""
        main_name, dlq_name = self.queue_names(source)
        drift: list[str] = []
        base = {
            "MessageRetentionPeriod": str(_RETENTION_SECONDS),
            "SqsManagedSseEnabled": "true",
        }
        dlq_url = self._lookup(dlq_name) or self._create(dlq_name, source, dict(base))
        dlq_arn = self._attributes(dlq_url, ["QueueArn"])["QueueArn"]
        policy = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": self.max_receives}
        main_url = self._lookup(main_name)
        if main_url is None:
            main_url = self._create(
                main_name, source, {**base, "RedrivePolicy": json.dumps(policy)}
            )
        else:
            current = self._attributes(main_url, ["RedrivePolicy"]).get("RedrivePolicy")
            if not current:
                log.info("adding the redrive policy to SQS queue %s", main_name)
                with _aws(f"setting the redrive policy of SQS queue {main_name!r}"):
                    self._client.set_queue_attributes(
                        QueueUrl=main_url, Attributes={"RedrivePolicy": json.dumps(policy)}
                    )
            else:
                note = self._redrive_drift(main_name, current, dlq_arn)
                if note is not None:
                    drift.append(note)
        self._urls[source] = (main_url, dlq_url)
        return drift

    def _redrive_drift(self, main_name: str, current: str, dlq_arn: str) -> str | None:
        policy = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": self.max_receives}
        found = json.loads(current)
        if found.get("deadLetterTargetArn") == dlq_arn and int(
            found.get("maxReceiveCount", 0)
        ) == int(self.max_receives):
            return None
        return (
            f"SQS queue {main_name!r} has redrive policy {current}, expected "
            f"{json.dumps(policy)}; left unchanged"
        )

    def drift(self, source: str) -> list[str]:
        """What ``ensure`` would leave unchanged, read without changing anything: what
        ``lip provision --plan`` must report like the run would. The DLQ's ARN, when
        the DLQ is still to be created, is the buffer's with the DLQ's name."""
        main_name, dlq_name = self.queue_names(source)
        main_url = self._lookup(main_name)
        if main_url is None:
            return []
        attrs = self._attributes(main_url, ["RedrivePolicy", "QueueArn"])
        current = attrs.get("RedrivePolicy")
        if not current:
            return []
        dlq_url = self._lookup(dlq_name)
        if dlq_url is not None:
            dlq_arn = self._attributes(dlq_url, ["QueueArn"])["QueueArn"]
        else:
            dlq_arn = attrs["QueueArn"].rpartition(":")[0] + ":" + dlq_name
        note = self._redrive_drift(main_name, current, dlq_arn)
        return [note] if note else []

    def _queues(self, source: str) -> tuple[str, str]:
        cached = self._urls.get(source)
        if cached is not None:
            return cached
        main_name, dlq_name = self.queue_names(source)
        main_url, dlq_url = self._lookup(main_name), self._lookup(dlq_name)
        if main_url is None or dlq_url is None:
            raise _no_queue(main_name if main_url is None else dlq_name, source)
        self._urls[source] = (main_url, dlq_url)
        return main_url, dlq_url

    def _buffer_queue(self, source: str) -> str:
        """The buffer queue's URL alone, for ``send``: the webhook receiver may look
        up and send to the buffer queues and no other (its role in
        deploy/ecs/lip-dagster.cfn.yaml): a send that looked the DLQ up too would be
        refused with AccessDenied, and every delivery answered 503."""
        cached = self._urls.get(source)
        if cached is not None:
            return cached[0]
        url = self._buffer_urls.get(source)
        if url is not None:
            return url
        main_name, _ = self.queue_names(source)
        url = self._lookup(main_name)
        if url is None:
            raise _no_queue(main_name, source)
        self._buffer_urls[source] = url
        return url

    def _checked_queues(self, source: str) -> tuple[str, str]:
        """The queues, for the calls that read what keeps failing (receive, depth,
        dead letters, redrive): refused while the buffer's redrive policy sends such
        messages anywhere but LIP's DLQ. A queue that existed before LIP (``ensure``
        leaves its policy alone) could otherwise dead-letter deliveries into a queue no
        check watches and no replay reads. Sending stays allowed: what is buffered
        waits there, 14 days, until the policy is fixed."""
        main_url, dlq_url = self._queues(source)
        if source in self._redrive_ok:
            return main_url, dlq_url
        current = self._attributes(main_url, ["RedrivePolicy"]).get("RedrivePolicy")
        dlq_arn = self._attributes(dlq_url, ["QueueArn"])["QueueArn"]
        try:
            target = json.loads(current).get("deadLetterTargetArn") if current else None
        except (ValueError, AttributeError):
            target = None
        if target != dlq_arn:
            main_name, dlq_name = self.queue_names(source)
            raise StateError(
                f"SQS queue {main_name!r} of source {source!r} dead-letters failing messages "
                f"to {target or 'nowhere (it has no redrive policy)'}, not to {dlq_name!r}: "
                "LIP would never see them (no dead-letter check, no replay). Point its "
                f"redrive policy at {dlq_name!r} (`lip provision` lists the change), then "
                "retry; deliveries stay buffered meanwhile"
            )
        self._redrive_ok.add(source)
        return main_url, dlq_url

    # -- messages

    @staticmethod
    def _entry_size(entry: dict[str, Any]) -> int:
        size = len(entry["MessageBody"].encode("utf-8"))
        for name, attr in entry.get("MessageAttributes", {}).items():
            size += len(name) + len(attr["DataType"]) + len(attr.get("StringValue", ""))
        return size

    def _send_entries(self, url: str, entries: list[dict[str, Any]], what: str) -> list[str]:
        """Send in batches of at most 10 entries and 256 KiB; failed entries are
        retried a bounded number of times. Returns message ids in entry order."""
        ids: list[str | None] = [None] * len(entries)
        batches: list[list[int]] = []
        size = 0
        for index, entry in enumerate(entries):
            entry_size = self._entry_size(entry)
            if entry_size > SQS_MAX_BATCH_BYTES:
                raise StateError(
                    f"{what}: a message of {entry_size} bytes (base64) exceeds the SQS "
                    f"limit of {SQS_MAX_BATCH_BYTES}; bound request bodies below ~190 KB"
                )
            if not batches or len(batches[-1]) == 10 or size + entry_size > SQS_MAX_BATCH_BYTES:
                batches.append([])
                size = 0
            batches[-1].append(index)
            size += entry_size
        for batch in batches:
            pending = batch
            for attempt in range(_UNPROCESSED_ATTEMPTS):
                with _aws(what):
                    resp = self._client.send_message_batch(
                        QueueUrl=url,
                        Entries=[{**entries[i], "Id": str(i)} for i in pending],
                    )
                for ok in resp.get("Successful", []):
                    ids[int(ok["Id"])] = ok["MessageId"]
                failed = resp.get("Failed", [])
                if not failed:
                    break
                sender = [f for f in failed if f.get("SenderFault")]
                if sender:
                    raise StateError(f"{what}: SQS refused a message: {sender[0].get('Code')}")
                pending = [int(f["Id"]) for f in failed]
                _backoff(attempt)
            else:
                raise StateError(
                    f"{what}: {len(pending)} messages still failing after "
                    f"{_UNPROCESSED_ATTEMPTS} attempts"
                )
        return [i for i in ids if i is not None]

    def send(self, source: str, bodies: Sequence[bytes]) -> list[str]:
        if not bodies:
            return []
        main_url = self._buffer_queue(source)
        sent_at = repr(time.time())
        entries = [
            {
                "MessageBody": base64.b64encode(bytes(body)).decode("ascii"),
                "MessageAttributes": {
                    _ATTR_ENCODING: {"DataType": "String", "StringValue": "base64"},
                    _ATTR_SENT_AT: {"DataType": "Number", "StringValue": sent_at},
                },
            }
            for body in bodies
        ]
        return self._send_entries(main_url, entries, f"buffering messages of source {source!r}")

    @staticmethod
    def _message(raw: dict[str, Any]) -> BufferMessage:
        attrs = raw.get("MessageAttributes") or {}
        text = raw.get("Body", "")
        body: bytes
        if attrs.get(_ATTR_ENCODING, {}).get("StringValue") == "base64":
            try:
                body = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                log.warning(
                    "SQS message %s is not valid base64; passed on as text", raw.get("MessageId")
                )
                body = text.encode("utf-8")
        else:
            # Not written by LIP: hand it on as text so it reaches quarantine with a
            # clear parse error instead of circling until the DLQ.
            body = text.encode("utf-8")
        system = raw.get("Attributes") or {}
        sent_attr = attrs.get(_ATTR_SENT_AT, {}).get("StringValue")
        if sent_attr is not None:
            sent_at = float(sent_attr)
        else:
            sent_at = int(system.get("SentTimestamp", "0")) / 1000.0
        return BufferMessage(
            message_id=raw["MessageId"],
            receipt=raw["ReceiptHandle"],
            body=body,
            receive_count=int(system.get("ApproximateReceiveCount", "1")),
            sent_at=sent_at,
        )

    def _receive_raw(
        self, url: str, count: int, visibility: int, wait_seconds: int, what: str
    ) -> list[dict[str, Any]]:
        with _aws(what):
            resp = self._client.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=wait_seconds,
                VisibilityTimeout=visibility,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
                MessageAttributeNames=["All"],
            )
        return list(resp.get("Messages", []))

    def receive(
        self, source: str, max_messages: int, visibility_timeout: float
    ) -> list[BufferMessage]:
        if max_messages <= 0:
            return []
        main_url, _ = self._checked_queues(source)
        visibility = min(43_200, max(0, math.ceil(visibility_timeout)))
        out: list[BufferMessage] = []
        # Each round trip returns at least one new message or ends the loop, so it runs
        # at most max_messages times. With a zero visibility timeout the messages just
        # received are visible again at once: one round trip only, or the loop would
        # receive (and count towards the DLQ) the same messages again.
        while len(out) < max_messages:
            raw = self._receive_raw(
                main_url,
                min(10, max_messages - len(out)),
                visibility,
                # An empty answer must mean an empty queue (a drain stops there), which
                # only a long poll tells. Once messages are in hand, a short poll that
                # misses some just leaves them for the caller's next receive.
                0 if out else self._receive_wait,
                f"receiving messages of source {source!r}",
            )
            out.extend(self._message(m) for m in raw)
            if not raw or visibility == 0:
                break
        return out

    def delete(self, source: str, receipts: Sequence[str]) -> None:
        """Receipts SQS no longer knows (the message is already gone) are ignored: the
        message left the queue, which is what delete is for."""
        if not receipts:
            return
        main_url, _ = self._queues(source)
        self._delete(
            main_url, list(dict.fromkeys(receipts)), f"deleting messages of source {source!r}"
        )

    def _delete(self, url: str, receipts: Sequence[str], what: str) -> None:
        for chunk in chunks(receipts, 10):
            pending = list(range(len(chunk)))
            for attempt in range(_UNPROCESSED_ATTEMPTS):
                with _aws(what):
                    resp = self._client.delete_message_batch(
                        QueueUrl=url,
                        Entries=[{"Id": str(i), "ReceiptHandle": chunk[i]} for i in pending],
                    )
                failed = [
                    f for f in resp.get("Failed", []) if f.get("Code") != "ReceiptHandleIsInvalid"
                ]
                if not failed:
                    break
                pending = [int(f["Id"]) for f in failed]
                _backoff(attempt)
            else:
                raise StateError(
                    f"{what}: {len(pending)} deletes still failing after "
                    f"{_UNPROCESSED_ATTEMPTS} attempts"
                )

    def depth(self, source: str) -> BufferDepth:
        main_url, dlq_url = self._checked_queues(source)
        counts = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        main = self._attributes(main_url, counts)
        dlq = self._attributes(dlq_url, counts)
        return BufferDepth(
            messages=sum(int(main.get(c, "0")) for c in counts),
            in_flight=int(main.get("ApproximateNumberOfMessagesNotVisible", "0")),
            oldest_age_seconds=None,
            # In-flight dead letters count too: a peek or a redrive in progress must not
            # make the DLQ look empty to its asset check.
            dead_letters=sum(int(dlq.get(c, "0")) for c in counts),
        )

    def dead_letters(self, source: str, max_messages: int = 10) -> list[BufferMessage]:
        if max_messages <= 0:
            return []
        _, dlq_url = self._checked_queues(source)
        what = f"reading dead letters of source {source!r}"
        seen: dict[str, dict[str, Any]] = {}
        # Hidden for 30 s while paging so the same messages do not come back, then made
        # visible again at once below.
        while len(seen) < max_messages:
            raw = self._receive_raw(
                dlq_url, min(10, max_messages - len(seen)), 30, self._dlq_wait, what
            )
            fresh = [m for m in raw if m["MessageId"] not in seen]
            if not fresh:
                break
            seen.update((m["MessageId"], m) for m in fresh)
        handles = [m["ReceiptHandle"] for m in seen.values()]
        hidden = 0
        for chunk in chunks(handles, 10):
            with _aws(what):
                resp = self._client.change_message_visibility_batch(
                    QueueUrl=dlq_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                        for i, h in enumerate(chunk)
                    ],
                )
            hidden += len(resp.get("Failed", []))
        if hidden:
            # a replay or another look within 30 s would not see them: say so
            log.warning(
                "%s: %d dead letters stay hidden for up to 30 s (SQS refused to make them "
                "visible again)",
                source,
                hidden,
            )
        return [self._message(m) for m in seen.values()]

    def redrive(self, source: str) -> int:
        """Receive from the DLQ, send to the buffer queue, then delete from the DLQ: a
        crash in between leaves a copy in both (at least once; dedupe drops the extra),
        never in neither. Bounded by the DLQ depth at the start."""
        main_url, dlq_url = self._checked_queues(source)
        what = f"redriving dead letters of source {source!r}"
        start = self.depth(source).dead_letters
        moved = 0
        for _ in range(start // 10 + 10):
            raw = self._receive_raw(dlq_url, 10, 60, self._dlq_wait, what)
            if not raw:
                break
            entries = [
                {
                    "MessageBody": m["Body"],
                    "MessageAttributes": {
                        name: {
                            k: v
                            for k, v in attr.items()
                            if k in ("DataType", "StringValue", "BinaryValue")
                        }
                        for name, attr in (m.get("MessageAttributes") or {}).items()
                    },
                }
                for m in raw
            ]
            self._send_entries(main_url, entries, what)
            self._delete(dlq_url, [m["ReceiptHandle"] for m in raw], what)
            moved += len(raw)
        return moved


# ---------------------------------------------------------------------------- secrets


_PARSER_LOGGER = "botocore.parsers"
_SECRET_FIELDS = (b'"SecretString"', b'"SecretBinary"')
_MASKED_BODY = b"<a Secrets Manager response holding a secret value, not logged>"


class _SecretResponseFilter(logging.Filter):
    """Masks the body of a Secrets Manager response in botocore's debug log.

    botocore logs every response body at DEBUG (``Response body: ...``), before
    anything of LIP sees the response; with debug logging on (``lip -v``) the value
    of every secret read would be printed. A record whose body carries a secret value
    keeps its place in the log with the body replaced; every other record passes
    unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            body = args[0]
            if isinstance(body, bytes | bytearray | str):
                raw = body.encode("utf-8", "replace") if isinstance(body, str) else bytes(body)
                if any(field in raw for field in _SECRET_FIELDS):
                    record.args = (_MASKED_BODY, *args[1:])
        return True


_SECRET_RESPONSE_FILTER = _SecretResponseFilter()


def _mask_secret_responses_in_logs() -> None:
    """Install ``_SecretResponseFilter`` on botocore's parser logger, once."""
    logger = logging.getLogger(_PARSER_LOGGER)
    if _SECRET_RESPONSE_FILTER not in logger.filters:
        logger.addFilter(_SECRET_RESPONSE_FILTER)


class AwsSecretsManagerStore(SecretStore):
    """Secrets from AWS Secrets Manager, secret id ``{prefix}{name}``, cached for
    ``ttl_seconds`` by the base class so rotation is seen without a restart.
    Responses are masked in botocore's debug log (``_SecretResponseFilter``)."""

    def __init__(
        self,
        *,
        session: boto3.session.Session | None = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        prefix: str = "lip/",
        ttl_seconds: float = 300.0,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        super().__init__(ttl_seconds)
        _mask_secret_responses_in_logs()
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        sess = session if session is not None else boto3.session.Session()
        try:
            self._client: Any = sess.client(
                "secretsmanager",
                region_name=region_name,
                endpoint_url=endpoint_url,
                config=_client_config(connect_timeout, read_timeout, max_attempts, 10),
            )
        except NoRegionError as err:
            raise ConfigError(
                "no AWS region for Secrets Manager: pass region_name or set AWS_REGION "
                "(or AWS_DEFAULT_REGION)"
            ) from err
        self.region_name: str = self._client.meta.region_name

    def __repr__(self) -> str:
        return f"AwsSecretsManagerStore(prefix={self.prefix!r}, region_name={self.region_name!r})"

    def _fetch(self, name: str) -> str:
        secret_id = f"{self.prefix}{name}"
        try:
            resp = self._client.get_secret_value(SecretId=secret_id)
        except ClientError as err:
            if _error_code(err) == "ResourceNotFoundException":
                message = str(err.response.get("Error", {}).get("Message", ""))
                if "secret value" in message:
                    # The secret exists without a current value: the placeholder
                    # `lip provision` creates, not yet set. "Not found" would send the
                    # operator looking for a secret that is plainly there.
                    raise SecretNotFound(
                        f"secret {name!r} has no value yet in AWS Secrets Manager (secret "
                        f"id {secret_id!r}, region {self.region_name}): set it with aws "
                        f"secretsmanager put-secret-value --secret-id {secret_id}"
                    ) from None
                raise SecretNotFound(
                    f"secret {name!r} not found in AWS Secrets Manager "
                    f"(secret id {secret_id!r}, region {self.region_name})"
                ) from None
            raise _state_error(f"reading secret {name!r} from AWS Secrets Manager", err) from None
        except BotoCoreError as err:
            raise _state_error(f"reading secret {name!r} from AWS Secrets Manager", err) from None
        if "SecretString" in resp:
            return str(resp["SecretString"])
        try:
            return bytes(resp["SecretBinary"]).decode("utf-8")
        except (KeyError, UnicodeDecodeError):
            raise StateError(
                f"secret {name!r} in AWS Secrets Manager has no text value (store it as a "
                "SecretString)"
            ) from None

    def close(self) -> None:
        self._client.close()
