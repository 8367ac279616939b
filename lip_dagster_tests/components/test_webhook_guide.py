"""docs/webhooks.md, "Declaring a source", followed as written: its YAML block, taken
from the guide itself, is a generic HMAC-signed source that the receiver serves and
Dagster drains into the lake. Deliveries are signed as the block's comments say."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import orjson
import pytest
import yaml

from lip_dagster.components.webhook import WebhookSource
from lip_dagster.config import Settings
from lip_dagster.lake.layout import hour_of
from lip_dagster.resources import EmbeddedBackend
from lip_dagster.webhook.receiver import app_for_backend
from lip_dagster.webhook.spec import COMPONENT_TYPES, load_specs
from lip_dagster_tests.webhook.conftest import Client

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
SECRET = "guide-webhook-secret"


def guide_yaml() -> str:
    (block,) = re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    return block


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """The guide's block in a defs folder of its own, read by the receiver and by
    Dagster, on an embedded backend holding the block's secret."""
    doc = yaml.safe_load(guide_yaml())
    assert doc["type"] in COMPONENT_TYPES
    folder = tmp_path / "defs" / doc["attributes"]["name"]
    folder.mkdir(parents=True)
    (folder / "defs.yaml").write_text(guide_yaml())
    monkeypatch.setenv("LIP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LIP_SECRET_MY_APP_WEBHOOK_SECRET", SECRET)
    specs = load_specs(tmp_path / "defs")
    (name,) = specs
    assert specs[name].auth["secret"] == "my-app/webhook-secret"
    backend = EmbeddedBackend(Settings.from_env())
    backend.ensure_source(name)
    app = app_for_backend(backend, specs)
    client = Client(app)
    component = WebhookSource.resolve_from_dict(doc["attributes"])
    d = dg.Definitions.merge(
        component.build_defs(None),  # type: ignore[arg-type]
        dg.Definitions(resources={"lip": backend}),
    )
    yield SimpleNamespace(name=name, client=client, defs=d, home=Settings.from_env().lake_dir)
    client.close()
    app.state.receiver.intake.close()


def post(world: SimpleNamespace, payload: object, at: int | None = None) -> int:
    """A delivery signed as the guide says: X-Lip-Timestamp, and X-Lip-Signature
    ``sha256=`` HMAC-SHA256 of ``"<ts>." + body``."""
    body = orjson.dumps(payload)
    ts = str(at or int(time.time()))
    mac = hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Lip-Timestamp": ts,
        "X-Lip-Signature": f"sha256={mac}",
    }
    return world.client.post(f"/webhooks/{world.name}", content=body, headers=headers).status_code


def test_the_guides_webhook_source_has_its_route_asset_sensor_and_checks(world) -> None:
    d: dg.Definitions = world.defs
    node = d.resolve_asset_graph().get(dg.AssetKey("my_app"))
    assert node.tags["lip/pattern"] == "webhook" and node.freshness_policy is not None
    assert {"dead_letters", "lake_content"} <= {c.name for c in node.check_keys}
    assert d.resolve_sensor_def("my_app_arrivals").job_name == "my_app_drain"
    assert d.resolve_job_def("my_app_drain").tags["lip/source"] == "my_app"
    assert d.resolve_job_def("my_app_replay") is not None


def test_signed_deliveries_land_by_event_time_and_the_rest_are_refused(world) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    earlier = now - timedelta(hours=1)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    assert post(world, {"records": [{"id": "e1", "created_at": f"{earlier:{stamp}}"}]}) == 204
    e2 = {"records": [{"id": "e2", "created_at": f"{now:{stamp}}"}]}
    sent = int(time.time())
    assert post(world, e2, at=sent) == 204
    assert post(world, e2, at=sent) == 401  # the same signed request again: a replay
    assert post(world, e2, at=int(time.time()) - 5) == 204  # signed anew: a duplicate
    assert post(world, {"events": [{"id": "e3"}]}) == 400  # not at events_path
    assert post(world, {"records": [{"id": "e4"}]}, at=int(time.time()) - 301) == 401
    world.client.flush_marks()

    result = world.defs.resolve_job_def("my_app_drain").execute_in_process(
        partition_key=hour_of(now),
        tags={"lip/mode": "poll"},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert result.success
    lines = {
        p.relative_to(world.home).as_posix(): [
            orjson.loads(x) for x in gzip.decompress(p.read_bytes()).splitlines()
        ]
        for p in world.home.rglob("*.ndjson.gz")
    }
    by_id = {e["_lip"]["id"]: (path, e) for path, events in lines.items() for e in events}
    assert sorted(by_id) == ["e1", "e2"]
    for eid, at in (("e1", earlier), ("e2", now)):
        path, event = by_id[eid]
        assert path.startswith(
            f"source=my_app/year={at:%Y}/month={at:%m}/day={at:%d}/hour={at:%H}/"
        ), path
        assert event["_lip"]["pattern"] == "webhook" and event["_lip"]["hour_from"] == "event"
