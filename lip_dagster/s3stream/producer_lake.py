"""A lake-layout producer's objects, read as a lake.

A ``lake_layout`` S3 source lands nothing: its producer writes lake objects itself and
the arrival sensor registers them. The SAM content checks read a partition through a
``LakeBackend``; this one reads the producer's objects where they are (its bucket and
prefix, or its landing directory), so they answer to the same contract as the objects
LIP writes: layout, gzip, one JSON object with ``_lip`` per line, no repeated id, and on
S3 the source's own KMS key. It only reads: LIP never writes a producer's objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cached_property

from lip_dagster.errors import ConfigError, LakeReadError, LakeWriteError, StateError
from lip_dagster.lake.backends import LakeBackend
from lip_dagster.lake.layout import source_prefix
from lip_dagster.s3stream.objects import ObjectMissing, ObjectSource

__all__ = ["ProducerLake"]


class ProducerLake(LakeBackend):
    """Lake keys are the producer's keys without its prefix.

    ``locate`` finds the producer's objects when they are first read, so a setting
    missing where the check runs (the variable naming the bucket) is reported by
    the check that needed it, as a failed read naming the variable, not as a crash
    of everything around it."""

    def __init__(self, locate: Callable[[], ObjectSource]) -> None:
        self._locate = locate

    @cached_property
    def objects(self) -> ObjectSource:
        try:
            return self._locate()
        except ConfigError as exc:
            raise LakeReadError(f"cannot find the producer's objects: {exc}") from exc

    def __repr__(self) -> str:
        return f"ProducerLake({self.describe()!r})"

    def _key(self, key: str) -> str:
        return self.objects.prefix + key

    def put(self, key: str, data: bytes) -> bool:
        raise LakeWriteError(
            f"{self.objects.describe(self._key(key))}: a lake-layout producer's objects "
            "are read, never written, by LIP"
        )

    def exists(self, key: str) -> bool:
        try:
            self.objects.head(self._key(key))
        except ObjectMissing:
            return False
        except StateError as exc:
            raise LakeReadError(str(exc)) from exc
        return True

    def get(self, key: str) -> bytes:
        try:
            return b"".join(self.objects.iter_bytes(self._key(key)))
        except StateError as exc:
            raise LakeReadError(str(exc)) from exc

    def list_keys(self, source: str, prefix: str = "") -> Iterator[str]:
        start = len(self.objects.prefix)
        try:
            for info in self.objects.list_all(prefix or source_prefix(source)):
                if self.objects.owns(info.key):
                    yield info.key[start:]
        except StateError as exc:
            raise LakeReadError(str(exc)) from exc

    def object_kms_key(self, key: str) -> str | None:
        try:
            return self.objects.kms_key(self._key(key))
        except StateError as exc:
            raise LakeReadError(str(exc)) from exc

    def describe(self) -> str:
        try:
            return self.objects.describe()
        except LakeReadError:
            return "a lake-layout producer's objects (location not configured)"
