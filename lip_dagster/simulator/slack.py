"""Slack Audit Logs API (VENDORS.md §2): ``GET /audit/v1/logs``.

Entries come newest first; ``oldest``/``latest`` are inclusive Unix seconds; the cursor
pins the window of the first page (``latest`` defaults to that request's "now"), so a
multi-page read is a consistent snapshot while newer entries wait for the next query.
``response_metadata.next_cursor`` is the empty string on the last page. Throttling is 429
with ``Retry-After`` in seconds and no remaining-count header.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lip_dagster.simulator.common import Vendor, bad_gateway, bearer, json_response
from lip_dagster.simulator.faults import Decision
from lip_dagster.simulator.generators import NS
from lip_dagster.simulator.store import now_ns

MEDIA = "application/json; charset=utf-8"
MAX_LIMIT = 9999


def slack_error(status: int, error: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"ok": False, "error": error}, status, headers, MEDIA)


class Slack(Vendor):
    name = "slack"

    def routes(self) -> list[Route]:
        return [Route("/slack/audit/v1/logs", self.logs, methods=["GET"])]

    def fault_response(self, request: Request, decision: Decision) -> Response:
        status = decision.status or 500
        if status == 429:
            return slack_error(429, "ratelimited", {"Retry-After": "1"})
        if status == 502:
            return bad_gateway()
        error = {
            400: "invalid_arguments",
            401: "invalid_auth",
            403: "missing_scope",
            404: "unknown_method",
            503: "service_unavailable",
        }.get(status, "fatal_error")
        return slack_error(status, error)

    async def logs(self, request: Request) -> Response:
        token = bearer(request)
        if token is None:
            return slack_error(401, "not_authed")
        if token != self.ctx.creds.slack_token:
            return slack_error(401, "invalid_auth")
        params = request.query_params
        try:
            limit = int(params.get("limit", "100"))
            oldest = int(params["oldest"]) if params.get("oldest") else None
            latest = int(params["latest"]) if params.get("latest") else None
        except ValueError:
            return slack_error(400, "invalid_arguments")
        if not 1 <= limit <= MAX_LIMIT:
            # Slack documents 9999 as the maximum; refusing more keeps adapters inside
            # the contract instead of relying on silent clamping
            return slack_error(400, "invalid_arguments")

        state = self.ctx.state
        stream = state.advance("slack", "logs")
        cursor_raw = params.get("cursor")
        if cursor_raw:
            cursor = self.ctx.codec.decode("slack", cursor_raw)
            if cursor is None:
                return slack_error(400, "invalid_cursor")
            lo, hi, last_t, last_seq = (int(x) for x in cursor)
            before: tuple[int, int] | None = (last_t, last_seq)
        else:
            lo = oldest * NS if oldest is not None else 0
            hi = (latest + 1) * NS if latest is not None else (now_ns() // NS + 1) * NS
            before = None
        if hi <= lo:
            return slack_error(400, "invalid_range")

        checks: list[Callable[[dict], bool]] = []
        if params.get("action"):
            actions = set(params["action"].split(","))
            checks.append(lambda ev: ev["action"] in actions)
        if params.get("actor"):
            actor = params["actor"]
            checks.append(lambda ev: ev["actor"].get("user", {}).get("id") == actor)
        if params.get("entity"):
            entity = params["entity"]
            checks.append(
                lambda ev: any(
                    isinstance(v, dict) and v.get("id") == entity for v in ev["entity"].values()
                )
            )
        with state.lock:

            def pred(s: int) -> bool:
                ev = stream.event(s)
                return all(c(ev) for c in checks)

            seqs, more = stream.page_desc(lo, hi, before, limit, pred if checks else None)
            page = stream.page_json(seqs)
            next_cursor = ""
            if more and seqs:
                tail = seqs[-1]
                next_cursor = self.ctx.codec.encode("slack", lo, hi, stream.times[tail], tail)
        body = (
            b'{"entries":'
            + page
            + b',"response_metadata":'
            + orjson.dumps({"next_cursor": next_cursor})
            + b"}"
        )
        return json_response(body, 200, None, MEDIA)
