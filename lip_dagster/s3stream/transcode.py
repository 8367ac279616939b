"""Transcoding: a vendor object in, lake objects out, streaming.

For each object: skip vendor housekeeping on purpose; otherwise stream it (gunzip,
split into records), hand the writer pages of about 1,000 records, each line's
``_lip.origin`` naming the vendor object it came from. Landing is the writer's (claim,
put, mark landed), so transcoding the same object twice lands nothing twice.

Damage never stops the run and never loses a readable record: the records before
and around the damage land; the object is recorded in quarantine with the reason (a
copy of its bytes when small enough, else a reference: vendor objects are immutable
and stay where the vendor put them).

Objects are handled one at a time: one object that cannot be read (access denied, a
server error after botocore's retries) is reported as ``failed`` and the others are
still read, so one bad object never holds back its batch. The caller fails the run
naming only the failed keys, and they are requested again. Failures of the lake or
the state stores (a put refused) are not about one object and are raised at once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from lip_dagster import jsontext
from lip_dagster.errors import StateError, UnwritableEvents, attach_report
from lip_dagster.lake.backends import Quarantine
from lip_dagster.lake.writer import LakeWriter, WriteResult
from lip_dagster.s3stream.formats import VendorFormat
from lip_dagster.s3stream.objects import (
    ObjectInfo,
    ObjectMissing,
    ObjectReadError,
    ObjectSource,
    read_error_hint,
)
from lip_dagster.s3stream.streams import BadObjectError, Problems

log = logging.getLogger(__name__)

PAGE_EVENTS = 1000
QUARANTINE_COPY_MAX_BYTES = 16 << 20

Status = Literal["landed", "skipped", "partial", "quarantined", "missing", "failed"]


@dataclass
class ObjectOutcome:
    """What happened to one vendor object. ``failed``: it could not be read (``code``
    is the S3 error code, if any); records read before the error did land."""

    key: str
    status: Status
    records: int = 0
    bad_records: int = 0
    reason: str | None = None
    quarantined_at: str | None = None
    code: str | None = None
    error: str | None = None  # a failed read: what the object source said


@dataclass
class TranscodeReport:
    result: WriteResult = field(default_factory=WriteResult)
    objects: list[ObjectOutcome] = field(default_factory=list)

    def count(self, *statuses: Status) -> int:
        return sum(1 for o in self.objects if o.status in statuses)

    @property
    def records(self) -> int:
        return sum(o.records for o in self.objects)

    @property
    def failed(self) -> list[ObjectOutcome]:
        """Objects that could not be read: not landed, not acknowledged, requested
        again."""
        return [o for o in self.objects if o.status == "failed"]


def quarantine_id(source: str, key: str, version: str, why: str) -> str:
    """A stable quarantine item id for one bad input: the same source, key, version
    (ETag, or what announced it) and kind of problem always give the same id, so the
    retries that meet the same damaged object (step retries, run retries, a sensor
    tick evaluated again) keep one item, not one per attempt."""
    text = "\x00".join((source, key, version, why))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class ObjectsNotRead(StateError):
    """Some objects of a run could not be read; the others landed. Raised after the
    whole batch was handled, so it names only the objects that failed."""

    def __init__(self, source: str, failed: list[ObjectOutcome], total: int, then: str) -> None:
        self.failed = failed
        shown = "; ".join(f"{o.key}: {o.reason}" for o in failed[:10])
        more = f"; and {len(failed) - 10} more" if len(failed) > 10 else ""
        landed = "none was read" if len(failed) == total else "the others landed"
        super().__init__(
            f"source {source!r}: {len(failed)} of {total} objects could not be read, "
            f"{landed}. Not read: {shown}{more}. {then}"
        )


class Transcoder:
    """Lands one source's vendor objects in the lake."""

    def __init__(
        self,
        source: str,
        fmt: VendorFormat,
        objects: ObjectSource,
        writer: LakeWriter,
        quarantine: Quarantine,
        *,
        page_events: int = PAGE_EVENTS,
        quarantine_copy_max_bytes: int = QUARANTINE_COPY_MAX_BYTES,
    ) -> None:
        if page_events < 1:
            raise ValueError("page_events must be >= 1")
        self.source = source
        self.fmt = fmt
        self.objects = objects
        self.writer = writer
        self.quarantine = quarantine
        self.page_events = page_events
        self.quarantine_copy_max_bytes = quarantine_copy_max_bytes

    def run(self, keys: Iterable[str], report: TranscodeReport | None = None) -> TranscodeReport:
        report = report or TranscodeReport()
        try:
            for key in keys:
                report.objects.append(self.transcode(key, report.result))
        except BaseException as stop:
            # stopped (a run terminated from the UI) or failed mid-way: what landed is
            # recorded by the asset before it re-raises
            attach_report(stop, report)
            raise
        return report

    def transcode(self, key: str, result: WriteResult | None = None) -> ObjectOutcome:
        """Land one object; merges what landed into ``result``."""
        result = result if result is not None else WriteResult()
        if not self.objects.owns(key):
            return ObjectOutcome(key, "skipped", reason="outside this source's prefix")
        skip = self.fmt.housekeeping(key)
        if skip:
            log.info("%s: skipped %s: %s", self.source, key, skip)
            return ObjectOutcome(key, "skipped", reason=skip)
        problems = Problems()
        landed = 0
        try:
            info, body = self.objects.open(key)
            records = self.fmt.records(body, problems)
            for page in _pages(records, self.page_events):
                landed += self._write(page, key, info, problems, result)
        except BadObjectError as exc:
            problems.add(str(exc), fatal=True)
        except ObjectMissing:
            reason = f"announced object {self.objects.describe(key)} no longer exists"
            if landed:
                reason += f" ({landed} records landed before it went)"
            where = self.quarantine.put(
                self.source,
                key,
                b"",
                reason,
                stable_id=quarantine_id(self.source, key, "", "missing"),
            )
            return ObjectOutcome(
                key, "missing", records=landed, reason=reason, quarantined_at=where
            )
        except ObjectReadError as exc:
            reason = f"{read_error_hint(exc.code)}: {exc}"
            if landed:
                reason += f" ({landed} records landed before the error)"
            log.warning("%s: could not read %s: %s", self.source, key, reason)
            return ObjectOutcome(
                key, "failed", records=landed, reason=reason, code=exc.code, error=str(exc)
            )
        if problems.surrogates_replaced:
            # the records landed; the warning says where, never what the strings held
            log.warning(
                "%s: replaced %d lone UTF-16 surrogate escape(s) in %s with U+FFFD",
                self.source,
                problems.surrogates_replaced,
                key,
            )
        if not problems:
            return ObjectOutcome(key, "landed", records=landed)
        return self._quarantine(info, problems, landed)

    def _write(
        self,
        page: list[dict[str, Any]],
        key: str,
        info: ObjectInfo,
        problems: Problems,
        result: WriteResult,
    ) -> int:
        """Land one page; returns how many records it held that could be landed.

        orjson reads records nested up to 1,024 levels deep but writes only
        ``MAX_WRITE_DEPTH``: asked to, the writer refuses a page holding one
        (``UnwritableEvents``) before it lands any of it, instead of setting the record
        aside itself. Such records are bad records of the object, which goes to
        quarantine whole (a copy a person can read again), and the rest of the page is
        landed without them."""
        try:
            res = self._write_page(page, key, info)
        except UnwritableEvents as exc:
            unwritable = {id(rec) for rec in exc.events}
            kept = [rec for rec in page if id(rec) not in unwritable]
            bad = len(page) - len(kept)
            problems.add(
                f"{bad} record(s) nested deeper than {jsontext.MAX_WRITE_DEPTH} levels of "
                "arrays and objects, more than the lake can store",
                bad_records=bad,
            )
            if not kept:
                return 0
            page = kept
            res = self._write_page(page, key, info)
        result.merge(res)
        return len(page)

    def _write_page(self, page: list[dict[str, Any]], key: str, info: ObjectInfo) -> WriteResult:
        return self.writer.write(
            self.source,
            page,
            self.fmt.identity,
            "s3",
            info.last_modified,
            extra_envelope={"origin": key},
            raise_unwritable=True,  # a bad record of the object: the object is set aside
        )

    def _quarantine(self, info: ObjectInfo, problems: Problems, landed: int) -> ObjectOutcome:
        where_from = self.objects.describe(info.key)
        summary = "; ".join(problems.messages) or f"{problems.bad_records} bad records"
        reason = (
            f"{self.fmt.name} object {where_from}: {summary}. {landed} records landed, "
            f"{problems.bad_records} bad records skipped; the vendor object is unchanged"
        )
        data: bytes | None = None
        if info.size is not None and info.size <= self.quarantine_copy_max_bytes:
            try:
                data = b"".join(self.objects.iter_bytes(info.key))
            except ObjectReadError as exc:
                reason += f" (not copied: {exc})"
        else:
            reason += f" (not copied: larger than {self.quarantine_copy_max_bytes} bytes)"
        if data is None:
            data = orjson.dumps(
                {"origin": where_from, "size": info.size, "etag": info.etag, "copied": False}
            )
        version = info.etag or (info.last_modified.isoformat() if info.last_modified else "")
        where = self.quarantine.put(
            self.source,
            info.key,
            data,
            reason,
            stable_id=quarantine_id(self.source, info.key, version, "damaged"),
        )
        log.warning("%s: quarantined %s: %s", self.source, info.key, reason)
        return ObjectOutcome(
            info.key,
            "partial" if landed else "quarantined",
            records=landed,
            bad_records=problems.bad_records,
            reason=reason,
            quarantined_at=where,
        )


def _pages(records: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    page: list[dict[str, Any]] = []
    for rec in records:
        page.append(rec)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page
