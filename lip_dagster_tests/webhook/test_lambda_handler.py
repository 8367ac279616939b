"""The same app behind API Gateway: REST (payload 1.0) and HTTP API (2.0) events,
base64 bodies, stages in the path, and the Lambda entry point itself."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from starlette.applications import Starlette

from lip_dagster.resources import EmbeddedBackend
from lip_dagster.simulator.webhooks import Delivery, WebhookSimulator
from lip_dagster.webhook import lambda_handler
from lip_dagster.webhook.lambda_handler import invoke, to_asgi
from lip_dagster.webhook.message import decode

from .conftest import fixture


def v1_event(d: Delivery, *, b64: bool, stage: str = "prod") -> dict:
    multi = {k: [v] for k, v in d.headers.items()}
    return {
        "resource": "/webhooks/{source}",
        "path": f"/webhooks/{d.source}",
        "httpMethod": d.method,
        "headers": dict(d.headers),
        "multiValueHeaders": multi,
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"source": d.source},
        "requestContext": {
            "stage": stage,
            "path": f"/{stage}/webhooks/{d.source}",
            "identity": {"sourceIp": "192.30.252.1"},
        },
        "body": base64.b64encode(d.body).decode() if b64 else d.body.decode(),
        "isBase64Encoded": b64,
    }


def v2_event(d: Delivery, *, stage: str = "live") -> dict:
    path = f"/webhooks/{d.source}" if stage == "$default" else f"/{stage}/webhooks/{d.source}"
    return {
        "version": "2.0",
        "routeKey": "POST /webhooks/{source}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {k.lower(): v for k, v in d.headers.items()},
        "requestContext": {
            "http": {"method": d.method, "path": path, "sourceIp": "192.30.252.1"},
            "stage": stage,
        },
        "body": base64.b64encode(d.body).decode(),
        "isBase64Encoded": True,
    }


_loops: dict[int, tuple[Starlette, asyncio.AbstractEventLoop]] = {}


def run(app: Starlette, event: dict) -> dict:
    """One invocation, on one event loop per app as the handler keeps one per
    container: the receiver's committer answers on the loop a group came in on, so a
    fresh loop per call could leave the next call's answer on a closed one."""
    if id(app) not in _loops:
        _loops[id(app)] = (app, asyncio.new_event_loop())
    return _loops[id(app)][1].run_until_complete(invoke(app, event))


@pytest.fixture(autouse=True)
def _close_loops() -> Iterator[None]:
    yield
    while _loops:
        _, (app, loop) = _loops.popitem()
        loop.run_until_complete(app.state.receiver.intake.flush_marks())
        app.state.receiver.intake.close()
        loop.close()


@pytest.mark.parametrize("b64", [True, False])
def test_rest_api_event_with_a_signed_github_delivery(
    app: Starlette, sim: WebhookSimulator, backend: EmbeddedBackend, b64: bool
) -> None:
    d = sim.github_deliveries(1)[0]
    resp = run(app, v1_event(d, b64=b64))
    assert resp["statusCode"] == 204, resp
    assert resp["multiValueHeaders"]["x-lip-accepted"] == ["1"]
    (m,) = backend.buffer.receive("github", 10, 0)
    assert decode(m.body, "github").events[0]["request"]["payload"] == d.events[0]


def test_a_rest_api_stage_named_like_the_route_is_not_cut_from_the_path(
    app: Starlette, sim: WebhookSimulator, backend: EmbeddedBackend
) -> None:
    """A REST API's ``path`` never holds the stage (only ``requestContext.path``
    does): a stage named ``webhooks`` must not turn ``/webhooks/github`` into
    ``/github``, a 404 that GitHub would not retry."""
    d = sim.github_deliveries(1)[0]
    resp = run(app, v1_event(d, b64=False, stage="webhooks"))
    assert resp["statusCode"] == 204, resp
    assert backend.buffer.depth("github").messages == 1


def test_http_api_event_with_a_stage_and_a_base64_body(
    app: Starlette, sim: WebhookSimulator, backend: EmbeddedBackend
) -> None:
    d = sim.okta_deliveries(5, per_delivery=5)[0]
    resp = run(app, v2_event(d))
    assert resp["statusCode"] == 204 and resp["headers"]["x-lip-accepted"] == "5"
    tampered = sim.tampered(d)
    resp = run(app, v2_event(tampered))
    assert resp["statusCode"] == 401 and "Authorization" in orjson.loads(resp["body"])["error"]
    assert backend.buffer.depth("okta_hooks").messages == 1


def test_okta_verification_through_api_gateway(app: Starlette, secrets) -> None:
    req = fixture("okta/event_hook_verification_request.json")
    secrets.values["okta-hooks/shared-secret"] = req["headers"]["Authorization"]
    d = Delivery("okta_hooks", "GET", req["headers"])
    resp = run(app, v1_event(d, b64=False))
    assert resp["statusCode"] == 200
    assert orjson.loads(resp["body"]) == {
        "verification": req["headers"]["X-Okta-Verification-Challenge"]
    }


def test_events_that_are_not_api_gateway_requests_are_refused(app: Starlette) -> None:
    assert run(app, {"Records": []})["statusCode"] == 400
    bad = {"httpMethod": "POST", "path": "/webhooks/github", "body": "%%", "isBase64Encoded": True}
    assert run(app, bad)["statusCode"] == 400


