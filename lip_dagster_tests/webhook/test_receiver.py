"""The receiver over HTTP (httpx through the ASGI app, the embedded backend behind it):
what a vendor sees for every kind of request, and what ends up buffered."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from lip_dagster.errors import StateError
from lip_dagster.lake.identity_keys import event_key
from lip_dagster.lake.writer import UNTIMED_HOUR, LakeWriter
from lip_dagster.resources import EmbeddedBackend
from lip_dagster.simulator.webhooks import Delivery, WebhookSimulator
from lip_dagster.state.base import DedupeKey, KeyResolution
from lip_dagster.webhook.message import decode
from lip_dagster.webhook.receiver import build_routes, create_app
from lip_dagster.webhook.vendors import GITHUB_IDENTITY, JAMF_IDENTITY, OKTA_EVENT_IDENTITY

from .conftest import Client, MemorySecrets, fixture, fixture_bytes


def post(client: Client, d: Delivery) -> object:
    return client.post(f"/webhooks/{d.source}", headers=d.headers, content=d.body)


def buffered(backend: EmbeddedBackend, source: str) -> list[dict]:
    """Every event in the source's buffer (received with a zero visibility timeout)."""
    events: list[dict] = []
    for m in backend.buffer.receive(source, 1000, 0):
        events += decode(m.body, source).events
    return events


def depth(backend: EmbeddedBackend, source: str) -> int:
    return backend.buffer.depth(source).messages


def okta_fixture_delivery(sim: WebhookSimulator) -> Delivery:
    return sim.okta_delivery(fixture("okta/event_hook_delivery.json")["data"]["events"])


def github_fixture_delivery(sim: WebhookSimulator, name: str = "push") -> Delivery:
    rec = fixture(f"github/webhook_{name}_delivery.json")
    return sim.github_delivery(
        rec["headers"]["X-GitHub-Event"], rec["payload"], guid=rec["headers"]["X-GitHub-Delivery"]
    )


# --------------------------------------------------------------------- Okta


def test_okta_verification_call_is_answered_with_the_challenge(
    client: Client, secrets, backend: EmbeddedBackend
) -> None:
    req = fixture("okta/event_hook_verification_request.json")
    secrets.values["okta-hooks/shared-secret"] = req["headers"]["Authorization"]
    r = client.get("/webhooks/okta_hooks", headers=req["headers"])
    assert r.status_code == 200
    assert r.json() == {"verification": req["headers"]["X-Okta-Verification-Challenge"]}
    forged = {**req["headers"], "Authorization": "guess"}
    r = client.get("/webhooks/okta_hooks", headers=forged)
    assert r.status_code == 401 and "verification" not in r.text
    assert depth(backend, "okta_hooks") == 0


def test_a_get_to_a_vendor_without_a_verification_call_is_405(client: Client) -> None:
    assert client.get("/webhooks/github").status_code == 405


def test_okta_delivery_is_buffered_with_its_arrival_time(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend
) -> None:
    d = okta_fixture_delivery(sim)
    r = post(client, d)
    assert r.status_code == 204 and r.content == b""
    assert r.headers["x-lip-accepted"] == "1"
    (m,) = backend.buffer.receive("okta_hooks", 10, 0)
    got = decode(m.body, "okta_hooks")
    assert got.events == d.events
    assert abs(got.arrival.timestamp() - m.sent_at) < 5
    key = event_key(d.events[0], OKTA_EVENT_IDENTITY, backend.dedupe.key_resolution).dedupe_key
    # an embedded store made now keys ids by the second of their event
    assert key == DedupeKey("2023-03-26-21:05:32", "f1d0b993-cc19-11ed-a688-db22c99ef6c4")
    client.flush_marks()
    assert backend.dedupe.get("okta_hooks", [key])[key].status == "accepted"


@pytest.mark.parametrize("published", ["yesterday", "²", "-①"])
def test_an_event_with_an_unusable_time_is_buffered_and_filed_by_arrival(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend, published: str
) -> None:
    """Not a 500 (which Okta retries once, then drops): the event is kept, and its
    key is the untimed one, so it lands in its arrival hour."""
    event = {
        **fixture("okta/event_hook_delivery.json")["data"]["events"][0],
        "published": published,
    }
    r = post(client, sim.okta_delivery([event]))
    assert r.status_code == 204 and r.headers["x-lip-accepted"] == "1"
    assert buffered(backend, "okta_hooks") == [event]
    key = event_key(event, OKTA_EVENT_IDENTITY, backend.dedupe.key_resolution).dedupe_key
    assert key.bucket == UNTIMED_HOUR


