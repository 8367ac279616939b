"""Okta System Log API and org authorization server token endpoint (VENDORS.md §1).

Behaviour reproduced on purpose, because adapters must survive it in production:

* Polling requests (no ``until``, ascending) walk *persistence* order: ``since`` filters
  the hidden persistence time, ``published`` may run backwards by a few seconds, and
  ``Link: rel="next"`` is present on every page, even an empty one.
* Bounded requests (``until`` given, or descending order) are ordered by ``published``,
  filter on it (``since`` inclusive, ``until`` exclusive) and the last page has no
  ``next``.
* ``after`` is opaque and cannot be combined with ``since``; ``since`` more than 180 days
  back is E0000053; data older than 90 days is silently absent.
* Every response carries X-Rate-Limit-Limit/Remaining/Reset from a real per-minute
  bucket; an exhausted bucket answers 429 E0000047.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lip_dagster.simulator.auth import (
    JWT_BEARER_ASSERTION,
    OKTA_SCOPE,
    AssertionRejected,
    new_okta_access_token,
    verify_okta_assertion,
)
from lip_dagster.simulator.common import (
    SimContext,
    Vendor,
    bad_gateway,
    json_response,
    origin,
    rand_id,
    read_form,
)
from lip_dagster.simulator.faults import Decision
from lip_dagster.simulator.generators import NS
from lip_dagster.simulator.scim import FilterError, compile_filter
from lip_dagster.simulator.store import Key, now_ns, parse_rfc3339

DAY_NS = 86_400 * NS
RETENTION_NS = 90 * DAY_NS
MAX_SINCE_NS = 180 * DAY_NS
DEFAULT_WINDOW_NS = 7 * DAY_NS


class RateBucket:
    """Fixed one-minute window, like Okta's per-endpoint buckets: the Reset header is the
    epoch second at which the window refills."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._window_start = 0.0
        self._used = 0

    def _roll(self, now: float) -> None:
        if now >= self._window_start + 60:
            self._window_start = now
            self._used = 0

    def take(self) -> tuple[bool, int, int]:
        """(allowed, remaining, reset epoch seconds)."""
        with self._lock:
            now = time.time()
            self._roll(now)
            reset = math.ceil(self._window_start + 60)
            if self._used >= self.limit:
                return False, 0, reset
            self._used += 1
            return True, self.limit - self._used, reset

    def peek(self) -> tuple[int, int]:
        with self._lock:
            now = time.time()
            self._roll(now)
            return max(self.limit - self._used, 0), math.ceil(self._window_start + 60)


def okta_error(
    status: int, code: str, summary: str, headers: dict[str, str] | None = None
) -> Response:
    body = {
        "errorCode": code,
        "errorSummary": summary,
        "errorLink": code,
        "errorId": "oae" + rand_id(22),
        "errorCauses": [],
    }
    return json_response(body, status, headers)