def test_scope_keeps_bytes_and_repeated_headers() -> None:
    d = Delivery("jamf", "POST", {"X-A": "1"}, b"\x00\xff")
    event = v1_event(d, b64=True)
    event["multiValueHeaders"]["X-A"] = ["1", "2"]
    scope, body = to_asgi(event)
    assert body == b"\x00\xff" and scope["path"] == "/webhooks/jamf"
    assert [v for k, v in scope["headers"] if k == b"x-a"] == [b"1", b"2"]


def test_a_header_beyond_latin_1_is_taken_as_uvicorn_takes_it(
    app: Starlette, sim: WebhookSimulator
) -> None:
    """A vendor's User-Agent (or any header) with a euro sign: uvicorn passes the raw
    bytes on, so the Lambda path must not refuse the delivery for it."""
    d = sim.jamf_deliveries(1)[0]
    event = v2_event(d, stage="$default")
    event["headers"]["user-agent"] = "Jamf Pro Webhooks (€ edition)"
    assert run(app, event)["statusCode"] == 204


def test_the_lambda_entry_point_refuses_to_keep_events_in_the_containers_tmp(
    lip_home: Path, sim: WebhookSimulator, monkeypatch
) -> None:
    """Deployed without ``LIP_BACKEND=aws`` (the image sets ``LIP_HOME=/tmp/lip``,
    which Lambda lets it write), the receiver would buffer what it accepts in SQLite in
    the container's /tmp: answered 2xx, gone with the container, never drained. It
    refuses instead, naming the settings, so API Gateway answers 5xx and the vendor
    retries; nothing is written, on the cold start or after."""
    from lip_dagster.errors import ConfigError
    from lip_dagster.state.local_secrets import secret_env_var

    for name, value in sim.credentials().items():
        monkeypatch.setenv(secret_env_var(name), value)
    monkeypatch.delenv("LIP_BACKEND", raising=False)
    monkeypatch.setattr(lambda_handler, "_app", None)
    monkeypatch.setattr(lambda_handler, "_loop", None)
    d = sim.okta_deliveries(2, per_delivery=2)[0]
    for _ in range(2):  # the cold start, then the same container's next request
        with pytest.raises(ConfigError) as refused:
            lambda_handler.handler(_gateway_event("http_api_proxy_event_v2.json", d), None)
        message = str(refused.value)
        assert "LIP_BACKEND=aws" in message and "LIP_AWS_REGION" in message
        assert "container" in message and str(lip_home) in message
    assert list(lip_home.iterdir()) == []  # no state.db holding the events


def _gateway_event(name: str, d: Delivery) -> dict:
    """``name``'s event carrying ``d``: its path, route and stage as API Gateway sets
    them, the vendor's headers and body."""
    event = fixture(f"apigateway/{name}")
    body = base64.b64encode(d.body).decode()
    if event.get("version") == "2.0":
        event["headers"].update({k.lower(): v for k, v in d.headers.items()})
        event["headers"]["content-length"] = str(len(d.body))
        event["routeKey"] = event["requestContext"]["routeKey"] = f"{d.method} /webhooks/{{source}}"
        event["requestContext"]["http"]["method"] = d.method
    else:
        event["headers"].update(d.headers)
        event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
        event["httpMethod"] = event["requestContext"]["httpMethod"] = d.method
    event.update(body=body, isBase64Encoded=True)
    return event


def test_a_rest_api_behind_a_custom_domain_base_path_takes_the_delivery(
    app: Starlette, sim: WebhookSimulator, backend: EmbeddedBackend
) -> None:
    """A REST API on ``https://hooks.example.com/lip`` (a base path mapping, as in
    front of AWS WAF): API Gateway puts the base path in ``path``
    (``/lip/webhooks/github``). Taken as it is, every delivery was a 404, which
    GitHub does not retry."""
    d = sim.github_deliveries(1)[0]
    event = _gateway_event("rest_api_custom_domain_event.json", d)
    assert event["path"] == "/lip/webhooks/github"
    resp = run(app, event)
    assert resp["statusCode"] == 204, resp
    assert backend.buffer.depth("github").messages == 1


def test_an_http_api_stage_named_like_the_route_on_a_custom_domain_is_not_cut(
    app: Starlette, sim: WebhookSimulator, backend: EmbeddedBackend
) -> None:
    """Through a custom domain, an HTTP API's ``rawPath`` holds neither the API
    mapping nor the stage: a stage named ``webhooks`` must not turn
    ``/webhooks/okta_hooks`` into ``/okta_hooks``, a 404 Okta never retries."""
    d = sim.okta_deliveries(3, per_delivery=3)[0]
    event = _gateway_event("http_api_custom_domain_event_v2.json", d)
    assert event["rawPath"] == "/webhooks/okta_hooks"
    assert event["requestContext"]["stage"] == "webhooks"
    resp = run(app, event)
    assert resp["statusCode"] == 204 and resp["headers"]["x-lip-accepted"] == "3", resp
    # the same stage through the execute-api address keeps its segment in rawPath
    d = sim.okta_deliveries(2, per_delivery=2)[0]
    assert run(app, v2_event(d, stage="webhooks"))["statusCode"] == 204
    assert backend.buffer.depth("okta_hooks").messages == 2
