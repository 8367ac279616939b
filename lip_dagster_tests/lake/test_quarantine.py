"""Quarantine keeps every item it is given, with its reason beside it: however many
items share a name and an instant, none overwrites another, and the quarantine
count (what the ``quarantine_empty`` and SAM checks report) is the number of items.
Locally each file appears whole or not at all. The same on S3, under SSE-KMS."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from lip_dagster.errors import LakeReadError, LakeWriteError
from lip_dagster.lake.backends import LocalQuarantine, Quarantine
from lip_dagster.resources import AwsBackend

T0 = datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)

# Two corrupt objects of one organization trail, same region and five minutes:
# 145 characters that differ only past the 120 a quarantine name keeps.
ORG_TRAIL_KEY = (
    "AWSLogs/o-aa111bb222/111122223333/CloudTrail/eu-central-1/2024/01/01/"
    "111122223333_CloudTrail_eu-central-1_20240101T0005Z_Ab3dEfGhIjKlMnOp.json.gz"
)
OTHER_ORG_TRAIL_KEY = ORG_TRAIL_KEY.replace("Ab3dEfGhIjKlMnOp", "Zz9yXwVuTsRqPoNm")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[datetime]]:
    """The quarantine's clock, held at ``T0`` until a test moves it: every put lands
    in the same microsecond, the worst case for names built from the time."""
    now = [T0]

    class Held(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return now[0]

    monkeypatch.setattr("lip_dagster.lake.backends.datetime", Held, raising=False)
    yield now


def put_the_usual_offenders(q: Quarantine, source: str) -> list[tuple[str, bytes, str]]:
    """Three bad notifications under one name (as the S3 sensor's loop puts them) and
    two vendor objects whose keys differ past the cut; (name, data, reason) of each."""
    items = [
        ("notification", f"message m{i}".encode(), f"message m{i}: not an S3 event notification")
        for i in range(3)
    ]
    items += [
        (ORG_TRAIL_KEY, b"corrupt object 1", "not valid gzip"),
        (OTHER_ORG_TRAIL_KEY, b"corrupt object 2", "not valid gzip"),
    ]
    for name, data, reason in items:
        q.put(source, name, data, reason)
    return items


def test_items_sharing_a_name_and_an_instant_are_all_kept(
    tmp_path: Path, clock: list[datetime]
) -> None:
    q = LocalQuarantine(tmp_path / "quarantine")
    items = put_the_usual_offenders(q, "cloudtrail")
    assert q.count("cloudtrail") == len(items)
    folder = tmp_path / "quarantine" / "cloudtrail"
    kept = {}
    for data_file in folder.glob("*.data"):
        reason_file = folder / (data_file.name.removesuffix(".data") + ".reason.json")
        reason = orjson.loads(reason_file.read_bytes())
        kept[data_file.read_bytes()] = (reason["name"], reason["reason"], reason["source"])
    assert kept == {data: (name, reason, "cloudtrail") for name, data, reason in items}
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [p.name for p in folder.glob("*.data")] + [p.name for p in folder.glob("*.reason.json")]
    )


def test_names_say_when_and_what_and_sort_by_time(tmp_path: Path, clock: list[datetime]) -> None:
    q = LocalQuarantine(tmp_path / "quarantine")
    wheres = []
    for i, name in enumerate(["notification", ORG_TRAIL_KEY, "buffer-42", "notification"]):
        clock[0] = T0 + timedelta(milliseconds=i)
        wheres.append(Path(q.put("okta", name, b"x", "why")).name)
    assert sorted(wheres) == wheres
    assert wheres[0].startswith("20260301T100000.123456Z_notification_")
    assert wheres[1].startswith("20260301T100000.124456Z_AWSLogs_o-aa111bb222_111122223333_")
    assert wheres[2].startswith("20260301T100000.125456Z_buffer-42_")
    assert len(set(wheres)) == 4


def test_untrusted_names_stay_in_the_sources_folder(tmp_path: Path) -> None:
    q = LocalQuarantine(tmp_path / "quarantine")
    for name in ("../../etc/passwd", "a/../../b", "ünïcødé" * 60, "", ".", "a.b", "a.c"):
        q.put("okta", name, name.encode(), "bad")
    files = [p for p in (tmp_path / "quarantine").rglob("*") if p.is_file()]
    assert {p.parent for p in files} == {tmp_path / "quarantine" / "okta"}
    assert all(p.name.isascii() and len(p.name.encode()) <= 255 for p in files)
    assert q.count("okta") == 7


@pytest.mark.parametrize("failing_rename", [1, 2], ids=["reason", "data"])
def test_a_failed_write_leaves_no_partial_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_rename: int
) -> None:
    """Written through a temporary file and renamed: a failure (a full disk) leaves
    no half-written ``.data`` for the count to see, and no temporary file."""
    import lip_dagster.lake.backends as backends

    real_replace = backends.os.replace
    temp_dirs: list[Path] = []
    real_mkstemp = backends.tempfile.mkstemp
    renames = [0]

    def replace(src: str, dst: str) -> None:
        renames[0] += 1
        if renames[0] == failing_rename:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    def mkstemp(**kw: Any) -> tuple[int, str]:
        temp_dirs.append(Path(kw["dir"]))
        return real_mkstemp(**kw)

    monkeypatch.setattr(backends.os, "replace", replace)
    monkeypatch.setattr(backends.tempfile, "mkstemp", mkstemp)
    root = tmp_path / "quarantine"
    q = LocalQuarantine(root)
    with pytest.raises(LakeWriteError, match=r"source 'okta'.*No space left on device"):
        q.put("okta", "notification", b"the bad input", "not JSON")
    assert q.count("okta") == 0
    assert set(temp_dirs) == {root / ".tmp"}  # never in the source's folder
    assert list((root / ".tmp").iterdir()) == []
    assert not list((root / "okta").glob("*.data"))


def test_s3_quarantine_keeps_every_item_under_the_sources_kms_key(
    aws_backend: tuple[AwsBackend, str, dict[str, str]], clock: list[datetime]
) -> None:
    b, run, keys = aws_backend
    q = b.quarantine
    items = put_the_usual_offenders(q, "okta")
    assert q.count("okta") == len(items)
    s3, kms = b.client("s3"), b.client("kms")
    bucket = f"lake-{run}-okta"
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert all(k.startswith("quarantine/okta/") for k in listed)

    def body(key: str) -> bytes:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    kept = {}
    for key in (k for k in listed if k.endswith(".data")):
        reason = orjson.loads(body(key.removesuffix(".data") + ".reason.json"))
        kept[body(key)] = (reason["name"], reason["reason"])
    assert kept == {data: (name, reason) for name, data, reason in items}
    assert len(listed) == 2 * len(items)
    for key in listed:
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms"
        resolved = kms.describe_key(KeyId=head["SSEKMSKeyId"])["KeyMetadata"]["KeyId"]
        assert resolved == keys["okta"]


def test_a_stable_id_keeps_one_item_however_often_it_is_put(tmp_path: Path) -> None:
    """A step retry meeting the same damaged object puts it again under the same id:
    the count stays 1 and the first item's bytes and reason stay."""
    q = LocalQuarantine(tmp_path / "quarantine")
    first = q.put("okta", ORG_TRAIL_KEY, b"first", "not gzip", stable_id="a1b2c3")
    again = q.put("okta", ORG_TRAIL_KEY, b"second", "not gzip (again)", stable_id="a1b2c3")
    assert again == first
    assert q.count("okta") == 1
    (data_file,) = (tmp_path / "quarantine" / "okta").glob("*.data")
    assert data_file.read_bytes() == b"first"
    reason = orjson.loads(data_file.with_name(data_file.stem + ".reason.json").read_bytes())
    assert reason["reason"] == "not gzip"
    # another id, or no id at all, is another item
    q.put("okta", ORG_TRAIL_KEY, b"other", "not gzip", stable_id="d4e5f6")
    q.put("okta", ORG_TRAIL_KEY, b"plain", "not gzip")
    q.put("okta", ORG_TRAIL_KEY, b"plain", "not gzip")
    assert q.count("okta") == 4
    assert list((tmp_path / "quarantine" / ".tmp").iterdir()) == []


def test_a_stable_put_cut_short_is_completed_by_the_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between the reason and the data leaves no counted item; the retry
    (same id) writes the data, once."""
    import lip_dagster.lake.backends as backends

    real_link = backends.os.link
    links = [0]

    def link(src: str, dst: str) -> None:
        links[0] += 1
        if links[0] == 2:
            raise OSError(28, "No space left on device")
        real_link(src, dst)

    q = LocalQuarantine(tmp_path / "quarantine")
    with monkeypatch.context() as m:
        m.setattr(backends.os, "link", link)
        with pytest.raises(LakeWriteError, match="No space left on device"):
            q.put("okta", "notification-m1", b"body", "not JSON", stable_id="m1")
    assert q.count("okta") == 0
    q.put("okta", "notification-m1", b"body", "not JSON", stable_id="m1")
    q.put("okta", "notification-m1", b"body", "not JSON", stable_id="m1")
    assert q.count("okta") == 1
    assert list((tmp_path / "quarantine" / ".tmp").iterdir()) == []


def test_s3_quarantine_with_a_stable_id_is_put_if_absent(
    aws_backend: tuple[AwsBackend, str, dict[str, str]],
) -> None:
    b, run, _ = aws_backend
    q = b.quarantine
    bucket = f"lake-{run}-okta"
    s3 = b.client("s3")
    where = q.put("okta", ORG_TRAIL_KEY, b"first", "not gzip", stable_id="a1b2c3")
    assert q.put("okta", ORG_TRAIL_KEY, b"second", "again", stable_id="a1b2c3") == where
    assert q.count("okta") == 1
    key = where.removeprefix(f"s3://{bucket}/")
    assert s3.get_object(Bucket=bucket, Key=key + ".data")["Body"].read() == b"first"
    reason = orjson.loads(s3.get_object(Bucket=bucket, Key=key + ".reason.json")["Body"].read())
    assert reason["reason"] == "not gzip"
    head = s3.head_object(Bucket=bucket, Key=key + ".data")
    assert head["ServerSideEncryption"] == "aws:kms"
    q.put("okta", ORG_TRAIL_KEY, b"plain", "not gzip")
    assert q.count("okta") == 2


def test_s3_quarantine_count_of_an_unreadable_bucket_is_a_lake_read_error(
    aws_backend: tuple[AwsBackend, str, dict[str, str]],
) -> None:
    """The dead-letter and quarantine checks report a typed error that names the
    place, not botocore's exception."""
    b, run, _ = aws_backend
    with pytest.raises(LakeReadError, match=rf"s3://lake-{run}-unprovisioned/quarantine/"):
        b.quarantine.count("unprovisioned")
