"""The receiver behind API Gateway on AWS Lambda: ``lip_dagster.webhook.lambda_handler.handler``.

API Gateway REST APIs (payload format 1.0) and HTTP APIs (2.0) both hand Lambda
one JSON event per request; this module turns it into an ASGI request for the same
Starlette app ``lip webhook serve`` runs, and the app's answer into the response
API Gateway expects. About eighty lines of translation do not justify a
dependency, so there is none (no Mangum).

- Bodies arrive base64-encoded when ``isBase64Encoded`` is true (binary media
  types, and always on HTTP APIs for non-text bodies); they are decoded before the
  app sees them, so signatures are checked over the bytes the vendor sent.
- What API Gateway puts in front of the route is removed: the app's routes start at
  ``/webhooks``. The route that matched (``resource`` of a REST API, ``routeKey`` of an
  HTTP API) filled in with ``pathParameters`` is the path the app sees whenever the
  event's path ends with it: that cuts a stage (``/prod/webhooks/github`` on an HTTP
  API with a named stage) and a custom domain's base path mapping (``/lip/webhooks/
  github`` in a REST API's ``path``), and nothing of a path that holds neither (an
  HTTP API on a custom domain, whose ``rawPath`` has no stage even when the stage is
  named ``webhooks``). Without a usable route (``$default``) only an HTTP API's named
  stage is cut; a REST API's ``path`` never holds the stage.
- The app, its backend (``LIP_BACKEND=aws`` and the other settings) and an event
  loop are built on the first invocation and reused while the container lives.
- A backend that does not outlive the machine (the embedded one, SQLite under
  ``LIP_HOME``, which the image puts in /tmp) is refused with a ``ConfigError`` before
  anything is written: events answered 2xx would go with the container, where no
  drain reads them. Each invocation fails until the function's settings are fixed, so
  API Gateway answers 5xx and vendors retry; nothing is accepted meanwhile. Failing
  at import instead would change nothing a vendor sees (Lambda runs a failed init
  again on every request) and would make the module need a deployment to import.
- A container serves one request at a time, so there is no group to coalesce the
  receiver's ``accepted`` marks over: they are written before the handler returns
  (a frozen container would otherwise hold them until its next request), for at
  most ``MARK_WAIT_SECONDS``: a throttled dedupe table leaves them to the next
  request rather than keep the vendor waiting for what is already buffered.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.types import ASGIApp, Message

from lip_dagster.errors import ConfigError

if TYPE_CHECKING:
    from lip_dagster.webhook.intake import Intake

__all__ = ["handler", "invoke", "to_asgi"]

log = logging.getLogger(__name__)

MARK_WAIT_SECONDS = 1.0
"""How long an answer waits for its ids' dedupe marks: a throttled table must not keep
a vendor (Okta: 3 s) past its timeout for what is already buffered."""

_app: ASGIApp | None = None
_loop: asyncio.AbstractEventLoop | None = None


def _headers_v1(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    multi = event.get("multiValueHeaders") or {}
    if multi:
        return [(k, v) for k, values in multi.items() for v in (values or [])]
    return list((event.get("headers") or {}).items())


def _query_v1(event: Mapping[str, Any]) -> bytes:
    multi = event.get("multiValueQueryStringParameters") or {}
    if multi:
        return urlencode([(k, v) for k, vs in multi.items() for v in vs]).encode()
    return urlencode(list((event.get("queryStringParameters") or {}).items())).encode()


def _route_path(template: str, params: Any) -> str | None:
    """The path the route ``template`` (``/webhooks/{source}``, ``/{proxy+}``) matched,
    its parameters filled in from the event's ``pathParameters``; None without a
    template or a parameter. API Gateway adds the stage or a custom domain's base path
    in front of it, never inside."""
    if not template.startswith("/"):
        return None
    segments: list[str] = []
    for segment in template.split("/"):
        if segment.startswith("{") and segment.endswith("}"):
            value = (params or {}).get(segment[1:-1].removesuffix("+"))
            if not isinstance(value, str) or not value:
                return None
            segment = value
        segments.append(segment)
    return "/".join(segments)


def to_asgi(event: Mapping[str, Any]) -> tuple[dict[str, Any], bytes]:
    """The ASGI HTTP scope and the request body of an API Gateway event (1.0 or
    2.0). Raises ``ValueError`` for an event that is neither."""
    ctx = event.get("requestContext") or {}
    if event.get("version") == "2.0":
        method = ctx.get("http", {}).get("method")
        path = event.get("rawPath") or ctx.get("http", {}).get("path") or "/"
        query = (event.get("rawQueryString") or "").encode()
        headers = list((event.get("headers") or {}).items())
        if event.get("cookies"):
            headers.append(("cookie", "; ".join(event["cookies"])))
        client = ctx.get("http", {}).get("sourceIp")
    else:
        method = event.get("httpMethod")
        path = event.get("path") or "/"
        query = _query_v1(event)
        headers = _headers_v1(event)
        client = (ctx.get("identity") or {}).get("sourceIp")
    if not method:
        raise ValueError("not an API Gateway proxy event (no HTTP method)")
    v2 = event.get("version") == "2.0"
    route_key = str(event.get("routeKey") or "")
    template = route_key.partition(" ")[2] if v2 else str(event.get("resource") or "")
    matched = _route_path(template, event.get("pathParameters"))
    stage = ctx.get("stage")
    if matched is not None and path.endswith(matched):
        path = matched
    elif v2 and stage and stage != "$default" and path.startswith(f"/{stage}/"):
        # Only an HTTP API's rawPath holds a named stage; a REST API's ``path`` never
        # does (its requestContext.path does), so cutting it there would cut a stage
        # named like the route ("webhooks") off the route itself.
        path = path[len(stage) + 1 :]
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("isBase64Encoded is set but the body is not base64") from None
    else:
        body = raw.encode("utf-8")
    host = next((v for k, v in headers if k.lower() == "host"), "lambda")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": str(method).upper(),
        "scheme": "https",
        "path": path,
        "raw_path": path.encode("utf-8"),
        "query_string": query,
        "root_path": "",
        # API Gateway hands over header values as text; their bytes on the wire were
        # UTF-8 (a Latin-1 encode fails on anything beyond it, a 400 uvicorn never gives)
        "headers": [(k.lower().encode("utf-8"), str(v).encode("utf-8")) for k, v in headers],
        "client": (client, 0) if client else None,
        "server": (host, 443),
    }
    return scope, body


async def invoke(app: ASGIApp, event: Mapping[str, Any]) -> dict[str, Any]:
    """Run one API Gateway event through ``app``; the Lambda proxy response."""
    v2 = event.get("version") == "2.0"
    try:
        scope, body = to_asgi(event)
    except ValueError as err:
        return {"statusCode": 400, "headers": {}, "body": str(err), "isBase64Encoded": False}
    sent = False
    status = 500
    out_headers: list[tuple[str, str]] = []
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            out_headers.extend(
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])
            )
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    data = b"".join(chunks)
    try:
        text, encoded = data.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(data).decode("ascii"), True
    response: dict[str, Any] = {"statusCode": status, "body": text, "isBase64Encoded": encoded}
    if v2:
        response["headers"] = {k: v for k, v in out_headers}
    else:
        multi: dict[str, list[str]] = {}
        for k, v in out_headers:
            multi.setdefault(k, []).append(v)
        response["multiValueHeaders"] = multi
    return response


async def _marks_within(intake: Intake, seconds: float) -> bool:
    """Whether every buffered id was marked within ``seconds``; on False the marking
    goes on, on this loop, whenever it runs again."""
    try:
        await asyncio.wait_for(asyncio.shield(intake.flush_marks()), seconds)
    except TimeoutError:
        return False
    return True


def _app_from_env() -> ASGIApp:
    """The receiver on the backend the environment chooses, if that backend keeps
    what it accepts beyond this container."""
    from lip_dagster.resources import backend_from_env
    from lip_dagster.webhook.receiver import app_for_backend

    backend = backend_from_env()
    if not backend.outlives_machine:
        raise ConfigError(
            f"the webhook receiver on Lambda needs LIP_BACKEND=aws (got "
            f"{backend.settings.backend!r}, the default when unset), with LIP_AWS_REGION "
            "(or AWS_DEFAULT_REGION), and LIP_AWS_RESOURCE_PREFIX and LIP_SECRETS_PREFIX "
            "if the deployment's queues, tables and secrets do not use the defaults. "
            f"The {backend.settings.backend} backend would keep accepted events on the "
            f"container's own disk (SQLite under LIP_HOME={backend.settings.home}): "
            "Lambda discards it with the container and no drain run reads it, so "
            "every request is refused (5xx, vendors retry) until the function's "
            "environment sets the AWS backend"
        )
    return app_for_backend(backend, mark_delay=0.0)


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point."""
    global _app, _loop
    if _app is None:
        _app = _app_from_env()
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    response = _loop.run_until_complete(invoke(_app, event))
    receiver = getattr(getattr(_app, "state", None), "receiver", None)
    if receiver is not None:
        if not _loop.run_until_complete(_marks_within(receiver.intake, MARK_WAIT_SECONDS)):
            # the events are buffered; marks only recognise redeliveries. Left to
            # finish on this container's next request (its loop runs them then)
            log.warning(
                "dedupe marks not written within %.1f s (a slow dedupe table); "
                "answering now, they finish on the next request",
                MARK_WAIT_SECONDS,
            )
    return response