def test_a_duplicate_delivery_is_acknowledged_and_not_buffered_again(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend
) -> None:
    d = sim.okta_deliveries(25, per_delivery=25)[0]
    assert post(client, d).headers["x-lip-accepted"] == "25"
    again = post(client, d)
    assert again.status_code == 204
    assert again.headers["x-lip-accepted"] == "0" and again.headers["x-lip-duplicates"] == "25"
    # a new delivery that overlaps the first: only the new events are buffered
    mixed = sim.okta_delivery([*d.events[:5], *sim.okta_deliveries(3, per_delivery=3)[0].events])
    r = post(client, mixed)
    assert (r.headers["x-lip-accepted"], r.headers["x-lip-duplicates"]) == ("3", "5")
    assert len(buffered(backend, "okta_hooks")) == 28


def test_okta_payload_without_events_is_400_with_the_reason(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend
) -> None:
    doc = fixture("okta/event_hook_delivery.json")
    doc["data"]["events"] = []
    d = sim.okta_delivery([])
    r = client.post("/webhooks/okta_hooks", headers=d.headers, content=orjson.dumps(doc))
    assert r.status_code == 400 and "data.events" in r.json()["error"]
    assert depth(backend, "okta_hooks") == 0


def test_an_okta_delivery_with_a_lone_surrogate_is_accepted_with_the_replacement_character(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend, caplog
) -> None:
    """A user's string cut in the middle of an emoji (``\\ud83d`` without its low half)
    is valid JSON: a 400 would make Okta drop the delivery, so it is buffered with
    U+FFFD in place of the lone half."""
    caplog.set_level(logging.WARNING)
    d = okta_fixture_delivery(sim)
    message = b'"displayMessage":"User login to Okta"'
    assert d.body.count(message) == 1
    body = d.body.replace(message, b'"displayMessage":"User login to Okta \\ud83d"')
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)
    r = client.post("/webhooks/okta_hooks", headers=d.headers, content=body)
    assert r.status_code == 204 and r.headers["x-lip-accepted"] == "1"
    (event,) = buffered(backend, "okta_hooks")
    assert event == {**d.events[0], "displayMessage": "User login to Okta \ufffd"}
    warnings = [r.getMessage() for r in caplog.records if "surrogate" in r.getMessage()]
    assert len(warnings) == 1 and "okta_hooks" in warnings[0]
    assert "User login" not in warnings[0]  # the content is not echoed into logs


def nested(levels: int) -> bytes:
    """A JSON value ``levels`` objects deep."""
    return b'{"a":' * levels + b"1" + b"}" * levels


def signed_github(sim: WebhookSimulator, body: bytes) -> Delivery:
    d = sim.github_delivery("issues", {"action": "opened"}, guid="deep-1")
    sig = hmac.new(sim.github_secret.encode(), body, hashlib.sha256).hexdigest()
    return Delivery(
        d.source, "POST", {**d.headers, "X-Hub-Signature-256": "sha256=" + sig}, body, [], ""
    )


@pytest.mark.parametrize("with_id", [True, False])
def test_an_event_nested_too_deep_to_store_is_400_not_500(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend, with_id: bool
) -> None:
    """orjson reads 1,024 levels of nesting but writes only 254: an event between the
    two was accepted by the parser and then crashed the receiver (a 500 the vendor
    retries). It is refused with 400, as deeper bodies already were."""
    d = okta_fixture_delivery(sim)
    event = dict(fixture("okta/event_hook_delivery.json")["data"]["events"][0])
    if not with_id:
        del event["uuid"]
    event["debugContext"] = "DEEP"
    body = orjson.dumps({"data": {"events": [event]}}).replace(b'"DEEP"', nested(300))
    r = client.post("/webhooks/okta_hooks", headers=d.headers, content=body)
    assert r.status_code == 400 and "nested deeper than" in r.json()["error"]
    assert depth(backend, "okta_hooks") == 0


def test_deep_bodies_of_every_vendor_are_400_and_shallower_ones_land(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend
) -> None:
    jamf = fixture("jamf/webhook_computer_added.json")
    jamf["event"]["model"] = "DEEP"
    jamf_body = orjson.dumps(jamf)
    jamf_d = sim.jamf_delivery(jamf)
    for levels, status in ((300, 400), (1000, 400), (200, 204)):
        deep = nested(levels)
        r = client.post(
            "/webhooks/jamf", headers=jamf_d.headers, content=jamf_body.replace(b'"DEEP"', deep)
        )
        assert r.status_code == status, (levels, r.text)
        gh = signed_github(sim, b'{"action":"opened","x":' + deep + b"}")
        r = post(client, gh)
        assert r.status_code == status, (levels, r.text)
    assert depth(backend, "jamf") == 1 and depth(backend, "github") == 1


# ------------------------------------------------------------------- GitHub


