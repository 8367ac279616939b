"""The webhook receiver: one ASGI app, served by uvicorn or behind API Gateway.

    POST /webhooks/<source>   a delivery          GET /webhooks/<source>  Okta's verification
    GET  /healthz             liveness

Per request, cheapest refusal first, and nothing stored unless every check passed:

=====  ===================================================================
404    ``<source>`` is not a declared webhook source (the name is looked up,
       never used to build a path, key or queue name)
405    a ``GET`` to a source whose vendor has no verification call
413    ``Content-Length`` (or the bytes actually sent) above ``max_body_bytes``
415    a content type the vendor does not send (Jamf set to XML, say)
401    authentication failed; checked before the body is read when the proof
       is a header, right after reading it when the proof is a signature
       over the body; always before the body is parsed
400    empty, not UTF-8, not JSON, nested too deep, or no events in it
503    the buffer could not take it, or the source's secret could not be read:
       nothing stored; a vendor that retries (Okta, once) sends it again
2xx    204 with ``X-Lip-Accepted`` / ``X-Lip-Duplicates``: every new event
       is in the buffer (durably) and marked accepted; duplicates are
       acknowledged and not buffered again
=====  ===================================================================

The answer comes as soon as the group commit it joined is durable (one fsync on the
embedded backend: milliseconds, tens at p99 under load), well inside Okta's
3-second timeout. Rejections are logged with the source, status and reason: never
a header value or a body.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from lip_dagster.lake.identity_keys import dedupe_keys
from lip_dagster.state.base import Buffer, DedupeKey, DedupeStore, KeyResolution, SecretStore
from lip_dagster.webhook.errors import WebhookRejected
from lip_dagster.webhook.intake import Intake, Outcome
from lip_dagster.webhook.spec import WebhookSourceSpec, load_specs
from lip_dagster.webhook.vendors import MAX_BODY_DEPTH, Extractor, build_extractor
from lip_dagster.webhook.verifiers import Verifier, build_verifier

if TYPE_CHECKING:
    from lip_dagster.resources import Backend

__all__ = ["ReceiverApp", "SourceRoute", "WebhookReceiver", "app_for_backend", "create_app"]

log = logging.getLogger(__name__)

_JSON_HEADERS = [(b"content-type", b"application/json")]
_COUNTS = [str(n).encode() for n in range(101)]


def _count(n: int) -> bytes:
    return _COUNTS[n] if n < len(_COUNTS) else str(n).encode()


class _Disconnected(Exception):
    """The sender hung up before its body arrived: nothing to answer."""


@dataclass(frozen=True)
class SourceRoute:
    """Everything the receiver knows about one declared source."""

    spec: WebhookSourceSpec
    verifier: Verifier
    extractor: Extractor
    key_resolution: KeyResolution

    def keys(self, events: list[dict[str, Any]]) -> list[DedupeKey]:
        """The dedupe key of each event, by the writer's rule for this store."""
        return dedupe_keys(events, self.extractor.identity, self.key_resolution)


