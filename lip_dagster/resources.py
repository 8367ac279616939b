"""The backend, chosen once per deployment from ``Settings``.

``Backend`` bundles the lake, quarantine and the four stores. ``EmbeddedBackend`` is
a directory plus SQLite and needs nothing running; ``AwsBackend`` is S3 + KMS,
DynamoDB, SQS and Secrets Manager (every client takes ``endpoint_url``). Nothing else
in LIP asks which one is in use: assets and sensors receive a ``Backend`` as the
Dagster resource ``lip``, and the Lambda receiver asks only ``outlives_machine``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from lip_dagster.config import Settings
from lip_dagster.lake.backends import (
    LakeBackend,
    LocalLake,
    LocalQuarantine,
    Quarantine,
    S3Lake,
    S3Quarantine,
)
from lip_dagster.lake.writer import LakeWriter
from lip_dagster.state.base import Buffer, CursorStore, DedupeStore, SecretStore

if TYPE_CHECKING:
    from lip_dagster.s3stream.objects import ArrivalQueue, ObjectLocation, ObjectSource

log = logging.getLogger(__name__)


class Backend(ABC):
    """Everything a run needs to land events and keep state."""

    outlives_machine: ClassVar[bool]
    """Whether what this backend holds (lake, buffer, dedupe marks) is still there, for
    another machine to read, once this one is gone. A receiver on a machine that is
    thrown away (a Lambda container) must not take events into one that is not."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lake={self.lake_location!r})"

    @property
    @abstractmethod
    def lake_location(self) -> str: ...

    @cached_property
    @abstractmethod
    def lake(self) -> LakeBackend: ...

    @cached_property
    @abstractmethod
    def quarantine(self) -> Quarantine: ...

    @cached_property
    @abstractmethod
    def cursors(self) -> CursorStore: ...

    @cached_property
    @abstractmethod
    def dedupe(self) -> DedupeStore: ...

    @cached_property
    @abstractmethod
    def buffer(self) -> Buffer: ...

    @cached_property
    @abstractmethod
    def secrets(self) -> SecretStore: ...

    def writer(self) -> LakeWriter:
        """The lake writer; events no lake object can hold go to this backend's
        quarantine and the rest of their page lands."""
        return LakeWriter(
            self.lake,
            self.dedupe,
            max_object_bytes=self.settings.max_object_bytes,
            max_object_events=self.settings.max_object_events,
            quarantine=self.quarantine,
        )

    def ensure_source(self, source: str) -> list[str]:
        """Create the source's state tables if the backend needs them. What exists
        and differs from what LIP would create is left alone and returned (and
        logged: a run that ensures its source shows it in its log).

        The buffer is not ensured here: only webhook sources have one, and every
        source's run and sensor calls this. On AWS a polling or S3 source would
        otherwise create (or, under the deployed roles, which may not create queues,
        fail on AccessDenied creating) a buffer queue and dead-letter queue it never
        uses. `lip provision` creates a webhook source's queues (the buffer's own
        ``ensure``); a buffer used before that fails naming the missing queue."""
        notes: list[str] = []
        for store in (self.cursors, self.dedupe):
            notes += store.ensure(source)
        for note in notes:
            log.warning("source %s: %s", source, note)
        return notes

    # S3 streaming: where a vendor writes its own objects (never the lake itself).
    def object_source(self, location: ObjectLocation) -> ObjectSource:
        """Read-only access to the objects a vendor writes for one S3 source."""
        from lip_dagster.errors import ConfigError

        raise ConfigError(f"{type(self).__name__} cannot read vendor objects")

    def arrival_queue(self, location: ObjectLocation) -> ArrivalQueue | None:
        """The queue the vendor bucket's ``s3:ObjectCreated:*`` notifications go to,
        or None: new objects are then found by listing."""
        return None


