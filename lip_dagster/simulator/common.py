"""Pieces every vendor module shares: the context handed to handlers, JSON responses,
form and bearer parsing, and the base class that turns fault decisions into responses.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lip_dagster.simulator.auth import Credentials, JtiCache, TokenStore
from lip_dagster.simulator.config import SimConfig
from lip_dagster.simulator.faults import Decision
from lip_dagster.simulator.store import CursorCodec, SimState

_ALNUM = string.ascii_letters + string.digits

BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)


@dataclass
class SimContext:
    """State the HTTP handlers need; built once the server's base URL is known."""

    config: SimConfig
    state: SimState
    codec: CursorCodec
    creds: Credentials
    base_url: str
    okta_tokens: TokenStore
    google_tokens: TokenStore
    jti: JtiCache


def rand_id(n: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def json_response(
    body: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
    media_type: str = "application/json",
) -> Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(content, status_code=status, headers=headers, media_type=media_type)


def bad_gateway() -> Response:
    """Gateways in front of every vendor answer 502 in HTML, not in the API's JSON;
    adapters must not assume an error body parses."""
    return Response(BAD_GATEWAY_HTML, status_code=502, media_type="text/html")


def bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def read_form(request: Request) -> dict[str, str] | None:
    """URL-encoded form fields (first value each), or None if the body is not a form:
    token endpoints only speak ``application/x-www-form-urlencoded``."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("application/x-www-form-urlencoded"):
        return None
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def origin(request: Request) -> str:
    """Scheme and host the client used, so links and audiences match what it called."""
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    return f"{request.url.scheme}://{host}"


class Vendor:
    """One vendor's routes and error dialect."""

    name = ""

    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def fault_response(self, request: Request, decision: Decision) -> Response:
        """The vendor-shaped answer for an injected or scripted status."""
        raise NotImplementedError
