"""``VendorSimulator``: Okta, Slack, 1Password and Google Workspace on one local server.

The real adapters are written against this server and then pointed at the real vendors,
so it reproduces the documented contracts and their quirks (VENDORS.md §1-§4) rather
than an idealised API. It runs uvicorn (Starlette app) in a background thread on
127.0.0.1, starts in well under two seconds and serves 1,000-event pages at tens of
pages per second.

URL layout (one prefix per vendor)::

    GET  /okta/api/v1/logs                 POST /okta/oauth2/v1/token
    POST /onepassword/api/v1/{auditevents|itemusages|signinattempts}
    GET  /onepassword/api/v2/auth/introspect
    GET  /slack/audit/v1/logs
    POST /google/token
    GET  /google/admin/reports/v1/activity/users/{all|userKey}/applications/{app}
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lip_dagster.serving import ThreadedServer, bind
from lip_dagster.simulator.auth import Credentials, JtiCache, TokenStore
from lip_dagster.simulator.common import SimContext, Vendor
from lip_dagster.simulator.config import SimConfig
from lip_dagster.simulator.faults import Decision, FaultInjector, Faults
from lip_dagster.simulator.generators import NS, VENDORS, to_ns
from lip_dagster.simulator.google import Google
from lip_dagster.simulator.okta import Okta
from lip_dagster.simulator.onepassword import OnePassword
from lip_dagster.simulator.slack import Slack
from lip_dagster.simulator.store import CursorCodec, SimState, decode_many, now_ns

log = logging.getLogger(__name__)

_ALIASES = {"google": "google_workspace", "1password": "onepassword"}
_PREFIXES = {
    "okta": "okta",
    "onepassword": "onepassword",
    "slack": "slack",
    "google_workspace": "google",
}


def _vendor_name(vendor: str) -> str:
    name = _ALIASES.get(vendor, vendor)
    if name not in VENDORS:
        raise ValueError(f"unknown vendor {vendor!r}; expected one of {sorted(VENDORS)}")
    return name


class VendorSimulator:
    """Local stand-in for the four polled vendors, with ground truth and fault control.

    ``events(vendor, endpoint)`` is every event generated so far in persistence order
    (deep copies): the reference for no-loss tests. ``faults`` and ``script`` inject
    throttling, server errors and latency; ``request_log`` records what was called.
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self._state = SimState(
            self.config.seed, self.config.live_rate_per_s, self.config.retention_hours
        )
        self._injector = FaultInjector(self.config.faults)
        # derived from the seed so cursors an adapter checkpointed stay decodable when
        # the simulator is restarted, as a real vendor's cursors survive its restarts
        self._codec = CursorCodec(
            hashlib.sha256(f"lip-simulator-cursor/{self.config.seed}".encode()).digest()
        )
        self._log: deque[tuple[str, str, str, int]] = deque(maxlen=self.config.request_log_size)
        self._log_lock = threading.Lock()
        self._creds: Credentials | None = None
        self._ctx: SimContext | None = None
        self._server: ThreadedServer | None = None
        self._base_url: str | None = None
        self._history_done = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> VendorSimulator:
        """Generate credentials and history, bind, and serve in a background thread."""
        if self._server is not None:
            return self
        cfg = self.config
        sock = bind(cfg.host, cfg.port, backlog=128)
        host, port = sock.getsockname()[:2]
        url_host = f"[{host}]" if ":" in host else host
        self._base_url = f"http://{url_host}:{port}"

        if self._creds is None:
            self._creds = Credentials.generate(okta_key_type=cfg.okta_key_type)
        now = now_ns()
        if not self._history_done:
            span = int(cfg.history_hours * 3600 * NS)
            n = int(cfg.history_hours * cfg.events_per_hour)
            for vendor, endpoints in VENDORS.items():
                for endpoint in endpoints:
                    self._state.add(vendor, endpoint, n, now - span, now)
            self._state.start_clock(now)
            self._history_done = True
        self._ctx = SimContext(
            config=cfg,
            state=self._state,
            codec=self._codec,
            creds=self._creds,
            base_url=self._base_url,
            okta_tokens=TokenStore(),
            google_tokens=TokenStore(),
            jti=JtiCache(),
        )
        app = Starlette(routes=self._routes(self._ctx))
        uv_config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=1,
        )
        server = ThreadedServer(uv_config, sock, "vendor-simulator")
        server.start()  # on failure it has released the port
        self._server = server
        return self

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> VendorSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ accessors

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the simulator is not started")
        return self._base_url

    def url(self, vendor: str) -> str:
        """A vendor's base URL as its adapter expects it (``{base_url}/okta`` ...)."""
        return f"{self.base_url}/{_PREFIXES[_vendor_name(vendor)]}"

    def credentials(self) -> dict[str, str]:
        """Secret name -> value: ``okta/api-token``, ``okta/client-id``,
        ``okta/private-key``, ``onepassword/token``, ``slack/token``,
        ``google/service-account`` (key-file JSON), ``google/admin-email``."""
        if self._creds is None or self._base_url is None:
            raise RuntimeError("credentials exist once the simulator is started")
        return self._creds.as_dict(self._base_url)

    def events(self, vendor: str, endpoint: str) -> list[dict[str, Any]]:
        """Every event generated so far for one endpoint, in persistence order."""
        return self._state.snapshot(_vendor_name(vendor), endpoint)

    def add_events(
        self, vendor: str, endpoint: str, n: int, start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        """Generate ``n`` events with timestamps spread over ``[start, end)`` and
        persist them now (after everything already stored); returns copies. Past
        windows model late-arriving data; an Okta polling cursor still delivers them."""
        s, e = to_ns(start), to_ns(end)
        if e <= s:
            raise ValueError("end must be after start")
        return decode_many(self._state.add(_vendor_name(vendor), endpoint, n, s, e))

    @property
    def live_rate_per_s(self) -> float:
        return self._state.live_rate_per_s

    @live_rate_per_s.setter
    def live_rate_per_s(self, rate: float) -> None:
        """Change the arrival rate at runtime; 0 freezes the data so a test can drain
        every page and then compare with ``events()``."""
        self._state.set_live_rate(rate)
        self.config.live_rate_per_s = rate

    @property
    def faults(self) -> Faults:
        return self._injector.faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        self._injector.faults = value
        self.config.faults = value

    def script(self, vendor: str, statuses: Iterable[int | str]) -> None:
        """The next requests to ``vendor`` (any of its endpoints, token endpoints
        included) answer these statuses first, in order; 2xx means "answer normally"
        and ``"slow"`` delays by ``faults.slow_seconds``. Calls append."""
        self._injector.script(_vendor_name(vendor), statuses)

    def clear_scripts(self, vendor: str | None = None) -> None:
        self._injector.clear_scripts(None if vendor is None else _vendor_name(vendor))

    def expire_tokens(self) -> None:
        """Invalidate every issued OAuth access token now (tests refresh-on-401)."""
        if self._ctx is not None:
            self._ctx.okta_tokens.expire_all()
            self._ctx.google_tokens.expire_all()

    @property
    def tokens_issued(self) -> dict[str, int]:
        """How many access tokens each token endpoint issued (tests token caching)."""
        if self._ctx is None:
            return {"okta": 0, "google_workspace": 0}
        return {
            "okta": self._ctx.okta_tokens.issued,
            "google_workspace": self._ctx.google_tokens.issued,
        }

    @property
    def request_log(self) -> list[tuple[str, str, str, int]]:
        """``(vendor, method, path, status)`` of recent requests, oldest first."""
        with self._log_lock:
            return list(self._log)

    def clear_request_log(self) -> None:
        with self._log_lock:
            self._log.clear()

    # ------------------------------------------------------------------ routing

    def _routes(self, ctx: SimContext) -> list[Route]:
        routes: list[Route] = []
        vendor: Vendor
        for vendor in (Okta(ctx), Slack(ctx), OnePassword(ctx), Google(ctx)):
            for route in vendor.routes():
                routes.append(
                    Route(
                        route.path,
                        self._wrap(vendor, route.endpoint),
                        methods=sorted(route.methods or ()),
                        name=route.name,
                    )
                )
        return routes

    def _wrap(self, vendor: Vendor, handler: Any) -> Any:
        """Faults first (as a throttling proxy would), then the vendor handler; every
        outcome is logged."""

        async def endpoint(request: Request) -> Response:
            decision = self._injector.decide(vendor.name)
            if decision.delay > 0:
                await asyncio.sleep(decision.delay)
            if decision.status is not None:
                resp = vendor.fault_response(request, decision)
            else:
                try:
                    resp = await handler(request)
                except Exception:  # a handler bug must still answer like the vendor
                    log.exception("simulator handler failed: %s", request.url.path)
                    resp = vendor.fault_response(request, Decision(500, 0.0))
            with self._log_lock:
                self._log.append((vendor.name, request.method, request.url.path, resp.status_code))
            return resp

        return endpoint


def vendors() -> dict[str, Sequence[str]]:
    """Vendor -> endpoints the simulator serves (names used by ``events``/``script``)."""
    return {k: tuple(v) for k, v in VENDORS.items()}