class EmbeddedBackend(Backend):
    """A directory lake under ``$LIP_HOME/lake`` and SQLite state in
    ``$LIP_HOME/state.db``; temporary files in ``$LIP_HOME/tmp`` (same filesystem,
    outside the lake root)."""

    outlives_machine = False

    @property
    def lake_location(self) -> str:
        return str(self.settings.lake_dir)

    @cached_property
    def lake(self) -> LakeBackend:
        return LocalLake(self.settings.lake_dir, self.settings.tmp_dir)

    @cached_property
    def quarantine(self) -> Quarantine:
        return LocalQuarantine(self.settings.quarantine_dir)

    @cached_property
    def cursors(self) -> CursorStore:
        from lip_dagster.state.sqlite import SqliteCursorStore

        self.settings.home.mkdir(parents=True, exist_ok=True)
        return SqliteCursorStore(self.settings.state_db)

    @cached_property
    def dedupe(self) -> DedupeStore:
        from lip_dagster.state.sqlite import SqliteDedupeStore

        self.settings.home.mkdir(parents=True, exist_ok=True)
        return SqliteDedupeStore(
            self.settings.state_db, ttl_seconds=self.settings.dedupe_ttl_days * 86400
        )

    @cached_property
    def buffer(self) -> Buffer:
        from lip_dagster.state.sqlite import SqliteBuffer

        self.settings.home.mkdir(parents=True, exist_ok=True)
        return SqliteBuffer(self.settings.state_db, max_receives=self.settings.buffer_max_receives)

    def object_source(self, location: ObjectLocation) -> ObjectSource:
        """A landing directory plays the vendor's bucket: ``$LIP_HOME/landing/<source>``
        unless the source names a directory variable."""
        from lip_dagster.s3stream.objects import LocalObjectSource

        return LocalObjectSource(location.landing_dir(self.settings.home), location.prefix())

    @cached_property
    def secrets(self) -> SecretStore:
        from lip_dagster.state.local_secrets import EnvFileSecretStore

        return EnvFileSecretStore(
            self.settings.secrets_file, ttl_seconds=self.settings.secret_ttl_seconds
        )


class AwsBackend(Backend):
    """S3 + KMS lake, DynamoDB cursors and dedupe, SQS buffers, Secrets Manager."""

    outlives_machine = True

    @property
    def _aws(self) -> Any:
        assert self.settings.aws is not None
        return self.settings.aws

    @property
    def lake_location(self) -> str:
        return f"s3://{self._aws.bucket_template}/{self._aws.lake_prefix}"

    @cached_property
    def session(self) -> Any:
        import boto3

        return boto3.session.Session(region_name=self._aws.region)

    def client(self, service: str) -> Any:
        from botocore.config import Config

        cfg = Config(
            connect_timeout=5,
            read_timeout=30,
            retries={"max_attempts": 5, "mode": "standard"},
        )
        return self.session.client(service, endpoint_url=self._aws.endpoint_url, config=cfg)

    def object_source(self, location: ObjectLocation) -> ObjectSource:
        from lip_dagster.s3stream.objects import S3ObjectSource

        return S3ObjectSource(self.client("s3"), location.bucket(), location.prefix())

    def arrival_queue(self, location: ObjectLocation) -> ArrivalQueue | None:
        from lip_dagster.s3stream.objects import SqsArrivalQueue

        url = location.queue_url()
        return SqsArrivalQueue(self.client("sqs"), url) if url else None

    @cached_property
    def lake(self) -> LakeBackend:
        a = self._aws
        return S3Lake(self.client("s3"), a.bucket, a.kms_key, prefix=a.lake_prefix)

    @cached_property
    def quarantine(self) -> Quarantine:
        a = self._aws
        return S3Quarantine(self.client("s3"), a.bucket, a.kms_key, prefix=a.quarantine_prefix)

    @cached_property
    def cursors(self) -> CursorStore:
        from lip_dagster.state.aws import DynamoCursorStore

        return DynamoCursorStore(
            session=self.session,
            endpoint_url=self._aws.endpoint_url,
            prefix=self._aws.resource_prefix,
        )

    @cached_property
    def dedupe(self) -> DedupeStore:
        from lip_dagster.state.aws import DynamoDedupeStore

        return DynamoDedupeStore(
            session=self.session,
            endpoint_url=self._aws.endpoint_url,
            prefix=self._aws.resource_prefix,
            ttl_seconds=self.settings.dedupe_ttl_days * 86400,
        )

    @cached_property
    def buffer(self) -> Buffer:
        from lip_dagster.state.aws import SqsBuffer

        return SqsBuffer(
            session=self.session,
            endpoint_url=self._aws.endpoint_url,
            prefix=self._aws.resource_prefix,
            max_receives=self.settings.buffer_max_receives,
        )

    @cached_property
    def secrets(self) -> SecretStore:
        from lip_dagster.state.aws import AwsSecretsManagerStore

        return AwsSecretsManagerStore(
            session=self.session,
            endpoint_url=self._aws.endpoint_url,
            prefix=self._aws.secrets_prefix,
            ttl_seconds=self.settings.secret_ttl_seconds,
        )


BACKEND_CLASSES: dict[str, type[Backend]] = {"embedded": EmbeddedBackend, "aws": AwsBackend}


def backend_from_settings(settings: Settings) -> Backend:
    """The one place the backend is chosen."""
    return BACKEND_CLASSES[settings.backend](settings)


def backend_from_env() -> Backend:
    return backend_from_settings(Settings.from_env())
