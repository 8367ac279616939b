"""The content half of the SAM contract (DESIGN §6.1 and §6.6): every object of a
partition matches the layout, is valid gzip, every line parses as JSON and carries
``_lip``, no id repeats, and (on S3) every object is encrypted with the source's own
KMS key. One pass over the partition feeds both the ``lake_content`` check and the
per-object encryption check; used by the asset checks and by ``lip check``."""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from lip_dagster.errors import LakeReadError
from lip_dagster.lake.backends import LakeBackend
from lip_dagster.lake.envelope import PATTERNS, parse_timestamp
from lip_dagster.lake.layout import parse_object_key, partition_prefix

LIP_KEYS = ("source", "id", "ingested_at", "pattern")

# RFC 3339 with a zone: what LIP writes (``2026-03-01T10:20:00.123456Z``) and what a
# SAM types the column by. An epoch number, a zoneless time or free text in one object
# turns the column into text, or the query into an error, for every object.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})\Z"
)

# Given the KMS key id an object carries (None: not SSE-KMS), a problem to report or
# None when it is the source's key.
KeyJudge = Callable[[str | None], str | None]


@dataclass
class ContentReport:
    objects: int = 0
    events: int = 0
    problems: list[str] = field(default_factory=list)
    encryption_checked: int = 0
    encryption_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def encryption_ok(self) -> bool:
        return not self.encryption_problems


def verify_partition(
    lake: LakeBackend,
    source: str,
    partition_key: str,
    max_problems: int = 20,
    *,
    judge_key: KeyJudge | None = None,
) -> ContentReport:
    """Read every object of the partition. With ``judge_key``, also look up each
    object's KMS key through ``lake.object_kms_key`` (objects whose name is not in
    the layout are left to the content problems)."""
    report = ContentReport()
    seen: dict[str, str] = {}
    prefix = partition_prefix(source, partition_key)

    def problem(msg: str) -> None:
        if len(report.problems) < max_problems:
            report.problems.append(msg)

    def encryption_problem(msg: str) -> None:
        if len(report.encryption_problems) < max_problems:
            report.encryption_problems.append(msg)

    for key in lake.list_keys(source, prefix):
        report.objects += 1
        try:
            src, pk = parse_object_key(key)
        except ValueError:
            problem(f"{key}: name does not match the lake layout; move it out of the lake")
            continue
        if judge_key is not None:
            report.encryption_checked += 1
            try:
                verdict = judge_key(lake.object_kms_key(key))
            except LakeReadError as exc:
                verdict = f"could not read its encryption ({exc})"
            if verdict:
                encryption_problem(f"{key}: {verdict}")
        if src != source or pk != partition_key:
            problem(f"{key}: filed under the wrong source or hour")
        try:
            data = lake.get(key)
            # stdlib gzip reads an empty file as empty data, zcat and the SAM refuse it
            raw = gzip.decompress(data) if data else None
        except (OSError, EOFError, zlib.error):
            raw = None
        if raw is None:
            problem(f"{key}: not valid gzip; quarantine it and re-run the partition")
            continue
        if raw and not raw.endswith(b"\n"):
            problem(f"{key}: last line has no trailing newline")
        for n, line in enumerate(raw.split(b"\n")[:-1] if raw else [], start=1):
            if not line:
                problem(f"{key}:{n}: blank line")
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                problem(f"{key}:{n}: line is not JSON")
                continue
            lip = rec.get("_lip") if isinstance(rec, dict) else None
            if not isinstance(lip, dict) or any(k not in lip for k in LIP_KEYS):
                problem(f"{key}:{n}: missing the _lip envelope")
                continue
            report.events += 1
            wrong = envelope_problem(lip, source)
            if wrong:
                problem(f"{key}:{n}: {wrong}")
                continue
            eid = lip["id"]
            if eid in seen:
                problem(f"{key}:{n}: id {eid} repeats (also in {seen[eid]})")
            else:
                seen[eid] = key
    return report


def envelope_problem(lip: dict[str, object], source: str) -> str | None:
    """What is wrong with the values of the four fixed ``_lip`` keys, or None. LIP's
    writer always gets them right; a lake-layout producer writes its own, and the SAM
    relies on their meaning (DESIGN §1): a line whose ``source`` names another source
    is missed by every query on it, an id that is not a string defeats the SAM's
    deduplication, a ``pattern`` outside the three or an ``ingested_at`` that is no
    time breaks the column the SAM types."""
    if lip["source"] != source:
        return f"_lip.source is {_shown(lip['source'])}, not {source!r}"
    eid = lip["id"]
    if not isinstance(eid, str) or not eid:
        return f"_lip.id is not a non-empty string ({_shown(eid)})"
    if lip["pattern"] not in PATTERNS:
        return f"_lip.pattern is {_shown(lip['pattern'])}, not one of {', '.join(PATTERNS)}"
    at = lip["ingested_at"]
    if not isinstance(at, str) or not _RFC3339.match(at) or parse_timestamp(at) is None:
        return f"_lip.ingested_at is not an RFC 3339 time with a zone ({_shown(at)})"
    return None


def _shown(value: object, limit: int = 80) -> str:
    """``repr`` of a value from an object, cut: it goes into the check's metadata."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