def test_github_delivery_keeps_event_name_and_delivery_id(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend
) -> None:
    d = github_fixture_delivery(sim)
    assert post(client, d).status_code == 204
    (rec,) = buffered(backend, "github")
    assert rec["guid"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert rec["event"] == "push" and rec["repository_id"] == 35129377
    assert rec["request"]["payload"] == fixture("github/webhook_push_delivery.json")["payload"]
    assert "X-Hub-Signature-256" not in rec["request"]["headers"]
    assert GITHUB_IDENTITY.event_id(rec) == rec["guid"]


def test_github_form_encoded_delivery_is_the_same_event(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend
) -> None:
    rec = fixture("github/webhook_ping_delivery.json")
    form = sim.github_delivery("ping", rec["payload"], guid="g-1", form=True)
    assert form.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert post(client, form).status_code == 204
    (got,) = buffered(backend, "github")
    assert got["request"]["payload"] == rec["payload"] and got["event"] == "ping"


def test_github_published_test_vector_passes_auth_then_fails_parsing(
    client: Client, secrets, backend: EmbeddedBackend
) -> None:
    secrets.values["github/webhook-secret"] = "It's a Secret to Everybody"
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature-256": "sha256="
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    }
    r = client.post("/webhooks/github", headers=headers, content=b"Hello, World!")
    assert r.status_code == 400 and "JSON" in r.json()["error"]  # past auth, not JSON
    r = client.post("/webhooks/github", headers=headers, content=b"Hello, World?")
    assert r.status_code == 401
    assert depth(backend, "github") == 0


@pytest.mark.parametrize("missing", ["X-GitHub-Delivery", "X-GitHub-Event"])
def test_github_delivery_without_its_id_headers_is_400(
    client: Client, sim: WebhookSimulator, missing: str
) -> None:
    d = github_fixture_delivery(sim)
    headers = {k: v for k, v in d.headers.items() if k != missing}
    r = client.post("/webhooks/github", headers=headers, content=d.body)
    assert r.status_code == 400 and missing in r.json()["error"]


# --------------------------------------------------------------------- Jamf


@pytest.mark.parametrize(
    "name", ["webhook_computer_added", "webhook_computer_check_in", "webhook_rest_api_operation"]
)
def test_jamf_events_get_a_stable_synthesized_id(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend, name: str
) -> None:
    d = sim.jamf_delivery(fixture(f"jamf/{name}.json"))
    assert post(client, d).headers["x-lip-accepted"] == "1"
    assert post(client, d).headers["x-lip-duplicates"] == "1"  # same event again
    (rec,) = buffered(backend, "jamf")
    eid = JAMF_IDENTITY.event_id(rec)
    assert eid.startswith("jamf:sha256:") and JAMF_IDENTITY.event_time(rec) is not None


def test_jamf_events_differing_in_anything_are_two_events() -> None:
    a = fixture("jamf/webhook_computer_check_in.json")
    b = fixture("jamf/webhook_computer_check_in.json")
    b["event"]["computer"]["serialNumber"] = "C02OTHER"
    assert JAMF_IDENTITY.event_id(a) != JAMF_IDENTITY.event_id(b)
    assert JAMF_IDENTITY.event_id(a) == JAMF_IDENTITY.event_id(
        fixture("jamf/webhook_computer_check_in.json")
    )


def test_one_mac_finishing_two_policies_in_one_second_is_two_events(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend
) -> None:
    """Same event name, same second, same device: only ``policyId`` differs."""
    first = fixture("jamf/webhook_computer_policy_finished.json")
    second = fixture("jamf/webhook_computer_policy_finished.json")
    second["event"]["policyId"] = 102
    assert post(client, sim.jamf_delivery(first)).headers["x-lip-accepted"] == "1"
    assert post(client, sim.jamf_delivery(second)).headers["x-lip-accepted"] == "1"
    again = post(client, sim.jamf_delivery(second))
    assert again.headers["x-lip-duplicates"] == "1"
    assert sorted(e["event"]["policyId"] for e in buffered(backend, "jamf")) == [101, 102]


def test_jamf_set_to_xml_is_415_naming_json(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend
) -> None:
    headers = {**sim.jamf_headers, "Content-Type": "text/xml"}
    body = fixture_bytes("jamf/webhook_computer_added.xml")
    r = client.post("/webhooks/jamf", headers=headers, content=body)
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    assert depth(backend, "jamf") == 0


# ----------------------------------------------------- refusals, nothing stored


def test_unknown_source_is_404_and_cannot_choose_a_buffer(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend
) -> None:
    d = okta_fixture_delivery(sim)
    for path in ("/webhooks/okta", "/webhooks/..%2Fokta_hooks", "/webhooks/OKTA_HOOKS"):
        assert client.post(path, headers=d.headers, content=d.body).status_code == 404
    assert client.post("/webhooks/okta_hooks/x", content=b"{}").status_code == 404
    assert depth(backend, "okta_hooks") == 0


def test_bad_auth_is_401_before_the_body_is_parsed(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend
) -> None:
    d = sim.tampered(okta_fixture_delivery(sim))
    for body in (d.body, b"{not json", b""):
        r = client.post("/webhooks/okta_hooks", headers=d.headers, content=body)
        assert r.status_code == 401
    no_auth = {k: v for k, v in d.headers.items() if k != "Authorization"}
    assert client.post("/webhooks/okta_hooks", headers=no_auth, content=d.body).status_code == 401
    g = sim.tampered(github_fixture_delivery(sim))
    assert post(client, g).status_code == 401
    assert depth(backend, "okta_hooks") == depth(backend, "github") == 0