def oauth_error(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> Response:
    hdrs = {"Cache-Control": "no-store", "Pragma": "no-cache", **(headers or {})}
    return json_response({"error": error, "error_description": description}, status, hdrs)


class OktaError(Exception):
    def __init__(self, code: str, summary: str, status: int = 400) -> None:
        super().__init__(summary)
        self.code, self.summary, self.status = code, summary, status


def _validation(param: str, detail: str) -> OktaError:
    return OktaError("E0000001", f"Api validation failed: '{param}': {detail}")


def _parse_time(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_rfc3339(raw)
    except ValueError:
        raise _validation(
            name,
            "The date format in your query is not recognized. Please enter dates using "
            "ISO8601 string format.",
        ) from None


def _keyword_pred(q: str) -> Callable[[bytes], bool] | None:
    words = q.split()
    if not words:
        return None
    if len(words) > 10:
        raise _validation("q", "Freeform search cannot contain more than 10 items.")
    if any(len(w) > 40 for w in words):
        raise _validation(
            "q",
            "Freeform search cannot contain items longer than 40 characters. Please "
            "shorten the items in your search or use an advanced filter to query by "
            "specific fields.",
        )
    needles = [w.lower().encode() for w in words]
    return lambda blob: all(n in blob.lower() for n in needles)


class Okta(Vendor):
    name = "okta"

    def __init__(self, ctx: SimContext) -> None:
        super().__init__(ctx)
        limit = ctx.config.okta_rate_limit_per_min
        self.logs_bucket = RateBucket(limit)
        self.token_bucket = RateBucket(limit)

    def routes(self) -> list[Route]:
        return [
            Route("/okta/api/v1/logs", self.logs, methods=["GET"]),
            Route("/okta/oauth2/v1/token", self.token, methods=["POST"]),
        ]

    def _bucket(self, request: Request) -> RateBucket:
        return self.token_bucket if request.url.path.endswith("/token") else self.logs_bucket

    @staticmethod
    def _rl_headers(limit: int, remaining: int, reset: int) -> dict[str, str]:
        return {
            "X-Rate-Limit-Limit": str(limit),
            "X-Rate-Limit-Remaining": str(remaining),
            "X-Rate-Limit-Reset": str(reset),
            "X-Okta-Request-Id": rand_id(27),
        }

    def fault_response(self, request: Request, decision: Decision) -> Response:
        bucket = self._bucket(request)
        status = decision.status or 500
        if status == 429:
            # Okta signals when to retry only through Reset; make it about a second away
            headers = self._rl_headers(bucket.limit, 0, math.ceil(time.time() + 1))
            return okta_error(
                429,
                "E0000047",
                "API call exceeded rate limit due to too many requests.",
                headers,
            )
        remaining, reset = bucket.peek()
        headers = self._rl_headers(bucket.limit, remaining, reset)
        if status == 502:
            resp = bad_gateway()
            resp.headers.update(headers)
            return resp
        if request.url.path.endswith("/token") and status in (400, 401):
            return oauth_error(status, "invalid_client", "Client authentication failed.", headers)
        code, summary = {
            400: ("E0000001", "Api validation failed"),
            401: ("E0000011", "Invalid token provided"),
            403: ("E0000006", "You do not have permission to perform the requested action"),
            404: ("E0000007", "Not found: Resource not found"),
            503: ("E0000010", "Service is in read only mode"),
        }.get(status, ("E0000009", "Internal Server Error"))
        return okta_error(status, code, summary, headers)

    # ------------------------------------------------------------------ /api/v1/logs

    def _authorized(self, request: Request) -> bool:
        value = request.headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        token = token.strip()
        if scheme == "SSWS":
            return token == self.ctx.creds.okta_api_token
        if scheme.lower() == "bearer":
            info = self.ctx.okta_tokens.check(token)
            return info is not None and OKTA_SCOPE in info.scope.split()
        return False

    async def logs(self, request: Request) -> Response:
        allowed, remaining, reset = self.logs_bucket.take()
        headers = self._rl_headers(self.logs_bucket.limit, remaining, reset)
        if not allowed:
            return okta_error(
                429,
                "E0000047",
                "API call exceeded rate limit due to too many requests.",
                headers,
            )
        if not self._authorized(request):
            return okta_error(401, "E0000011", "Invalid token provided", headers)
        try:
            return self._list(request, headers)
        except OktaError as err:
            return okta_error(err.status, err.code, err.summary, headers)

    def _list(self, request: Request, headers: dict[str, str]) -> Response:
        params = dict(request.query_params)
        limit_raw = params.get("limit", "100")
        try:
            limit = int(limit_raw)
        except ValueError:
            raise _validation("limit", "must be an integer") from None
        if limit < 0:
            raise _validation("limit", "must be greater than or equal to 0")
        if limit > 1000:
            raise _validation("limit", "must be less than or equal to 1000")
        order = params.get("sortOrder", "ASCENDING").upper()
        if order not in ("ASCENDING", "DESCENDING"):
            raise _validation("sortOrder", "must be one of ASCENDING, DESCENDING")
        after = params.get("after")
        if after is not None and params.get("since"):
            raise _validation("after", "'after' and 'since' cannot be used together")
        filt = params.get("filter", "").strip()
        matcher = None
        if filt:
            try:
                matcher = compile_filter(filt)
            except FilterError as err:
                raise OktaError("E0000053", str(err)) from None
        keyword = _keyword_pred(params.get("q", ""))
        since = _parse_time(params, "since")
        until = _parse_time(params, "until")

        now = now_ns()
        if since is not None and since < now - MAX_SINCE_NS:
            raise OktaError(
                "E0000053",
                "Invalid parameter: The since parameter is over 180 days prior to the current day.",
            )
        state = self.ctx.state
        stream = state.advance("okta", "logs")
        codec = self.ctx.codec
        cutoff = now - RETENTION_NS

        with state.lock:
            times = stream.times
            blobs = stream.blobs
            keys = stream.sorted_keys()
            needs_retention = bool(keys) and keys[0][0] < cutoff

            def pred_for(extra: Callable[[int], bool] | None) -> Callable[[int], bool] | None:
                checks: list[Callable[[int], bool]] = []
                if needs_retention:
                    checks.append(lambda s: times[s] >= cutoff)
                if extra is not None:
                    checks.append(extra)
                if matcher is not None:
                    checks.append(lambda s: matcher(stream.event(s)))
                if keyword is not None:
                    checks.append(lambda s: keyword(blobs[s]))
                if not checks:
                    return None
                return lambda s: all(c(s) for c in checks)

            cursor = codec.decode("okta", after) if after is not None else None
            if after is not None and cursor is None:
                raise _validation("after", "The cursor is invalid or has expired.")
            polling = (
                cursor[0] == "p" if cursor is not None else until is None and order == "ASCENDING"
            )
            next_after: str | None
            if polling:
                if cursor is not None:
                    pos = int(cursor[1])
                    seqs, pos = stream.page_persisted(pos, limit, pred_for(None))
                else:
                    lo = since if since is not None else now - DEFAULT_WINDOW_NS
                    persist = stream.persist
                    seqs, pos = stream.page_persisted(
                        0, limit, pred_for(lambda s: persist[s] >= lo)
                    )
                    if limit == 0:
                        pos = next(
                            (i for i in range(stream.first, len(persist)) if persist[i] >= lo),
                            len(persist),
                        )
                next_after = codec.encode("okta", "p", pos)
            else:
                if cursor is not None:
                    _, lo, hi, desc, last_t, last_seq = cursor
                    last: Key | None = (int(last_t), int(last_seq))
                else:
                    hi = until if until is not None else now
                    lo = since if since is not None else hi - DEFAULT_WINDOW_NS
                    desc = order == "DESCENDING"
                    last = None
                lo = max(int(lo), cutoff)
                pred = pred_for(None)
                if desc:
                    seqs, more = stream.page_desc(lo, int(hi), last, limit, pred)
                else:
                    seqs, more = stream.page_asc(lo, int(hi), last, limit, pred)
                if more and seqs:
                    tail = seqs[-1]
                    next_after = codec.encode(
                        "okta", "b", lo, int(hi), bool(desc), times[tail], tail
                    )
                else:
                    next_after = None
            body = stream.page_json(seqs)

        resp = json_response(body, 200, headers)
        resp.headers.append("link", f'<{request.url}>; rel="self"')
        if next_after is not None:
            keep = [
                (k, v) for k, v in request.query_params.multi_items() if k not in ("since", "after")
            ]
            keep.append(("after", next_after))
            base = f"{origin(request)}{request.url.path}"
            resp.headers.append("link", f'<{base}?{urlencode(keep)}>; rel="next"')
        return resp

    # ------------------------------------------------------------------ /oauth2/v1/token

    async def token(self, request: Request) -> Response:
        allowed, remaining, reset = self.token_bucket.take()
        headers = self._rl_headers(self.token_bucket.limit, remaining, reset)
        if not allowed:
            return okta_error(
                429,
                "E0000047",
                "API call exceeded rate limit due to too many requests.",
                headers,
            )
        form = await read_form(request)
        if form is None:
            return oauth_error(
                400,
                "invalid_request",
                "The request must be form-encoded (application/x-www-form-urlencoded).",
                headers,
            )
        grant = form.get("grant_type")
        if grant != "client_credentials":
            return oauth_error(
                400,
                "unsupported_grant_type",
                f"The authorization grant type is not supported by the authorization "
                f"server. Configured grant types: [client_credentials]. Got: {grant!r}.",
                headers,
            )
        creds = self.ctx.creds
        assertion = form.get("client_assertion", "")
        if form.get("client_assertion_type") != JWT_BEARER_ASSERTION or not assertion:
            return oauth_error(
                401,
                "invalid_client",
                "Client authentication failed. Either the client or the client credentials "
                "are invalid.",
                headers,
            )
        if "client_id" in form and form["client_id"] != creds.okta_client_id:
            return oauth_error(
                401, "invalid_client", "The client_id does not match the client_assertion.", headers
            )
        scopes = form.get("scope", "").split()
        if not scopes:
            return oauth_error(
                400,
                "invalid_scope",
                "The authorization server resource does not have any configured default "
                "scopes, 'scope' must be provided.",
                headers,
            )
        if OKTA_SCOPE not in scopes:
            return oauth_error(
                400,
                "invalid_scope",
                f"The following scopes are not allowed: {' '.join(scopes)}. This client "
                f"is granted {OKTA_SCOPE}.",
                headers,
            )
        path = "/okta/oauth2/v1/token"
        audiences = {f"{self.ctx.base_url}{path}", f"{origin(request)}{path}"}
        try:
            verify_okta_assertion(
                assertion,
                client_id=creds.okta_client_id,
                key=creds.okta_key,
                audiences=audiences,
                jti_cache=self.ctx.jti,
            )
        except AssertionRejected as err:
            return oauth_error(401, "invalid_client", str(err), headers)
        ttl = self.ctx.config.token_ttl_s
        token = new_okta_access_token(self.ctx.base_url, creds.okta_client_id, ttl)
        self.ctx.okta_tokens.issue(token, ttl, OKTA_SCOPE, creds.okta_client_id)
        return json_response(
            {"token_type": "Bearer", "expires_in": ttl, "access_token": token, "scope": OKTA_SCOPE},
            200,
            {"Cache-Control": "no-store", "Pragma": "no-cache", **headers},
        )
