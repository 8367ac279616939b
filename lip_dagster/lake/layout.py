"""The lake layout: the only place that builds or parses lake paths.

    source=<name>/year=YYYY/month=MM/day=DD/hour=HH/<YYYYMMDDTHHMMSSZ>_<uuid>.ndjson.gz

A Dagster hourly partition key ``YYYY-MM-DD-HH:00`` maps to ``year=/month=/day=/hour=``
through ``partition_to_path`` and back through ``path_to_partition``; nothing else in
LIP formats these segments.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from lip_dagster.errors import InvalidSourceName

SOURCE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}\Z")
PARTITION_KEY_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})-(\d{2}):00\Z")
HOUR_PATH_RE = re.compile(r"year=(\d{4})/month=(\d{2})/day=(\d{2})/hour=(\d{2})\Z")
OBJECT_KEY_RE = re.compile(
    r"source=(?P<source>[a-z0-9][a-z0-9_-]{0,62})"
    r"/year=(?P<year>\d{4})/month=(?P<month>\d{2})/day=(?P<day>\d{2})/hour=(?P<hour>\d{2})"
    r"/(?P<ts>\d{8}T\d{6}Z)_(?P<uuid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
    r"\.ndjson\.gz\Z"
)
PARTITION_FORMAT = "%Y-%m-%d-%H:00"


def validate_source_name(name: str) -> str:
    """Refuse a name that cannot be an S3 key segment and a Dagster asset key."""
    if not isinstance(name, str) or not SOURCE_NAME_RE.match(name):
        raise InvalidSourceName(
            f"source name {name!r} is not allowed: use 1-63 characters of lower-case "
            "letters, digits, '_' or '-', starting with a letter or digit"
        )
    return name


def hour_of(dt: datetime) -> str:
    """The partition key of the UTC hour holding ``dt`` (naive datetimes are UTC)."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}-{dt.hour:02d}:00"


def partition_start(partition_key: str) -> datetime:
    """Start of the hour a partition key names, in UTC."""
    m = PARTITION_KEY_RE.match(partition_key)
    if not m:
        raise ValueError(f"not an hourly partition key (YYYY-MM-DD-HH:00): {partition_key!r}")
    y, mo, d, h = (int(g) for g in m.groups())
    try:
        return datetime(y, mo, d, h, tzinfo=UTC)
    except ValueError as err:  # 2024-02-30: say which key, not only "day is out of range"
        raise ValueError(
            f"not an hour that exists (YYYY-MM-DD-HH:00, UTC): {partition_key!r}: {err}"
        ) from None


def partition_to_path(partition_key: str) -> str:
    """``2024-03-10-02:00`` -> ``year=2024/month=03/day=10/hour=02``."""
    m = PARTITION_KEY_RE.match(partition_key)
    if not m:
        raise ValueError(f"not an hourly partition key (YYYY-MM-DD-HH:00): {partition_key!r}")
    partition_start(partition_key)  # rejects impossible dates such as 2024-02-30
    y, mo, d, h = m.groups()
    return f"year={y}/month={mo}/day={d}/hour={h}"


def path_to_partition(path: str) -> str:
    """``year=2024/month=03/day=10/hour=02`` -> ``2024-03-10-02:00``."""
    m = HOUR_PATH_RE.match(path)
    if not m:
        raise ValueError(f"not a lake hour path (year=/month=/day=/hour=): {path!r}")
    y, mo, d, h = m.groups()
    key = f"{y}-{mo}-{d}-{h}:00"
    partition_start(key)
    return key


def source_prefix(source: str) -> str:
    return f"source={validate_source_name(source)}/"


def partition_prefix(source: str, partition_key: str) -> str:
    """Key prefix of one source's hour: what a partition's checks list."""
    return f"{source_prefix(source)}{partition_to_path(partition_key)}/"


def compact_utc(ts: datetime) -> str:
    """``YYYYMMDDTHHMMSSZ`` of ``ts`` in UTC (naive means UTC), every field zero-padded:
    the ``<ts>`` of an object key. Formatted by hand because ``strftime('%Y')`` does
    not pad years below 1000 on glibc (``10101T000000Z`` for year 1), which makes a
    key that ``parse_object_key`` refuses."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC)
    return f"{ts.year:04d}{ts.month:02d}{ts.day:02d}T{ts.hour:02d}{ts.minute:02d}{ts.second:02d}Z"


def object_key(source: str, partition_key: str, ts: datetime, batch_uuid: str) -> str:
    """The key of one object of ``source`` in ``partition_key``, named after its
    earliest event time ``ts`` and its batch uuid."""
    return f"{partition_prefix(source, partition_key)}{compact_utc(ts)}_{batch_uuid}.ndjson.gz"


def parse_object_key(key: str) -> tuple[str, str]:
    """(source, partition key) of a lake object key; ValueError for anything else."""
    m = OBJECT_KEY_RE.match(key)
    if not m:
        raise ValueError(f"not a lake object key: {key!r}")
    pk = f"{m['year']}-{m['month']}-{m['day']}-{m['hour']}:00"
    partition_start(pk)
    return m["source"], pk
