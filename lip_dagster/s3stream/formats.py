"""The vendor formats an S3 source can transcode: how records are found in an
object, which objects are vendor housekeeping, and where each record keeps its id and
time (VENDORS.md §5-§7).

A format only reads; what to do with damage (quarantine, a red check) is the
transcoder's decision.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lip_dagster.errors import ConfigError
from lip_dagster.lake.envelope import EventIdentity
from lip_dagster.s3stream.streams import (
    ARRAY_HEADER,
    DEFAULT_MAX_RECORD_BYTES,
    RECORDS_HEADER,
    BadObjectError,
    Problems,
    gunzip_chunks,
    iter_json_array,
    iter_ndjson,
)

_WS = b" \t\r\n"


def _peek(chunks: Iterable[bytes]) -> tuple[bytes, Iterator[bytes]]:
    """The first non-blank byte of a stream (``b""`` if it is empty or blank), and the
    stream from that byte on.

    Leading blank space means nothing to either JSON reader, so it is dropped chunk
    by chunk, never gathered: the sniff holds one chunk whatever the object, and a
    small object that expands to hundreds of MB of newlines costs a fast scan, not
    the blank run in memory."""
    it = iter(chunks)
    for chunk in it:
        stripped = chunk.lstrip(_WS)
        if stripped:
            return stripped[:1], _chain(stripped, it)
    return b"", iter(())


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


@dataclass(frozen=True)
class VendorFormat:
    """Base: gzip of NDJSON, nothing skipped."""

    name: str
    identity: EventIdentity
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES

    # where the vendor's records keep their id and time; a format whose records
    # differ by an option (Cloudflare's dataset) sets it in ``build`` instead
    default_identity: ClassVar[EventIdentity | None] = None
    # the source's ``options`` ``build`` reads (besides ``max_record_bytes``)
    options_read: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def build(cls, name: str, options: dict[str, str], max_record_bytes: int) -> VendorFormat:
        """The format for a source's YAML block. Pops the ``options`` it reads;
        ``vendor_format`` refuses any left over."""
        if cls.default_identity is None:
            raise ConfigError(f"format {name!r} does not say where its records keep id and time")
        return cls(name, cls.default_identity, max_record_bytes)

    def housekeeping(self, key: str) -> str | None:
        """Why ``key`` is a vendor housekeeping object to skip on purpose, or None."""
        return None

    def records(self, raw: Iterable[bytes], problems: Problems) -> Iterator[dict[str, Any]]:
        return iter_ndjson(gunzip_chunks(raw, problems), problems, self.max_record_bytes)


# ``AWSLogs/[o-<org>/]<account>/<service>/``: the layout every AWS service that
# delivers logs to S3 shares (CloudTrail, Config, load balancers, VPC flow logs, ...)
_AWSLOGS_SERVICE = re.compile(r"(?:^|/)AWSLogs/(?:o-[a-z0-9]{10,32}/)?[0-9]{12}/([^/]+)/")


@dataclass(frozen=True)
class CloudTrailFormat(VendorFormat):
    """Gzip of ``{"Records":[...]}``. Digest files (``CloudTrail-Digest/``, written
    when log file validation is on) hold hashes, not events. Any key layout is
    accepted, organization trails' extra ``o-<orgid>/`` level included.

    A trail's bucket is often a log archive that other AWS services deliver to under
    the same ``AWSLogs/<account>/`` folder (AWS Control Tower puts AWS Config beside
    the organization trail): their files (``Config/``, ``elasticloadbalancing/``,
    ``vpcflowlogs/``, their write-check files) are not the trail's, so they are
    skipped by the service named in the key, not quarantined as damaged trail files.
    CloudTrail's own folders (``CloudTrail/``, ``CloudTrail-Insight/``) are read."""

    default_identity = EventIdentity(id_fields=("eventID",), time_field="eventTime")

    def housekeeping(self, key: str) -> str | None:
        if "/CloudTrail-Digest/" in f"/{key}":
            return "CloudTrail digest file (log file validation), not events"
        m = _AWSLOGS_SERVICE.search(key)
        if m and not m.group(1).startswith("CloudTrail"):
            return (
                f"an AWS {m.group(1)} file delivered to the same bucket, not a CloudTrail log file"
            )
        return None

    def records(self, raw: Iterable[bytes], problems: Problems) -> Iterator[dict[str, Any]]:
        return iter_json_array(
            gunzip_chunks(raw, problems),
            problems,
            header=RECORDS_HEADER,
            trailer=b"}",
            max_record_bytes=self.max_record_bytes,
        )


