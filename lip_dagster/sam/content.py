"""The content half of the SAM contract (DESIGN §6.6): every object of a partition
matches the layout, is valid gzip, every line parses as JSON and carries ``_lip``,
and no id repeats. Used by the asset check and by ``lip check``."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, field

import orjson

from lip_dagster.lake.backends import LakeBackend
from lip_dagster.lake.layout import parse_object_key, partition_prefix

LIP_KEYS = ("source", "id", "ingested_at", "pattern")


@dataclass
class ContentReport:
    objects: int = 0
    events: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_partition(
    lake: LakeBackend, source: str, partition_key: str, max_problems: int = 20
) -> ContentReport:
    report = ContentReport()
    seen: dict[str, str] = {}
    prefix = partition_prefix(source, partition_key)

    def problem(msg: str) -> None:
        if len(report.problems) < max_problems:
            report.problems.append(msg)

    for key in lake.list_keys(source, prefix):
        report.objects += 1
        try:
            src, pk = parse_object_key(key)
        except ValueError:
            problem(f"{key}: name does not match the lake layout; move it out of the lake")
            continue
        if src != source or pk != partition_key:
            problem(f"{key}: filed under the wrong source or hour")
        try:
            raw = gzip.decompress(lake.get(key))
        except (OSError, EOFError, zlib.error):
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
            eid = str(lip["id"])
            if eid in seen:
                problem(f"{key}:{n}: id {eid} repeats (also in {seen[eid]})")
            else:
                seen[eid] = key
    return report