def _media_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _answer(
    send: Send,
    status: int,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    out = list(headers or [])
    if body:
        out += [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


async def _reject(send: Send, rejected: WebhookRejected) -> None:
    headers = [(b"retry-after", b"5")] if rejected.status == 503 else None
    await _answer(send, rejected.status, orjson.dumps({"error": rejected.reason}), headers)


async def _read_body(receive: Receive, limit: int) -> bytes:
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        body: bytes = message.get("body", b"")  # the usual case: one message
        if len(body) > limit:
            raise WebhookRejected(413, f"body is larger than {limit} bytes")
        return body
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise WebhookRejected(413, f"body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()


class WebhookReceiver:
    """The ASGI endpoint for ``/webhooks/{source}`` (see module docstring)."""

    def __init__(
        self,
        routes: Mapping[str, SourceRoute],
        intake: Intake,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.routes = dict(routes)
        self.intake = intake
        self.clock = clock

    def __repr__(self) -> str:
        return f"WebhookReceiver(sources={sorted(self.routes)!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        name = scope.get("path_params", {}).get("source")
        if name is None:
            path: str = scope["path"]
            name = path.removeprefix("/webhooks/") if path.startswith("/webhooks/") else None
        route = self.routes.get(name) if name else None
        if route is None:
            await _reject(send, WebhookRejected(404, "no webhook source of that name"))
            return
        await self.handle(route, scope, receive, send)

    async def handle(self, route: SourceRoute, scope: Scope, receive: Receive, send: Send) -> None:
        """One request to ``route``'s source. The hot path of the receiver: every
        accepted delivery runs through it once, so it allocates little and hops to
        no thread (the group commit does that once per group, see ``intake``)."""
        # Header names arrive in lower case (ASGI); lowering again costs little and
        # keeps a hand-built scope honest. Reversed, so the first of repeats wins.
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in reversed(scope["headers"])
        }
        try:
            method = scope["method"]
            if method == "POST":
                status, extra = await self._deliver(route, headers, receive)
            elif method == "GET":
                answer = route.verifier.challenge(headers)
                if answer is None:
                    raise WebhookRejected(405, "this source accepts POST only")
                await _answer(send, 200, orjson.dumps(answer))
                return
            else:
                raise WebhookRejected(405, "this source accepts POST only")
        except WebhookRejected as rejected:
            level = logging.WARNING if rejected.status >= 500 else logging.INFO
            log.log(level, "webhook %s: %d %s", route.spec.name, rejected.status, rejected.reason)
            await _reject(send, rejected)
            return
        except _Disconnected:
            return
        await send({"type": "http.response.start", "status": status, "headers": extra})
        await send({"type": "http.response.body", "body": b""})

    async def _deliver(
        self, route: SourceRoute, headers: dict[str, str], receive: Receive
    ) -> tuple[int, list[tuple[bytes, bytes]]]:
        spec, verifier, extractor = route.spec, route.verifier, route.extractor
        limit = spec.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()):
                raise WebhookRejected(400, "Content-Length is not a number")
            if int(declared) > limit:
                raise WebhookRejected(413, f"body is larger than {limit} bytes")
        media = _media_type(headers)
        if media not in extractor.content_types:
            raise WebhookRejected(
                415,
                f"content type {media or '(none)'!r} is not accepted; send "
                + " or ".join(extractor.content_types),
            )
        if not verifier.reads_body:
            verifier.verify(headers, b"")
        body = await _read_body(receive, limit)
        if verifier.reads_body:
            verifier.verify(headers, body)
        try:
            outcome = await self._submit(route, headers, body, media)
        except BaseException:
            # refused (or failed) after it authenticated: the sender may send the very
            # same request again, and at worst its events are found to be duplicates
            verifier.release(headers)
            raise
        return 204, [
            (b"x-lip-accepted", _count(outcome.accepted)),
            (b"x-lip-duplicates", _count(outcome.duplicates)),
        ]

    async def _submit(
        self, route: SourceRoute, headers: dict[str, str], body: bytes, media: str
    ) -> Outcome:
        arrival = self.clock()
        # Parsed JSON holds no reference cycles, yet building it trips the cyclic
        # collector many times over for a large delivery (a third of the parse time
        # for 100 events): collect once afterwards instead.
        paused = gc.isenabled()
        gc.disable()
        try:
            try:
                events = route.extractor.extract(body, media, headers)
                keys = route.keys(events)
            finally:
                if paused:
                    gc.enable()
            return await self.intake.submit(route.spec.name, events, keys, arrival)
        except orjson.JSONEncodeError:
            # orjson reads 1,024 levels of nesting and writes 254: a body in between
            # parses, then cannot be hashed into an id or packed into a message.
            # Found where it is written (no extra pass over every body): a 400, and
            # nothing stored, as for a body too deep to read
            raise WebhookRejected(
                400,
                f"body is nested deeper than {MAX_BODY_DEPTH} levels of arrays and objects, "
                "more than can be stored",
            ) from None


class ReceiverApp(Starlette):
    """The receiver's Starlette app, with one shortcut: a request to a declared
    source's ``/webhooks/<source>`` goes straight to the receiver, past Starlette's
    middleware stack and router (a third of the per-request cost of a one-event
    delivery). Everything else, a path with a root path, a trailing slash or an
    unknown source included, takes Starlette's usual way."""

    def __init__(self, receiver: WebhookReceiver, **starlette: Any) -> None:
        super().__init__(**starlette)
        self.receiver = receiver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            path: str = scope["path"]
            if path.startswith("/webhooks/"):
                route = self.receiver.routes.get(path[10:])
                if route is not None:
                    await self.receiver.handle(route, scope, receive, send)
                    return
        await super().__call__(scope, receive, send)


def _healthz(intake: Intake) -> Callable[[Request], Awaitable[Response]]:
    """``/healthz`` fails once the receiver has stopped accepting (its buffer could
    not be flushed to disk), so the platform replaces it instead of routing to it."""

    async def healthz(request: Request) -> Response:
        if intake.failed is not None:
            return Response(
                b'{"status":"failing","reason":"the buffer could not be flushed to disk"}',
                status_code=503,
                media_type="application/json",
            )
        return Response(b'{"status":"ok"}', media_type="application/json")

    return healthz


def build_routes(
    specs: Mapping[str, WebhookSourceSpec], secrets: SecretStore, key_resolution: KeyResolution
) -> dict[str, SourceRoute]:
    """``key_resolution``: the dedupe store's, so the receiver's keys are the writer's."""
    return {
        name: SourceRoute(
            spec, build_verifier(spec.auth, secrets), build_extractor(spec), key_resolution
        )
        for name, spec in specs.items()
    }


def create_app(
    specs: Mapping[str, WebhookSourceSpec],
    *,
    buffer: Buffer,
    dedupe: DedupeStore,
    secrets: SecretStore,
    clock: Callable[[], float] = time.time,
    mark_delay: float = 0.1,
) -> Starlette:
    """The Starlette app serving ``specs`` with these stores (normally a ``Backend``'s
    ``.buffer``, ``.dedupe`` and ``.secrets``). ``mark_delay``: how long accepted ids
    are collected before they are marked in the dedupe store (see ``intake``)."""
    intake = Intake(buffer, dedupe, mark_delay=mark_delay)
    receiver = WebhookReceiver(
        build_routes(specs, secrets, dedupe.key_resolution), intake, clock=clock
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await intake.flush_marks()
            intake.close()

    app = ReceiverApp(
        receiver,
        routes=[
            Route("/healthz", _healthz(intake), methods=["GET"]),
            Route("/webhooks/{source}", receiver, methods=["GET", "POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.receiver = receiver
    return app


def app_for_backend(
    backend: Backend,
    specs: Mapping[str, WebhookSourceSpec] | None = None,
    *,
    mark_delay: float = 0.1,
) -> Starlette:
    """The receiver for every declared webhook source (or ``specs``) on ``backend``."""
    return create_app(
        load_specs() if specs is None else specs,
        buffer=backend.buffer,
        dedupe=backend.dedupe,
        secrets=backend.secrets,
        mark_delay=mark_delay,
    )
