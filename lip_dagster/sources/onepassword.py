"""1Password Events API (VENDORS.md §3): audit events, item usages and sign-in
attempts as three endpoints of one source.

First request: a ResetCursor body with ``start_time`` (and ``end_time`` for a
backfill); then the returned cursor, which is a persistent checkpoint. ``has_more``
may be true with an empty page next, so an empty page ends the poll (the cursor is
kept; the next run continues from it). Id ``uuid``, time ``timestamp`` (nanoseconds
allowed).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from lip_dagster.errors import VendorError
from lip_dagster.lake.envelope import EventIdentity
from lip_dagster.polling.base import BasePoller, PollResult
from lip_dagster.secrets import Secret
from lip_dagster.sources import page_events
from lip_dagster.sources.okta import rfc3339

ENDPOINTS = ("auditevents", "itemusages", "signinattempts")


class OnePasswordPoller(BasePoller):
    identity = EventIdentity(id_fields=("uuid",), time_field="timestamp")
    default_endpoints = ENDPOINTS
    known_endpoints = ENDPOINTS
    known_options = ("token_secret",)
    retention = timedelta(days=120)  # VENDORS.md §3: data reaches back 120 days

    def get_auth_token(self) -> Secret:
        return self.bearer("token_secret", "onepassword/token")

    def call_api(
        self,
        auth_token: Secret,
        endpoint: str,
        cursor: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
    ) -> PollResult:
        if endpoint not in ENDPOINTS:
            raise VendorError(self.source, endpoint, None, f"unknown endpoint; use {ENDPOINTS}")
        body: dict[str, Any]
        if cursor:
            body = {"cursor": cursor}
        else:
            body = {"limit": min(self.config.page_size, 1000)}
            if start_time is not None:
                body["start_time"] = rfc3339(start_time)
            if end_time is not None:
                body["end_time"] = rfc3339(end_time)
        resp = self.request(
            "POST",
            f"{self.config.base_url.rstrip('/')}/api/v1/{endpoint}",
            headers={"Authorization": auth_token.reveal(), "Content-Type": "application/json"},
            json=body,
        )
        data = self.json_body(resp, dict)
        items = page_events(self.source, endpoint, resp.status_code, data.get("items"), "items")
        new_cursor = data.get("cursor") or cursor
        return PollResult(items, new_cursor, has_more=bool(data.get("has_more")) and bool(items))

    def get_cursor_key(self, endpoint: str) -> str:
        return endpoint