def test_oversize_body_is_413_by_header_and_by_bytes_sent(
    client: Client, sim: WebhookSimulator, specs, backend: EmbeddedBackend
) -> None:
    limit = specs["okta_hooks"].max_body_bytes
    d = okta_fixture_delivery(sim)
    big = b"{" + b" " * limit + b"}"
    r = client.post("/webhooks/okta_hooks", headers=d.headers, content=big)
    assert r.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    r = client.post("/webhooks/okta_hooks", headers=d.headers, content=chunks())
    assert r.status_code == 413
    r = client.post(
        "/webhooks/okta_hooks", headers={**d.headers, "Content-Length": "12x"}, content=d.body
    )
    assert r.status_code == 400
    assert depth(backend, "okta_hooks") == 0


def test_an_event_too_large_for_the_buffer_is_413_and_nothing_is_stored(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend
) -> None:
    import base64
    import random

    event = fixture("okta/event_hook_delivery.json")["data"]["events"][0]
    # random bytes do not compress: ~400 KB stays ~300 KB, past SQS's message size
    event["debugContext"] = {
        "debugData": {"blob": base64.b64encode(random.randbytes(300_000)).decode()}
    }
    small = fixture("okta/event_hook_delivery.json")["data"]["events"][0]
    small["uuid"] = "0c7a1c1e-0000-4000-8000-000000000001"
    d = sim.okta_delivery([small, event])
    r = post(client, d)
    assert r.status_code == 413 and "larger than the buffer allows" in r.json()["error"]
    assert depth(backend, "okta_hooks") == 0  # not even the small event


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/xml", "multipart/form-data"])
def test_wrong_content_type_is_415(
    client: Client, sim: WebhookSimulator, ctype: str | None
) -> None:
    d = okta_fixture_delivery(sim)
    headers = {k: v for k, v in d.headers.items() if k != "Content-Type"}
    if ctype:
        headers["Content-Type"] = ctype
    assert client.post("/webhooks/okta_hooks", headers=headers, content=d.body).status_code == 415


def test_content_type_parameters_and_case_are_accepted(
    client: Client, sim: WebhookSimulator
) -> None:
    d = okta_fixture_delivery(sim)
    headers = {**d.headers, "Content-Type": "Application/JSON; charset=utf-8"}
    assert client.post("/webhooks/okta_hooks", headers=headers, content=d.body).status_code == 204


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b'{"data": {"events": [{"uuid": "\xff\xfe"}]}}', "JSON"),  # invalid UTF-8
        (b'{"data": {"events": [' + b"[" * 2000 + b"]" * 2000 + b"]}}", "JSON"),  # too deep
        (b'{"data": {"events": [{"uuid": 1}]', "JSON"),  # truncated
        (b'[{"uuid": "a"}]', "object"),
        (b'{"data": {"events": "nope"}}', "data.events"),
        (b'{"data": {"events": [1, 2]}}', "objects"),
    ],
)
def test_malformed_bodies_are_400_with_a_reason_and_nothing_stored(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend, body: bytes, reason: str
) -> None:
    d = okta_fixture_delivery(sim)
    r = client.post("/webhooks/okta_hooks", headers=d.headers, content=body)
    assert r.status_code == 400 and reason in r.json()["error"]
    assert depth(backend, "okta_hooks") == 0


def test_a_content_length_of_non_ascii_digits_is_400_not_500(
    client: Client, sim: WebhookSimulator
) -> None:
    """HTTP header bytes are Latin-1; '\xb2' decodes to a superscript two, which
    ``str.isdigit`` calls a digit and ``int`` refuses."""
    d = okta_fixture_delivery(sim)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": d.body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(k.lower().encode(), v.encode()) for k, v in d.headers.items()]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/webhooks/okta_hooks",
        "root_path": "",
        "headers": [*headers, (b"content-length", b"\xb2")],
    }
    client.run(client.app(scope, receive, send))
    assert sent[0]["status"] == 400
    assert b"Content-Length is not a number" in sent[1]["body"]


