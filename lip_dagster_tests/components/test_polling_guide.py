"""docs/adding-a-polling-source.md, followed as written: its adapter and its YAML block,
taken from the guide itself, make a working source against a vendor of the contract
the adapter documents. If the guide's code stops running, stops loading or stops
resuming where it left off, this fails."""

from __future__ import annotations

import gzip
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import httpx
import orjson
import pytest
import yaml

from lip_dagster import sources
from lip_dagster.components.polling import PollingSource
from lip_dagster.definitions import defs
from lip_dagster.lake.layout import hour_of
from lip_dagster.polling.http import HttpClient

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "adding-a-polling-source.md"
OBJECT_NAME = re.compile(
    r"source=acme/year=(\d{4})/month=(\d\d)/day=(\d\d)/hour=(\d\d)/"
    r"\d{8}T\d{6}Z_[0-9a-f-]{36}\.ndjson\.gz$"
)


def guide_block(language: str) -> str:
    """The guide's one fenced block in ``language``."""
    blocks = re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, f"the guide should hold one {language} block"
    return blocks[0]


class AcmeVendor:
    """The Acme audit API as the guide's adapter documents it: ``GET /v1/audit`` with
    ``since`` (inclusive) and ``until`` (exclusive) or ``cursor``, oldest first,
    ``next`` on every answer (the position after its events, the last page's
    included) and ``has_more``; bearer token ``tok``."""

    def __init__(self, now: datetime) -> None:
        self.events: list[dict[str, Any]] = []
        self.asked: list[dict[str, str]] = []
        self.now = now

    def add(self, n: int, start: datetime) -> None:
        for i in range(n):
            at = start + timedelta(minutes=i)
            self.events.append(
                {"id": f"ev{len(self.events):05d}", "created_at": at.strftime("%Y-%m-%dT%H:%M:%SZ")}
            )

    def handler(self, request: httpx.Request) -> httpx.Response:
        q = {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}
        self.asked.append(q)
        if request.headers.get("authorization") != "Bearer tok" or request.url.path != "/v1/audit":
            return httpx.Response(401, json={"error": "unauthorized"})
        limit = int(q["limit"])
        if "cursor" in q:
            state = orjson.loads(q["cursor"])
        else:
            state = {"since": q["since"], "until": q.get("until"), "after": -1}

        def t(s: str) -> datetime:
            return datetime.fromisoformat(s.replace("Z", "+00:00"))

        match = [
            (i, e)
            for i, e in enumerate(self.events)
            if i > state["after"]
            and t(e["created_at"]) >= t(state["since"])
            and (state["until"] is None or t(e["created_at"]) < t(state["until"]))
        ]
        page = match[:limit]
        after = page[-1][0] if page else state["after"]
        nxt = orjson.dumps({**state, "after": after}).decode()
        return httpx.Response(
            200,
            json={"events": [e for _, e in page], "next": nxt, "has_more": len(match) > limit},
        )


