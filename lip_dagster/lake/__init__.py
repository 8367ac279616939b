"""The lake: layout, envelope, writer and storage backends."""

from lip_dagster.lake.backends import (
    LakeBackend,
    LocalLake,
    LocalQuarantine,
    Quarantine,
    S3Lake,
    S3Quarantine,
)
from lip_dagster.lake.envelope import EventIdentity, parse_timestamp
from lip_dagster.lake.layout import (
    hour_of,
    parse_object_key,
    partition_to_path,
    path_to_partition,
    validate_source_name,
)
from lip_dagster.lake.writer import HourStats, LakeWriter, PendingWrite, WriteResult

__all__ = [
    "EventIdentity",
    "HourStats",
    "LakeBackend",
    "LakeWriter",
    "LocalLake",
    "LocalQuarantine",
    "PendingWrite",
    "Quarantine",
    "S3Lake",
    "S3Quarantine",
    "WriteResult",
    "hour_of",
    "parse_object_key",
    "parse_timestamp",
    "partition_to_path",
    "path_to_partition",
    "validate_source_name",
]