def test_healthz(client: Client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


# ------------------------------------------------------- storage faults, no 5xx


def test_buffer_down_is_503_and_the_retry_is_not_mistaken_for_a_duplicate(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend, monkeypatch
) -> None:
    d = okta_fixture_delivery(sim)

    def broken(source: str, bodies: object) -> Callable[[], None]:
        raise StateError("disk full")

    with monkeypatch.context() as m:
        m.setattr(backend.buffer, "append", broken)
        r = post(client, d)
    assert r.status_code == 503 and r.headers["retry-after"]
    assert "disk full" not in r.text  # internals stay in the log
    r = post(client, d)  # the vendor retries once the buffer is back
    assert r.status_code == 204 and r.headers["x-lip-accepted"] == "1"
    assert len(buffered(backend, "okta_hooks")) == 1


def _flush_raises(
    append: Callable[[str, Any], Callable[[], None]], error: Exception
) -> Callable[[str, Any], Callable[[], None]]:
    """``Buffer.append`` that commits as usual and returns a flush raising ``error``."""

    def wrapped(source: str, bodies: Any) -> Callable[[], None]:
        append(source, bodies)

        def flush() -> None:
            raise error

        return flush

    return wrapped


def test_a_signed_request_refused_with_503_is_accepted_when_sent_again(
    backend: EmbeddedBackend, monkeypatch
) -> None:
    """``hmac`` auth refuses a signature it has seen, but a delivery the receiver
    refused (503: try again) was not stored: the sender's identical retry is taken,
    not refused as a replay, which would lose the event (senders give up on a 4xx)."""
    from lip_dagster.webhook.spec import WebhookSourceSpec

    from .conftest import MemorySecrets

    backend.ensure_source("partner_app")
    spec = WebhookSourceSpec(
        name="partner_app",
        vendor="generic",
        id_fields=["id"],
        time_field="created_at",
        auth={"type": "hmac", "secret": "partner-app/webhook-secret"},
    )
    secrets = MemorySecrets({"partner-app/webhook-secret": "partner-shared-secret"})
    app = create_app(
        {"partner_app": spec}, buffer=backend.buffer, dedupe=backend.dedupe, secrets=secrets
    )
    body = fixture_bytes("generic/signed_delivery.json")
    ts = str(int(time.time()))
    mac = hmac.new(b"partner-shared-secret", ts.encode() + b"." + body, hashlib.sha256)
    headers = {
        "Content-Type": "application/json",
        "X-Lip-Timestamp": ts,
        "X-Lip-Signature": "sha256=" + mac.hexdigest(),
    }

    def broken(source: str, bodies: object) -> Callable[[], None]:
        raise StateError("database is locked")

    c = Client(app)
    try:
        with monkeypatch.context() as m:
            m.setattr(backend.buffer, "append", broken)
            assert c.post("/webhooks/partner_app", headers=headers, content=body).status_code == 503
        r = c.post("/webhooks/partner_app", headers=headers, content=body)
        assert r.status_code == 204 and r.headers["x-lip-accepted"] == "1"
        r = c.post("/webhooks/partner_app", headers=headers, content=body)
        assert r.status_code == 401 and "replay" in r.text  # once stored, it is used
    finally:
        c.close()
        app.state.receiver.intake.close()
    assert len(buffered(backend, "partner_app")) == 1


def test_a_failed_flush_to_disk_is_503_and_the_receiver_refuses_until_restarted(
    client: Client,
    sim: WebhookSimulator,
    backend: EmbeddedBackend,
    specs: dict,
    secrets: Any,
    monkeypatch,
    caplog,
) -> None:
    """After a failed fsync nothing committed can be called durable: the delivery is
    refused, so is every later one, ``/healthz`` fails so the platform replaces the
    receiver, and no id of the refused delivery is marked as seen."""
    d = okta_fixture_delivery(sim)
    eio = StateError("SQLite buffer 'state.db': flushing its WAL to disk failed: EIO")
    with monkeypatch.context() as m, caplog.at_level(logging.ERROR):
        m.setattr(backend.buffer, "append", _flush_raises(backend.buffer.append, eio))
        r = post(client, d)
    assert r.status_code == 503 and r.headers["retry-after"]
    assert "refusing every delivery until the receiver is restarted" in caplog.text
    assert post(client, d).status_code == 503  # the disk is fine again: still refused
    assert client.get("/healthz").status_code == 503
    client.flush_marks()

    restarted = Client(
        create_app(specs, buffer=backend.buffer, dedupe=backend.dedupe, secrets=secrets)
    )
    try:
        assert restarted.get("/healthz").status_code == 200
        r = post(restarted, d)
        # not mistaken for a duplicate: the refused delivery's ids were never marked
        assert r.status_code == 204 and r.headers["x-lip-accepted"] == "1"
    finally:
        restarted.close()
        restarted.app.state.receiver.intake.close()


def test_nothing_waiting_on_a_failed_flush_is_answered_2xx(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend, monkeypatch
) -> None:
    """While a flush to disk stalls and then fails, the vendor retries the delivery
    (Okta after 3 s) and another delivery is committed behind it. Both are refused:
    the retry counted as a duplicate of ids that never became durable, and the next
    group's flush could "succeed" for pages the kernel dropped. Afterwards every
    source is refused, not only the one whose flush failed: they share the file."""
    first, behind = sim.okta_deliveries(2, per_delivery=1)
    other = github_fixture_delivery(sim)
    real_append = backend.buffer.append
    stalled, release = threading.Event(), threading.Event()
    appends: list[str] = []

    def append(source: str, bodies: Any) -> Callable[[], None]:
        flush = real_append(source, bodies)
        appends.append(source)
        if len(appends) > 1:
            return flush

        def failing_flush() -> None:
            stalled.set()
            release.wait(10)
            raise StateError("SQLite buffer 'state.db': flushing its WAL to disk failed: EIO")

        return failing_flush

    monkeypatch.setattr(backend.buffer, "append", append)
    intake = client.app.state.receiver.intake

    async def scenario() -> list[httpx.Response]:
        http = client.http
        tasks = [asyncio.ensure_future(post_async(http, first))]
        while not stalled.is_set():
            await asyncio.sleep(0.005)
        tasks += [asyncio.ensure_future(post_async(http, d)) for d in (first, behind)]
        for _ in range(400):  # until both are committed behind the stalled flush
            await asyncio.sleep(0.005)
            if len(appends) >= 2 and not any(
                s.waiting or s.committing for s in intake._sources.values()
            ):
                break
        release.set()
        return list(await asyncio.gather(*tasks))

    answers = client.run(scenario())
    assert [r.status_code for r in answers] == [503, 503, 503]
    assert client.get("/healthz").status_code == 503
    r = post(client, other)
    assert r.status_code == 503 and "x-lip-accepted" not in r.headers


async def post_async(http: httpx.AsyncClient, d: Delivery) -> httpx.Response:
    return await http.post(f"/webhooks/{d.source}", headers=d.headers, content=d.body)


def test_a_bug_in_a_flush_fails_those_requests_and_not_the_receiver(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend, monkeypatch, caplog
) -> None:
    """Not a disk failure: the requests of that flush fail with the error (uvicorn
    answers 500; no request hangs), it is logged, and the next delivery is taken as
    usual."""
    first, second = sim.okta_deliveries(20, per_delivery=10)
    bug = RuntimeError("a bug in the flush")
    with monkeypatch.context() as m, caplog.at_level(logging.ERROR):
        m.setattr(backend.buffer, "append", _flush_raises(backend.buffer.append, bug))
        with pytest.raises(RuntimeError, match="a bug in the flush"):
            post(client, first)
    assert "flushing 1 group(s) failed" in caplog.text
    r = post(client, second)
    assert r.status_code == 204 and r.headers["x-lip-accepted"] == "10"
    assert client.get("/healthz").status_code == 200


def test_a_failed_accepted_mark_still_answers_2xx_for_a_buffered_payload(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend, monkeypatch, caplog
) -> None:
    d = okta_fixture_delivery(sim)

    def broken(source: str, keys: object) -> list[bool]:
        raise StateError("dedupe unavailable")

    monkeypatch.setattr(backend.dedupe, "accept", broken)
    with caplog.at_level(logging.WARNING):
        r = post(client, d)
        client.flush_marks()
    assert r.status_code == 204 and r.headers["x-lip-accepted"] == "1"
    assert depth(backend, "okta_hooks") == 1
    assert "not marked accepted" in caplog.text


def test_a_secret_store_outage_is_503_with_retry_after_and_nothing_stored(
    specs, backend: EmbeddedBackend, sim: WebhookSimulator, caplog
) -> None:
    """Secrets Manager throttled or unreachable: the receiver cannot check anyone, so
    it refuses (fail closed) the way it refuses for a missing secret, 503 with
    Retry-After and one log line, not a crash of the request (500 and a traceback
    from uvicorn, an errored invocation and a 502 on Lambda)."""

    class Unreachable(MemorySecrets):
        def _fetch(self, name: str) -> str:
            raise StateError("reading secret from AWS Secrets Manager: throttled")

    app = create_app(specs, buffer=backend.buffer, dedupe=backend.dedupe, secrets=Unreachable({}))
    client = Client(app)
    try:
        with caplog.at_level(logging.INFO):
            for d in (okta_fixture_delivery(sim), sim.github_deliveries(1)[0]):
                r = post(client, d)
                assert r.status_code == 503 and r.headers["retry-after"], r.text
                assert "throttled" not in r.text  # internals stay in the log
            verification = sim.okta_verification()
            r = client.get("/webhooks/okta_hooks", headers=verification.headers)
            assert r.status_code == 503
    finally:
        client.close()
        app.state.receiver.intake.close()
    assert "webhook okta_hooks: 503" in caplog.text
    assert depth(backend, "okta_hooks") == 0 and depth(backend, "github") == 0


def test_a_dedupe_store_that_cannot_be_read_does_not_refuse_deliveries(
    client: Client,
    sim: WebhookSimulator,
    backend: EmbeddedBackend,
    specs,
    monkeypatch,
    caplog,
) -> None:
    """GitHub and Jamf Pro do not retry a refused delivery: with the buffer healthy, a
    dedupe store that cannot be read (DynamoDB throttling, say) must not turn their
    deliveries into 503s. Recognising duplicates at the door only saves buffer space;
    the writer's commit log drops a duplicate when it lands."""
    from lip_dagster_tests.webhook.test_drain import drainer, lake_ids

    first, second = sim.github_deliveries(2)
    assert post(client, first).status_code == 204
    client.flush_marks()

    def broken(source: str, keys: object) -> dict:
        raise StateError("dedupe unavailable")

    with monkeypatch.context() as m, caplog.at_level(logging.WARNING):
        m.setattr(backend.dedupe, "get", broken)
        fresh = post(client, second)
        again = post(client, first)  # a redelivery: not recognised, buffered again
    assert fresh.status_code == 204 and fresh.headers["x-lip-accepted"] == "1"
    assert again.status_code == 204
    assert "without checking for duplicates" in caplog.text
    client.flush_marks()
    d, w = drainer(backend, specs, "github")
    report = d.run()
    w.close()
    assert report.error is None
    guids = [first.headers["X-GitHub-Delivery"], second.headers["X-GitHub-Delivery"]]
    assert lake_ids(backend.settings.lake_dir, "github") == dict.fromkeys(guids, 1)


def test_concurrent_deliveries_are_committed_in_groups(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend, monkeypatch
) -> None:
    sends: list[int] = []
    flushes: list[int] = []
    real_append = backend.buffer.append

    def counting(source: str, bodies: list[bytes]) -> Callable[[], None]:
        sends.append(len(bodies))
        # a commit that takes a few milliseconds, as on a busy disk: requests arriving
        # meanwhile must wait for the next commit together, however fast the machine
        # runs the event loop against the committer thread
        time.sleep(0.005)
        real_flush = real_append(source, bodies)

        def flush() -> None:
            flushes.append(1)
            real_flush()

        return flush

    marks: list[int] = []
    real_accept = backend.dedupe.accept

    def counting_accept(source: str, keys: list[DedupeKey]) -> list[bool]:
        marks.append(len(keys))
        return real_accept(source, keys)

    monkeypatch.setattr(backend.buffer, "append", counting)
    monkeypatch.setattr(backend.dedupe, "accept", counting_accept)
    deliveries = sim.okta_deliveries(400, per_delivery=2)
    deliveries += deliveries[:20]  # duplicates racing their originals
    responses = client.gather(
        [
            lambda d=d: client.http.post(f"/webhooks/{d.source}", headers=d.headers, content=d.body)
            for d in deliveries
        ]
    )
    assert all(r.status_code == 204 for r in responses)
    assert sum(int(r.headers["x-lip-accepted"]) for r in responses) == 400
    assert len(buffered(backend, "okta_hooks")) == 400
    assert len(sends) < len(deliveries) / 4, "every request paid for its own commit"
    assert len(flushes) <= len(sends), "a commit was flushed to disk more than once"
    client.flush_marks()
    assert sum(marks) == 400 and len(marks) <= len(sends), "marks were not coalesced"


def test_logs_carry_no_secret_and_no_header_value(
    client: Client, sim: WebhookSimulator, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    good = okta_fixture_delivery(sim)
    bad = sim.tampered(good)
    post(client, good)
    post(client, bad)
    post(client, sim.tampered(github_fixture_delivery(sim)))
    text = caplog.text
    assert "401" in text
    for value in (*sim.credentials().values(), bad.headers["Authorization"]):
        assert value not in text


# ------------------------------------------------------------- the hot path


def test_a_delivery_gets_the_same_answer_through_starlettes_router(
    app, client: Client, sim: WebhookSimulator, backend: EmbeddedBackend
) -> None:
    """Deliveries to a declared source skip Starlette's router; behind a root path
    they take the router instead, and must be answered alike."""
    routed = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, root_path="/behind-a-proxy"),
        base_url="http://receiver.test",
    )

    def via(http: httpx.AsyncClient, method: str, path: str, **kw: Any) -> httpx.Response:
        return client.run(http.request(method, path, **kw))

    answers = []
    for http, d in zip((client.http, routed), sim.okta_deliveries(2, per_delivery=1), strict=True):
        challenge = {
            "Authorization": d.headers["Authorization"],
            "X-Okta-Verification-Challenge": "challenge-of-" + d.events[0]["uuid"],
        }
        verified = via(http, "GET", "/webhooks/okta_hooks", headers=challenge)
        r, again, forged = (
            via(http, "POST", "/webhooks/okta_hooks", headers=x.headers, content=x.body)
            for x in (d, d, sim.tampered(d))
        )
        answers.append(
            (
                verified.json()["verification"] == challenge["X-Okta-Verification-Challenge"],
                r.status_code,
                r.headers["x-lip-accepted"],
                again.headers["x-lip-duplicates"],
                forged.status_code,
                forged.json()["error"],
            )
        )
    assert answers[0] == answers[1]
    assert answers[0][:5] == (True, 204, "1", "1", 401)
    assert via(routed, "POST", "/webhooks/okta", content=b"{}").status_code == 404
    client.run(routed.aclose())
    assert len(buffered(backend, "okta_hooks")) == 2


