"""Slack Audit Logs (VENDORS.md §2): ``GET /audit/v1/logs`` with ``oldest``,
``latest`` (Unix seconds, inclusive), ``limit`` and ``cursor``; an empty
``response_metadata.next_cursor`` ends the listing. Entries come newest first, so the
cursor is a ``WindowPass`` and coverage moves only when a window is paged to its end.
Throttling is 429 with ``Retry-After``. Id ``id``, time ``date_create`` (epoch seconds).

Each new window re-reads the last ``overlap_minutes`` (option; default 5) before the
end of the previous one, so an entry Slack makes visible a little after newer ones is
still read; dedupe drops the re-reads. Slack documents no publishing lag: the default
is a safety margin, not a vendor figure. An hour is called complete only once the
overlap past it has been polled.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from lip_dagster.errors import VendorAuthError, VendorError
from lip_dagster.lake.envelope import EventIdentity
from lip_dagster.polling.base import BasePoller, PollResult
from lip_dagster.polling.http import vendor_time
from lip_dagster.polling.window import WindowPass, overlap_option
from lip_dagster.secrets import Secret
from lip_dagster.sources import page_events

DEFAULT_OVERLAP_MINUTES = 5.0
"""A safety margin for entries made visible after newer ones: VENDORS.md documents
no Slack lag. Widen it with the source option ``overlap_minutes``."""


class SlackPoller(BasePoller):
    identity = EventIdentity(id_fields=("id",), time_field="date_create")
    default_endpoints = ("logs",)
    known_endpoints = ("logs",)
    known_options = ("token_secret", "overlap_minutes")
    newest_first = True

    @classmethod
    def check_options(cls, source: str, options: Mapping[str, str]) -> None:
        # an overlap that is not a number of minutes fails at load, not on every poll
        overlap_option(source, options, ("overlap_minutes",), DEFAULT_OVERLAP_MINUTES)

    def get_auth_token(self) -> Secret:
        return self.bearer("token_secret", "slack/token")

    def call_api(
        self,
        auth_token: Secret,
        endpoint: str,
        cursor: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
    ) -> PollResult:
        st = WindowPass.begin(
            cursor, start_time, end_time, now=self.clock(), overlap_seconds=self.overlap_seconds()
        )
        params = {
            "oldest": str(int(st.oldest)),
            # latest is inclusive: a backfill of [start, end) stops a second short
            "latest": str(int(st.latest) - (1 if end_time else 0)),
            "limit": str(min(self.config.page_size, 9999)),
        }
        if st.page:
            params["cursor"] = st.page
        resp = self.request(
            "GET",
            f"{self.config.base_url.rstrip('/')}/audit/v1/logs",
            headers={"Authorization": auth_token.reveal()},
            params=params,
        )
        data = self.json_body(resp, dict)
        if data.get("ok") is False:  # Slack reports some auth errors in a 200 body
            raise VendorAuthError(self.source, endpoint, resp.status_code, str(data.get("error")))
        entries = page_events(
            self.source, endpoint, resp.status_code, data.get("entries"), "entries"
        )
        times = [t for e in entries if type(t := e.get("date_create")) is int]
        meta = data.get("response_metadata") or {}
        if not isinstance(meta, dict):
            raise VendorError(
                self.source, endpoint, resp.status_code, "response_metadata is not an object"
            )
        nxt = meta.get("next_cursor") or None
        step = st.advance(nxt, float(max(times)) if times else None, vendor_time(resp))
        return PollResult(entries, step.cursor, step.has_more, high_water=step.high_water)

    def overlap_seconds(self) -> float:
        """The re-read overlap: option ``overlap_minutes``, else the default."""
        return overlap_option(
            self.source, self.config.options, ("overlap_minutes",), DEFAULT_OVERLAP_MINUTES
        )

    def get_cursor_key(self, endpoint: str) -> str:
        return endpoint