@dataclass(frozen=True)
class GithubStreamFormat(VendorFormat):
    """GitHub audit-log streaming: "compressed JSON" per GitHub's docs; in practice
    NDJSON, and a JSON array is accepted too. Key depth is not assumed (the documented
    ``YYYY/MM/HH/MM/<uuid>.json.gz`` lacks the day)."""

    default_identity = EventIdentity(id_fields=("_document_id",), time_field="@timestamp")

    def records(self, raw: Iterable[bytes], problems: Problems) -> Iterator[dict[str, Any]]:
        first, stream = _peek(gunzip_chunks(raw, problems))
        if first == b"[":
            return iter_json_array(
                stream, problems, header=ARRAY_HEADER, max_record_bytes=self.max_record_bytes
            )
        if first in (b"{", b""):
            return iter_ndjson(stream, problems, self.max_record_bytes)
        raise BadObjectError(
            f"unknown format: GitHub streaming content starts with {first!r}, not JSON"
        )


@dataclass(frozen=True)
class CloudflareLogpushFormat(VendorFormat):
    """Logpush: gzip of NDJSON. ``ownership-challenge.txt`` is the token Cloudflare
    drops to prove the bucket is ours, not a log. Each Logpush job writes one dataset,
    whose records keep id and time in fields of their own: ``options.dataset``."""

    options_read = ("dataset",)

    @classmethod
    def build(cls, name: str, options: dict[str, str], max_record_bytes: int) -> VendorFormat:
        dataset = options.pop("dataset", "")
        if dataset not in CLOUDFLARE_DATASETS:
            # the shipped declaration takes it from LIP_CLOUDFLARE_DATASET: the name the
            # operator set is the one to read in the error
            raise ConfigError(
                f"{name} needs options.dataset (LIP_CLOUDFLARE_DATASET), one of "
                f"{', '.join(sorted(CLOUDFLARE_DATASETS))}; got {dataset!r}"
            )
        return cls(name, CLOUDFLARE_DATASETS[dataset], max_record_bytes)

    def housekeeping(self, key: str) -> str | None:
        if key.rsplit("/", 1)[-1] == "ownership-challenge.txt":
            return "Logpush ownership challenge, not logs"
        return None


CLOUDFLARE_DATASETS: dict[str, EventIdentity] = {
    "audit": EventIdentity(id_fields=("ID",), time_field="When"),
    "audit_logs": EventIdentity(id_fields=("ID",), time_field="When"),
    "http_requests": EventIdentity(id_fields=("RayID",), time_field="EdgeStartTimestamp"),
}

FORMATS: dict[str, type[VendorFormat]] = {
    "cloudtrail": CloudTrailFormat,
    "github_audit_stream": GithubStreamFormat,
    "cloudflare_logpush": CloudflareLogpushFormat,
}
"""The formats a source's ``format:`` may name: a new vendor is one ``VendorFormat``
subclass and one line here (docs/s3-sources.md, "Adding a vendor format")."""

FORMAT_NAMES = tuple(FORMATS)


def vendor_format(name: str, options: Mapping[str, str] | None = None) -> VendorFormat:
    """The format named in a source's YAML; unknown names and options fail at load."""
    options = dict(options or {})
    raw = str(options.pop("max_record_bytes", DEFAULT_MAX_RECORD_BYTES))
    # 0 would refuse every record of every object as too large
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise ConfigError(
            f"options.max_record_bytes must be a whole number of bytes, at least 1, not {raw!r}"
        )
    cls = FORMATS.get(name)
    if cls is None:
        raise ConfigError(f"unknown S3 format {name!r}: use one of {', '.join(FORMATS)}")
    fmt = cls.build(name, options, int(raw))
    if options:
        takes = ", ".join(sorted({*cls.options_read, "max_record_bytes"}))
        raise ConfigError(
            f"format {name!r} does not take options {sorted(options)}; it takes {takes}"
        )
    return fmt