@pytest.mark.parametrize("resolution", ["hour", "second"])
def test_dedupe_keys_are_the_writers_keys(
    specs, secrets, sim: WebhookSimulator, resolution: KeyResolution
) -> None:
    """The receiver derives each key without ``event_key``'s extra objects; it must
    still be the key the writer will claim, or a mark would not stop a duplicate."""
    routes = build_routes(specs, secrets, resolution)
    okta = fixture("okta/event_hook_delivery.json")["data"]["events"]
    untimed = {**okta[0], "uuid": "no-time"}
    del untimed["published"]
    offset = {**okta[0], "uuid": "offset", "published": "2023-03-26T23:30:00.123+02:00"}
    epoch = {**okta[0], "uuid": "epoch", "published": 1679866731843}
    go_zero = {**okta[0], "uuid": "go-zero", "published": "0001-01-01T00:00:00Z"}
    jamf = [
        fixture(f"jamf/{n}.json") for n in ("webhook_computer_added", "webhook_rest_api_operation")
    ]
    cases = {
        "okta_hooks": [*okta, untimed, offset, epoch, go_zero],
        "github": [e for d in sim.github_deliveries(3) for e in d.events],
        "jamf": jamf,
    }
    writer = LakeWriter.__new__(LakeWriter)  # only its _prepare: no stores
    now = datetime.now(UTC)
    for name, events in cases.items():
        identity = routes[name].extractor.identity
        keys = routes[name].keys(events)
        assert keys == [event_key(e, identity, resolution).dedupe_key for e in events]
        groups, _ = writer._prepare(name, events, identity, "webhook", now, now, None, resolution)
        assert sorted(keys) == sorted(k for chunk in groups.values() for k in chunk.keys)
    second = "2023-03-26-21:00" if resolution == "hour" else "2023-03-26-21:30:00"
    assert routes["okta_hooks"].keys([offset])[0].bucket == second
    assert routes["okta_hooks"].keys([go_zero])[0].bucket == UNTIMED_HOUR


