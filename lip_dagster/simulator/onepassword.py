"""1Password Events API (VENDORS.md §3): ``POST /api/v1/{auditevents,itemusages,
signinattempts}`` and ``GET /api/v2/auth/introspect``.

The cursor is a persistent checkpoint into persistence order: polling it after
``has_more: false`` returns whatever arrived since. ``has_more`` is true whenever a page
is full, so when the data ends exactly on a page boundary the client gets
``has_more: true`` followed by an empty page, which the spec explicitly allows and
adapters must treat as normal.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lip_dagster.simulator.common import Vendor, bad_gateway, bearer, json_response
from lip_dagster.simulator.faults import Decision
from lip_dagster.simulator.generators import NS, VENDORS
from lip_dagster.simulator.store import now_ns, parse_rfc3339

MEDIA = "application/json; charset=utf-8"
RETENTION_NS = 120 * 86_400 * NS
HOUR_NS = 3600 * NS
FEATURES = list(VENDORS["onepassword"])


def op_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"Error": {"Message": message}}, status, headers, MEDIA)


class OnePassword(Vendor):
    name = "onepassword"

    def routes(self) -> list[Route]:
        routes = [
            Route(f"/onepassword/api/v1/{ep}", self._handler(ep), methods=["POST"])
            for ep in FEATURES
        ]
        routes.append(
            Route("/onepassword/api/v2/auth/introspect", self.introspect, methods=["GET"])
        )
        return routes

    def fault_response(self, request: Request, decision: Decision) -> Response:
        status = decision.status or 500
        if status == 429:
            return op_error(429, "Too Many Requests", {"Retry-After": "1"})
        if status == 502:
            return bad_gateway()
        message = {
            400: "Bad Request",
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not Found",
            503: "Service Unavailable",
        }.get(status, "Internal Server Error")
        return op_error(status, message)

    def _authorized(self, request: Request) -> bool:
        return bearer(request) == self.ctx.creds.onepassword_token

    async def introspect(self, request: Request) -> Response:
        if not self._authorized(request):
            return op_error(401, "Unauthorized")
        return json_response(
            {
                "uuid": self.ctx.creds.onepassword_token_uuid,
                "issued_at": "2024-01-01T00:00:00Z",
                "features": FEATURES,
            },
            200,
            None,
            MEDIA,
        )

    def _handler(self, endpoint: str) -> Any:
        async def handle(request: Request) -> Response:
            return await self.events(request, endpoint)

        handle.__name__ = f"onepassword_{endpoint}"
        return handle

    async def events(self, request: Request, endpoint: str) -> Response:
        if not self._authorized(request):
            return op_error(401, "Unauthorized")
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            return op_error(400, "Invalid request body: malformed JSON")
        if not isinstance(body, dict):
            return op_error(400, "Invalid request body: expected a JSON object")

        now = now_ns()
        codec = self.ctx.codec
        if "cursor" in body:
            token = body["cursor"]
            cursor = codec.decode("op", token) if isinstance(token, str) else None
            if cursor is None or cursor[0] != endpoint:
                return op_error(400, "Invalid cursor")
            _, pos, lo, hi, limit = cursor
            pos, lo, limit = int(pos), int(lo), int(limit)
        else:
            limit = body.get("limit", 100)
            if (
                isinstance(limit, bool)
                or not isinstance(limit, (int, float))
                or not (1 <= limit <= 1000)
                or int(limit) != limit
            ):
                return op_error(400, "Invalid limit: must be an integer from 1 to 1000")
            limit = int(limit)
            try:
                hi = self._time(body, "end_time")
                lo = self._time(body, "start_time")
            except ValueError as err:
                return op_error(400, str(err))
            if lo is None:
                lo = (hi if hi is not None else now) - HOUR_NS
            if hi is not None and hi <= lo:
                return op_error(400, "Invalid time range: end_time must be after start_time")
            pos = 0
        lo = max(lo, now - RETENTION_NS)

        state = self.ctx.state
        stream = state.advance("onepassword", endpoint)
        with state.lock:
            times = stream.times
            if hi is None:

                def pred(s: int) -> bool:
                    return times[s] >= lo
            else:
                upper = int(hi)

                def pred(s: int) -> bool:
                    return lo <= times[s] < upper

            seqs, pos = stream.page_persisted(pos, limit, pred)
            page = stream.page_json(seqs)
        next_cursor = codec.encode("op", endpoint, pos, lo, hi, limit)
        has_more = len(seqs) == limit
        body_bytes = (
            b'{"cursor":'
            + orjson.dumps(next_cursor)
            + b',"has_more":'
            + (b"true" if has_more else b"false")
            + b',"items":'
            + page
            + b"}"
        )
        return json_response(body_bytes, 200, None, MEDIA)

    @staticmethod
    def _time(body: dict[str, Any], name: str) -> int | None:
        value = body.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"Invalid {name}: must be an RFC 3339 string")
        try:
            return parse_rfc3339(value)
        except ValueError:
            raise ValueError(f"Invalid {name}: must be an RFC 3339 timestamp") from None
