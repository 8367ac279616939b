"""Google Workspace Reports ``activities.list`` (VENDORS.md §4).

Auth: the service-account JWT bearer flow with domain-wide delegation (RS256; ``iss``
the service account, ``sub`` the admin impersonated, ``scope``, ``aud`` the token
URI, ``exp`` one hour after ``iat``). Each application (admin, login, drive, ...) is an
endpoint. Items come newest first with ``nextPageToken`` until the last page, so the
cursor is a ``WindowPass`` and coverage moves only when a window is paged to its end;
Google publishes some activities late, so each new window re-reads an overlap
and dedupe drops what was seen (see ``overlap_seconds``), and an hour is called
complete only once the overlap past it has been polled. Over quota, the Reports
API answers 503 (its documented rate-limit answer), so 503 is throttling here, not an
outage; the OAuth token endpoint documents no such thing, and its 503 is an outage.
Identity: ``id.time`` + ``id.uniqueQualifier`` (an int64 sent as a string, may be
negative) + ``id.applicationName`` + ``id.customerId``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import orjson

from lip_dagster.errors import ConfigError
from lip_dagster.lake.envelope import EventIdentity, dig, parse_timestamp
from lip_dagster.polling.auth import TokenCache, signed_assertion
from lip_dagster.polling.base import BasePoller, PollResult
from lip_dagster.polling.http import vendor_time
from lip_dagster.polling.window import WindowPass, overlap_option
from lip_dagster.secrets import Secret
from lip_dagster.sources import page_events

SCOPE = "https://www.googleapis.com/auth/admin.reports.audit.readonly"

DEFAULT_OVERLAP_MINUTES = 30.0
OVERLAP_MINUTES_BY_APPLICATION = {"token": 120.0}
"""How far back each new window re-reads, per application. Google's "Data retention
and lag times" page gives lags per log, from "near real time (couple of minutes)" to
"tens of minutes (can also go up to a couple of hours)", and warns that a few events
come later still. An event published later than the overlap is never read, so the
defaults follow what collectors tuned on real tenants use: Elastic's Google Workspace
integration re-reads 30 minutes of login and 2 hours of OAuth token activity. The cost
of a longer overlap is re-reading (and deduping) it on every poll; see docs/scale.md."""
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class GoogleWorkspacePoller(BasePoller):
    identity = EventIdentity(
        id_fields=("id.time", "id.uniqueQualifier", "id.applicationName", "id.customerId"),
        time_field="id.time",
    )
    default_endpoints = ("admin", "login", "drive", "token")
    # token_url: the OAuth token endpoint, when not the key file's token_uri
    known_options = (
        "service_account_secret",
        "admin_email_secret",
        "token_url",
        "overlap_minutes",
    )
    newest_first = True
    throttle_statuses = frozenset({429, 503})  # VENDORS.md §4: over quota is 503
    retention = timedelta(days=180)  # VENDORS.md §4: results reach back 180 days

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._tokens = TokenCache(self._fetch_token, clock=self.clock)

    @classmethod
    def option_names(cls, endpoints: Sequence[str]) -> tuple[str, ...]:
        """Also ``overlap_minutes_<app>`` for each application the source polls: one
        for an application it does not poll (or misspelt) would set nothing."""
        return cls.known_options + tuple(f"overlap_minutes_{app}" for app in endpoints)

    @classmethod
    def check_options(cls, source: str, options: Mapping[str, str]) -> None:
        # an overlap that is not a number of minutes fails at load, not on every poll
        for name in options:
            if name.startswith("overlap_minutes"):
                overlap_option(source, options, (name,), DEFAULT_OVERLAP_MINUTES)

    def get_auth_token(self) -> Secret:
        return Secret("Bearer " + self._tokens.get().reveal())

    def forget_auth_token(self) -> bool:
        self._tokens.clear()
        return True

    def _fetch_token(self) -> tuple[str, float]:
        raw = self.secret("service_account_secret", "google/service-account")
        try:
            sa = orjson.loads(raw.reveal())
            email, key = sa["client_email"], Secret(sa["private_key"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(
                f"source {self.source!r}: the service-account secret is not a Google key file "
                "(needs client_email and private_key)"
            ) from None
        token_url = self.config.options.get("token_url") or sa.get(
            "token_uri", "https://oauth2.googleapis.com/token"
        )
        admin = self.secret("admin_email_secret", "google/admin-email")
        assertion = signed_assertion(
            key,
            {"iss": email, "sub": admin.reveal(), "scope": SCOPE, "aud": token_url},
            lifetime=3600,
            headers={"typ": "JWT"},
        )
        form = {"grant_type": GRANT, "assertion": assertion}
        return self.token_request(token_url, form, "token")

    def call_api(
        self,
        auth_token: Secret,
        endpoint: str,
        cursor: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
    ) -> PollResult:
        overlap = self.overlap_seconds(endpoint)
        st = WindowPass.begin(
            cursor, start_time, end_time, now=self.clock(), overlap_seconds=overlap
        )
        params = {
            "startTime": _rfc3339(st.oldest),
            "endTime": _rfc3339(st.latest),
            "maxResults": str(min(self.config.page_size, 1000)),
        }
        if st.page:
            params["pageToken"] = st.page
        base = self.config.base_url.rstrip("/")
        resp = self.request(
            "GET",
            f"{base}/admin/reports/v1/activity/users/all/applications/{endpoint}",
            headers={"Authorization": auth_token.reveal()},
            params=params,
        )
        data = self.json_body(resp, dict)
        items = page_events(self.source, endpoint, resp.status_code, data.get("items"), "items")
        times = [t.timestamp() for i in items if (t := parse_timestamp(dig(i, "id.time")))]
        step = st.advance(
            data.get("nextPageToken"), max(times) if times else None, vendor_time(resp)
        )
        return PollResult(items, step.cursor, step.has_more, high_water=step.high_water)

    def overlap_seconds(self, endpoint: str) -> float:
        """The re-read overlap of one application: option ``overlap_minutes_<app>``,
        else ``overlap_minutes`` (every application), else the built-in default."""
        return overlap_option(
            self.source,
            self.config.options,
            (f"overlap_minutes_{endpoint}", "overlap_minutes"),
            OVERLAP_MINUTES_BY_APPLICATION.get(endpoint, DEFAULT_OVERLAP_MINUTES),
        )

    def get_cursor_key(self, endpoint: str) -> str:
        return endpoint