def test_marks_never_run_while_a_commit_of_the_source_is_running(
    specs, secrets, sim: WebhookSimulator, backend: EmbeddedBackend, monkeypatch
) -> None:
    """Two writers of one SQLite file queue on its lock, and SQLite's busy handler
    waits by sleeping for milliseconds: the receiver keeps its commits and marks in
    one thread so that never happens between them."""
    busy = threading.Lock()
    overlaps: list[str] = []
    calls: Counter[str] = Counter()

    def exclusive(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            if not busy.acquire(blocking=False):
                overlaps.append(name)
                return real(*args)
            try:
                calls[name] += 1
                time.sleep(0.005)  # commits fill most of the time: a mark would collide
                return real(*args)
            finally:
                busy.release()

        return call

    monkeypatch.setattr(backend.buffer, "append", exclusive("append", backend.buffer.append))
    monkeypatch.setattr(backend.dedupe, "accept", exclusive("accept", backend.dedupe.accept))
    app = create_app(
        specs, buffer=backend.buffer, dedupe=backend.dedupe, secrets=secrets, mark_delay=0.01
    )
    client = Client(app)
    deliveries = sim.okta_deliveries(240, per_delivery=2)
    for start in range(0, len(deliveries), 4):  # traffic through several mark delays
        batch = deliveries[start : start + 4]
        client.gather(
            [
                lambda d=d: client.http.post(
                    f"/webhooks/{d.source}", headers=d.headers, content=d.body
                )
                for d in batch
            ]
        )
    client.close()
    app.state.receiver.intake.close()
    assert calls["accept"] >= 2 and calls["append"] >= 10, calls
    assert overlaps == []
    resolution = backend.dedupe.key_resolution
    keys = [
        event_key(e, OKTA_EVENT_IDENTITY, resolution).dedupe_key
        for d in deliveries
        for e in d.events
    ]
    assert {s.status for s in backend.dedupe.get("okta_hooks", keys).values()} == {"accepted"}
    assert len(backend.dedupe.get("okta_hooks", keys)) == 240


def test_integers_beyond_64_bits_are_accepted_rounded_as_documented(
    client: Client, sim: WebhookSimulator, backend: EmbeddedBackend
) -> None:
    """docs/webhooks.md: such integers are not a 400; they are read as doubles."""
    d = okta_fixture_delivery(sim)
    event = dict(fixture("okta/event_hook_delivery.json")["data"]["events"][0])
    body = orjson.dumps({"data": {"events": [event]}})
    body = body.replace(b'"data":{', b'"data":{"big":18446744073709551617,', 1)
    r = client.post("/webhooks/okta_hooks", headers=d.headers, content=body)
    assert r.status_code == 204
    body = body.replace(b"18446744073709551617", b"1e400")
    r = client.post("/webhooks/okta_hooks", headers=d.headers, content=body)
    assert r.status_code == 400 and "infinity" in r.json()["error"]
