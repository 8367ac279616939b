"""Pages whose events are not an array of JSON objects, for every polled vendor: the
endpoint fails with a ``VendorError`` naming source, endpoint and what is wrong,
nothing of the page lands, and the other endpoints of the source are still polled."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from lip_dagster.errors import VendorError
from lip_dagster.polling.base import EndpointsFailed

from .conftest import Harness

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fixture(path: str) -> Any:
    return orjson.loads((FIXTURES / path).read_bytes())


def okta_page(tamper: Callable[[list[Any]], Any]) -> Any:
    return tamper(fixture("okta/system_log_page.json"))


def keyed(path: str, key: str, tamper: Callable[[Any], Any]) -> Callable[[], Any]:
    def body() -> Any:
        doc = fixture(path)
        doc[key] = tamper(doc[key])
        doc.pop("nextPageToken", None)
        if "response_metadata" in doc:
            doc["response_metadata"] = {"next_cursor": ""}
        return doc

    return body


def with_string(events: list[Any]) -> list[Any]:
    return [*events, "not an event"]


def with_array(events: list[Any]) -> list[Any]:
    return [events]  # a vendor nesting its page one level too deep


def as_object(events: list[Any]) -> dict[str, Any]:
    return {"0": events[0]}


CASES = [
    ("okta", "logs", lambda: okta_page(with_string), r"the page\[\d+\] is a JSON string"),
    ("okta", "logs", lambda: okta_page(with_array), r"the page\[0\] is a JSON array"),
    (
        "onepassword",
        "auditevents",
        keyed("onepassword/auditevents_response.json", "items", with_string),
        r"items\[\d+\] is a JSON string",
    ),
    (
        "onepassword",
        "auditevents",
        keyed("onepassword/auditevents_response.json", "items", as_object),
        "items is a JSON object, not an array",
    ),
    (
        "slack",
        "logs",
        keyed("slack/audit_logs_response.json", "entries", with_string),
        r"entries\[\d+\] is a JSON string",
    ),
    (
        "slack",
        "logs",
        keyed("slack/audit_logs_response.json", "entries", as_object),
        "entries is a JSON object, not an array",
    ),
    (
        "google_workspace",
        "admin",
        keyed("google_workspace/activities_response.json", "items", with_string),
        r"items\[\d+\] is a JSON string",
    ),
    (
        "google_workspace",
        "admin",
        keyed("google_workspace/activities_response.json", "items", as_object),
        "items is a JSON object, not an array",
    ),
]


def vendor(body: Callable[[], Any]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            token = {"access_token": "t", "expires_in": 3600, "token_type": "Bearer"}
            return httpx.Response(200, json=token)
        return httpx.Response(200, json=body())

    return httpx.MockTransport(answer)


@pytest.mark.parametrize(("adapter", "endpoint", "body", "reason"), CASES)
def test_a_page_that_is_not_an_array_of_objects_fails_its_endpoint_by_name(
    harness: Harness, adapter: str, endpoint: str, body: Callable[[], Any], reason: str
) -> None:
    p = harness.poller(
        adapter, initial_lookback_hours=1, endpoints=(endpoint,), transport=vendor(body)
    )
    with pytest.raises(VendorError, match=reason) as info:
        p.run()
    assert f"source {adapter!r} endpoint {endpoint!r}: HTTP 200" in str(info.value)
    assert not harness.lake_ids(adapter)
    assert harness.backend.cursors.get(adapter, endpoint) is None


def test_one_application_with_a_bad_page_does_not_stop_the_others(harness: Harness) -> None:
    """Google polls its applications one after the other: one answering a page it
    cannot read fails alone, and the next is still collected."""
    bad = keyed("google_workspace/activities_response.json", "items", with_string)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            token = {"access_token": "t", "expires_in": 3600, "token_type": "Bearer"}
            return httpx.Response(200, json=token)
        if "/applications/admin" in request.url.path:
            return httpx.Response(200, json=bad())
        return httpx.Response(200, json={"kind": "admin#reports#activities", "items": []})

    p = harness.poller(
        "google_workspace",
        initial_lookback_hours=1,
        endpoints=("admin", "login"),
        transport=httpx.MockTransport(answer),
    )
    with pytest.raises(EndpointsFailed) as info:
        p.run()
    assert info.value.collected == ["login"] and list(info.value.failures) == ["admin"]
    assert harness.backend.cursors.get("google_workspace", "login") is not None


DEEP = b'{"a":' * 300 + b"1" + b"}" * 300  # orjson reads 1,024 levels, writes 254


def test_an_event_nested_too_deep_for_the_lake_goes_to_quarantine_and_the_rest_land(
    harness: Harness,
) -> None:
    """Before, the page failed on the serializer's bare error every run: the source
    stalled on it for good. Now the event is kept in quarantine, whole and readable,
    the others land, the cursor moves on, and polling the page again adds no copy."""
    (event,) = fixture("okta/system_log_page.json")
    recent = (datetime.now(UTC) - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    page = [{**event, "uuid": f"{event['uuid'][:-1]}{i}", "published": recent} for i in range(3)]
    page[1]["debugContext"] = {"debugData": "DEEP"}
    body = orjson.dumps(page).replace(b'"DEEP"', DEEP)

    def answer(request: httpx.Request) -> httpx.Response:
        # Okta links the next page of a poll (no "until") always, and polled from
        # there it is empty until more events are published; a bounded query's last
        # page has no next link
        first = "after" not in request.url.params
        headers = {"content-type": "application/json"}
        if first or "until" not in request.url.params:
            nxt = request.url.copy_set_param("after", "after-the-deep-page")
            headers["link"] = f'<{nxt}>; rel="next"'
        return httpx.Response(200, content=body if first else b"[]", headers=headers)

    def poller() -> Any:
        return harness.poller(
            "okta", initial_lookback_hours=1, transport=httpx.MockTransport(answer)
        )

    first = poller().run()
    assert (first.result.events, first.result.quarantined) == (len(page) - 1, 1)
    assert poller().run().result.events == 0  # the cursor moved past the page
    # a backfill reading the page again finds the event already in quarantine
    published = datetime.fromisoformat(recent)
    again = poller().run(window=(published - timedelta(hours=1), published + timedelta(hours=1)))
    assert (again.result.duplicates, again.result.quarantined) == (len(page) - 1, 1)
    landed = harness.lake_ids("okta")
    assert set(landed) == {e["uuid"] for i, e in enumerate(page) if i != 1}
    assert set(landed.values()) == {1}

    assert harness.backend.quarantine.count("okta") == 1
    folder = harness.backend.settings.quarantine_dir / "okta"
    (data,) = folder.glob("*.data")
    kept = json.loads(data.read_bytes())  # stdlib json: orjson cannot write it back
    assert kept["uuid"] == page[1]["uuid"]
    depth, node = 0, kept["debugContext"]["debugData"]
    while isinstance(node, dict):
        depth, node = depth + 1, node["a"]
    assert depth == 300
    reason = orjson.loads(data.with_name(data.name.replace(".data", ".reason.json")).read_bytes())
    assert page[1]["uuid"] in reason["reason"] and "nested deeper" in reason["reason"]