@pytest.fixture
def guide_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lip_home: Path
) -> Iterator[tuple[PollingSource, AcmeVendor]]:
    """The guide's adapter registered as ``acme`` and its YAML block as a component,
    talking to an ``AcmeVendor``."""
    (tmp_path / "acme_from_guide.py").write_text(guide_block("python"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sources.POLLERS, "acme", "acme_from_guide:AcmePoller")
    doc = yaml.safe_load(guide_block("yaml"))
    assert doc["type"] == "lip_dagster.components.PollingSource"
    component = PollingSource.resolve_from_dict(doc["attributes"])
    # a shorter budget than the guide's, so an adapter that never says it is caught up
    # fails this test in seconds instead of paging for minutes
    component = component.model_copy(update={"time_budget_seconds": 20})
    vendor = AcmeVendor(datetime.now(UTC))
    monkeypatch.setattr(
        PollingSource,
        "http_client",
        lambda self: HttpClient(transport=httpx.MockTransport(vendor.handler)),
    )
    monkeypatch.setenv("LIP_ACME_BASE_URL", "https://api.acme.example")
    monkeypatch.setenv("LIP_SECRET_ACME_TOKEN", "tok")
    yield component, vendor
    sys.modules.pop("acme_from_guide", None)


def definitions(component: PollingSource) -> dg.Definitions:
    return dg.Definitions.merge(
        component.build_defs(None),  # type: ignore[arg-type]
        dg.Definitions(resources={"lip": defs().resources["lip"]}),
    )


def run(
    d: dg.Definitions, instance: dg.DagsterInstance, partition: str, live: bool
) -> dg.ExecuteInProcessResult:
    result = d.resolve_job_def("acme_poll").execute_in_process(
        partition_key=partition,
        tags={"lip/mode": "poll"} if live else {},
        instance=instance,
        raise_on_error=False,
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def lake(home: Path) -> dict[str, list[str]]:
    """Event ids per object, by the object's path under the lake."""
    root = home / "lake"
    return {
        p.relative_to(root).as_posix(): [
            orjson.loads(line)["_lip"]["id"]
            for line in gzip.decompress(p.read_bytes()).splitlines()
        ]
        for p in root.rglob("*.ndjson.gz")
    }


def test_the_guides_source_has_its_asset_schedule_checks_and_freshness(guide_source) -> None:
    component, _ = guide_source
    d = definitions(component)
    node = d.resolve_asset_graph().get(dg.AssetKey("acme"))
    assert node.tags["lip/pattern"] == "polling"
    assert node.freshness_policy is not None and node.partitions_def is not None
    checks = {c.name for c in node.check_keys}
    assert {"coverage", "lake_content", "sam_quarantine"} <= checks
    assert d.resolve_job_def("acme_poll").tags["lip/source"] == "acme"
    assert d.resolve_schedule_def("acme_every_5m").cron_schedule == "*/5 * * * *"


def test_the_guides_source_lands_its_events_and_resumes_where_it_stopped(
    guide_source, lip_home: Path
) -> None:
    component, vendor = guide_source
    now = datetime.now(UTC)
    # fewer than a page: the listing ends at once. Recent, so no quiet hour lies between
    # them and now (the coverage check lists quiet hours as gaps, by design)
    vendor.add(3, now - timedelta(minutes=40))
    d = definitions(component)
    instance = dg.DagsterInstance.ephemeral()
    first = run(d, instance, hour_of(now), live=True)
    (meta,) = [
        m.metadata for m in first.asset_materializations_for_node("acme") if "mode" in m.metadata
    ]
    assert meta["stopped/audit"].value == "caught_up"
    landed = lake(lip_home)
    assert sorted(i for ids in landed.values() for i in ids) == ["ev00000", "ev00001", "ev00002"]
    for path in landed:
        assert OBJECT_NAME.search(path), path
    assert "since" in vendor.asked[0]

    vendor.add(2, now - timedelta(minutes=10))
    asked = len(vendor.asked)
    second = run(d, instance, hour_of(now), live=True)
    # the second poll continues from the cursor the first one committed: it neither
    # goes back to the initial lookback nor reads the first three events again
    assert all("cursor" in q and "since" not in q for q in vendor.asked[asked:])
    ids = sorted(i for ids in lake(lip_home).values() for i in ids)
    assert ids == [f"ev{i:05d}" for i in range(5)]
    # and the cursor it committed carries the mark that calls the hours collected
    (coverage,) = [c for c in second.get_asset_check_evaluations() if c.check_name == "coverage"]
    assert coverage.passed, coverage.description


def test_the_guides_source_backfills_exactly_its_hour(guide_source, lip_home: Path) -> None:
    component, vendor = guide_source
    hour = (datetime.now(UTC) - timedelta(hours=5)).replace(minute=0, second=0, microsecond=0)
    vendor.add(90, hour - timedelta(minutes=15))  # 15 before the hour, 60 in it, 15 after
    d = definitions(component)
    run(d, dg.DagsterInstance.ephemeral(), hour_of(hour), live=False)
    (q, *_) = vendor.asked
    assert datetime.fromisoformat(q["since"]) == hour
    assert datetime.fromisoformat(q["until"]) == hour + timedelta(hours=1)
    landed = lake(lip_home)
    assert len([i for ids in landed.values() for i in ids]) == 60
    (path,) = landed
    assert OBJECT_NAME.search(path).groups() == (  # type: ignore[union-attr]
        f"{hour:%Y}",
        f"{hour:%m}",
        f"{hour:%d}",
        f"{hour:%H}",
    )


def test_the_guide_lists_the_options_each_shipped_adapter_reads() -> None:
    """An operator writes `options:` from this table; an option missing from it, or
    listed but refused at load, sends them to the code to find out."""
    rows = re.findall(r"^\| `([a-z_]+)` \| (.*) \|$", GUIDE.read_text(encoding="utf-8"), re.M)
    listed = {adapter: set(re.findall(r"`([a-z_<>]+)`", cell)) for adapter, cell in rows}
    assert set(listed) == set(sources.POLLERS)
    for adapter, names in listed.items():
        assert names == set(sources.poller_class(adapter).option_names(["<app>"])), adapter
