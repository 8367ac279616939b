"""Google Workspace Admin SDK Reports API, ``activities.list``, and the OAuth token
endpoint for service accounts (VENDORS.md §4).

Items come newest first within ``[startTime, endTime)`` (``endTime`` defaults to the first
page's "now" and is pinned in the page token, ``startTime`` to 180 days back).
``nextPageToken`` is absent on the last page and ``items`` is absent when there are none,
as Google does. ``id.uniqueQualifier`` is an int64 sent as a JSON string, often negative.
Overload is answered with 503, Google's documented rate-limit status.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lip_dagster.simulator.auth import (
    GOOGLE_SCOPE,
    JWT_BEARER_GRANT,
    AssertionRejected,
    new_google_access_token,
    verify_google_assertion,
)
from lip_dagster.simulator.common import (
    Vendor,
    bad_gateway,
    bearer,
    json_response,
    origin,
    read_form,
)
from lip_dagster.simulator.faults import Decision
from lip_dagster.simulator.generators import NS, ORG_DOMAIN, VENDORS
from lip_dagster.simulator.store import now_ns, parse_rfc3339

MEDIA = "application/json; charset=UTF-8"
MAX_AGE_NS = 180 * 86_400 * NS
APPLICATIONS = VENDORS["google_workspace"]
LIST_PATH = "/google/admin/reports/v1/activity/users/{user_key}/applications/{application}"

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_REASONS = {
    400: "invalid",
    401: "authError",
    403: "forbidden",
    404: "notFound",
    429: "rateLimitExceeded",
    500: "backendError",
    503: "backendError",
}


def google_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    err: dict[str, Any] = {
        "code": status,
        "message": message,
        "errors": [
            {"message": message, "domain": "global", "reason": _REASONS.get(status, "backendError")}
        ],
        "status": _STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if status == 401:
        err["errors"][0].update({"location": "Authorization", "locationType": "header"})
    return json_response({"error": err}, status, headers, MEDIA)


def oauth_error(error: str, description: str) -> Response:
    return json_response({"error": error, "error_description": description}, 400, None, MEDIA)


class Google(Vendor):
    name = "google_workspace"

    def routes(self) -> list[Route]:
        return [
            Route("/google/token", self.token, methods=["POST"]),
            Route(LIST_PATH, self.activities, methods=["GET"]),
        ]

    def fault_response(self, request: Request, decision: Decision) -> Response:
        status = decision.status or 500
        if decision.throttled or status == 503:
            return google_error(503, "The service is currently unavailable.")
        if status == 429:
            return google_error(
                429,
                "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute "
                "per user' of service 'admin.googleapis.com'.",
            )
        if status == 502:
            return bad_gateway()
        message = {
            400: "Bad Request",
            401: "Request had invalid authentication credentials.",
            403: "Not Authorized to access this resource/api",
            404: "Not Found",
        }.get(status, "Internal error encountered.")
        return google_error(status, message)

    # ------------------------------------------------------------------ token

    async def token(self, request: Request) -> Response:
        form = await read_form(request)
        if form is None:
            return oauth_error("invalid_request", "Request must be form-encoded.")
        grant = form.get("grant_type", "")
        if grant != JWT_BEARER_GRANT:
            return oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant}")
        assertion = form.get("assertion", "")
        if not assertion:
            return oauth_error("invalid_request", "Missing required parameter: assertion")
        creds = self.ctx.creds
        token_uri = f"{self.ctx.base_url}/google/token"
        try:
            claims = verify_google_assertion(
                assertion,
                client_email=creds.google_client_email,
                key_id=creds.google_key_id,
                key=creds.google_key,
                audience=token_uri,
            )
        except AssertionRejected as err:
            # the URL the client actually called is accepted too (localhost vs 127.0.0.1)
            alt = f"{origin(request)}/google/token"
            if alt == token_uri or "audience" not in str(err):
                return oauth_error("invalid_grant", str(err))
            try:
                claims = verify_google_assertion(
                    assertion,
                    client_email=creds.google_client_email,
                    key_id=creds.google_key_id,
                    key=creds.google_key,
                    audience=alt,
                )
            except AssertionRejected as err2:
                return oauth_error("invalid_grant", str(err2))
        sub = str(claims["sub"])
        if sub == creds.google_admin_email:
            admin = True
        elif sub.endswith("@" + ORG_DOMAIN):
            admin = False  # a real user without admin rights: token works, reports 401
        else:
            return oauth_error("invalid_grant", "Invalid email or User ID")
        ttl = self.ctx.config.token_ttl_s
        token = new_google_access_token()
        self.ctx.google_tokens.issue(token, ttl, GOOGLE_SCOPE, sub, admin)
        return json_response(
            {"access_token": token, "expires_in": max(ttl - 1, 0), "token_type": "Bearer"},
            200,
            {
                "Cache-Control": "no-cache, no-store, max-age=0, must-revalidate",
                "Pragma": "no-cache",
            },
            MEDIA,
        )

    # ------------------------------------------------------------------ activities.list

    async def activities(self, request: Request) -> Response:
        token = bearer(request)
        info = self.ctx.google_tokens.check(token) if token else None
        if info is None:
            return google_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
                {
                    "WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", '
                    'error="invalid_token"'
                },
            )
        if not info.admin:
            return google_error(
                401, "Access denied. You are not authorized to read activity records."
            )
        app = request.path_params["application"]
        user_key = request.path_params["user_key"]
        if app not in APPLICATIONS:
            return google_error(
                400,
                f"Invalid value '{app}'. Values must match the "
                "following regular expression: '(admin)|(drive)|"
                "(login)|(token)'",
            )
        params = request.query_params
        try:
            limit = int(params.get("maxResults", "1000"))
        except ValueError:
            return google_error(
                400,
                f"Invalid value '{params.get('maxResults')}'. Values "
                "must be within the range: [1, 1000]",
            )
        if not 1 <= limit <= 1000:
            return google_error(
                400, f"Invalid value '{limit}'. Values must be within the range: [1, 1000]"
            )
        try:
            start = parse_rfc3339(params["startTime"]) if params.get("startTime") else None
            end = parse_rfc3339(params["endTime"]) if params.get("endTime") else None
        except ValueError:
            return google_error(400, "Invalid value for startTime/endTime: must be RFC 3339")

        now = now_ns()
        codec = self.ctx.codec
        page_token = params.get("pageToken")
        before: tuple[int, int] | None = None
        if page_token:
            decoded = codec.decode("google", page_token)
            if decoded is None or decoded[0] != app:
                return google_error(400, "Invalid value for: pageToken")
            _, lo, hi, last_t, last_seq = decoded
            lo, hi = int(lo), int(hi)
            before = (int(last_t), int(last_seq))
        else:
            hi = end if end is not None else now
            lo = start if start is not None else now - MAX_AGE_NS
            if start is not None and end is not None and start > end:
                return google_error(400, "Start time must be less than or equal to the end time.")
        lo = max(lo, now - MAX_AGE_NS)

        checks: list[Callable[[dict], bool]] = []
        if user_key != "all":
            checks.append(
                lambda ev: (
                    ev["actor"].get("email") == user_key or ev["actor"].get("profileId") == user_key
                )
            )
        if params.get("eventName"):
            name = params["eventName"]
            checks.append(lambda ev: any(e["name"] == name for e in ev["events"]))
        if params.get("actorIpAddress"):
            ip = params["actorIpAddress"]
            checks.append(lambda ev: ev.get("ipAddress") == ip)

        state = self.ctx.state
        stream = state.advance("google_workspace", app)
        with state.lock:

            def pred(s: int) -> bool:
                ev = stream.event(s)
                return all(c(ev) for c in checks)

            seqs, more = stream.page_desc(lo, hi, before, limit, pred if checks else None)
            items = stream.page_json(seqs)
            next_token = None
            if more and seqs:
                tail = seqs[-1]
                next_token = codec.encode("google", app, lo, hi, stream.times[tail], tail)
        etag = '"' + hashlib.sha1(items, usedforsecurity=False).hexdigest() + '"'
        out = b'{"kind":"admin#reports#activities","etag":' + orjson.dumps(etag)
        if seqs:
            out += b',"items":' + items
        if next_token is not None:
            out += b',"nextPageToken":' + orjson.dumps(next_token)
        return json_response(out + b"}", 200, None, MEDIA)
