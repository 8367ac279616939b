"""Okta System Log (VENDORS.md §1).

Auth: ``SSWS`` API token, or OAuth 2.0 client credentials with a private-key JWT
client assertion (token cached until shortly before its 1 h expiry), signed RS256 with
an RSA key or ES256/384/512 with an EC one, as the registered key's type requires.
Pagination: the ``Link: rel="next"`` URL, followed verbatim (only on the configured
origin; a link stored under an earlier base URL is asked of the configured one). In
polling mode (no ``until``) ``next`` never ends, so an empty page means caught up; a
bounded request (backfill) ends when ``next`` is absent. Id ``uuid``, time ``published``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

from lip_dagster.errors import ConfigError, VendorError
from lip_dagster.lake.envelope import EventIdentity
from lip_dagster.polling.auth import (
    TokenCache,
    canonical_base_url,
    key_algorithm,
    same_origin,
    signed_assertion,
)
from lip_dagster.polling.base import BasePoller, PollResult
from lip_dagster.secrets import Secret, redact_url
from lip_dagster.sources import page_events

log = logging.getLogger(__name__)

AUTH_MODES = ("ssws", "oauth")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def rfc3339(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class OktaPoller(BasePoller):
    identity = EventIdentity(id_fields=("uuid",), time_field="published")
    default_endpoints = ("logs",)
    known_endpoints = ("logs",)
    # auth ssws reads token_secret; auth oauth client_id_secret and private_key_secret
    known_options = ("auth", "token_secret", "client_id_secret", "private_key_secret")
    retention = timedelta(days=90)  # VENDORS.md §1: older data is not returned

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.base = canonical_base_url(self.config.base_url)
        self.token_url = f"{self.base}/oauth2/v1/token"
        self._tokens = TokenCache(self._fetch_oauth_token, clock=self.clock)

    @classmethod
    def check_options(cls, source: str, options: Mapping[str, str]) -> None:
        auth = options.get("auth", "ssws")
        if auth not in AUTH_MODES:
            raise ConfigError(
                f"source {source!r}: auth (LIP_OKTA_AUTH) must be one of {', '.join(AUTH_MODES)}, "
                f"not {auth!r}"
            )

    def get_auth_token(self) -> Secret:
        if self.config.option("auth", "ssws") == "oauth":
            return Secret("Bearer " + self._tokens.get().reveal())
        return Secret("SSWS " + self.secret("token_secret", "okta/api-token").reveal())

    def forget_auth_token(self) -> bool:
        if self.config.option("auth", "ssws") != "oauth":
            return False
        self._tokens.clear()
        return True

    def _fetch_oauth_token(self) -> tuple[str, float]:
        client_id = self.secret("client_id_secret", "okta/client-id").reveal()
        key_name = self.config.option("private_key_secret", "okta/private-key")
        key = self.secrets.get(key_name)
        algorithm = key_algorithm(key)
        if algorithm is None:
            # a refusal Okta would never get to see: no retry or new token fixes it
            raise ConfigError(
                f"source {self.source!r}: the secret {key_name!r} is not a PEM private key "
                "Okta can verify (RSA, or EC on P-256, P-384 or P-521)"
            )
        claims = {"iss": client_id, "sub": client_id, "aud": self.token_url}
        form = {
            "grant_type": "client_credentials",
            "scope": "okta.logs.read",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed_assertion(key, claims, algorithm=algorithm),
        }
        return self.token_request(self.token_url, form, "oauth2/v1/token")

    def call_api(
        self,
        auth_token: Secret,
        endpoint: str,
        cursor: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
    ) -> PollResult:
        headers = {"Authorization": auth_token.reveal(), "Accept": "application/json"}
        if cursor:
            url = cursor if same_origin(cursor, self.base) else self._rebased(cursor)
            resp = self.request("GET", url, headers=headers)
        else:
            params = {"limit": str(min(self.config.page_size, 1000)), "sortOrder": "ASCENDING"}
            if start_time is not None:
                params["since"] = rfc3339(start_time)
            if end_time is not None:
                params["until"] = rfc3339(end_time)
            resp = self.request("GET", f"{self.base}/api/v1/logs", headers=headers, params=params)
        events = page_events(
            self.source, endpoint, resp.status_code, self.json_body(resp, list), "the page"
        )
        nxt = resp.links.get("next", {}).get("url")
        if nxt is not None and not same_origin(nxt, self.base):
            # our credential would follow it: refused before the link is stored
            raise VendorError(
                self.source, endpoint, resp.status_code, "the next link points off the Okta org"
            )
        if end_time is not None:  # bounded: the last page has no next
            return PollResult(events, nxt, has_more=nxt is not None)
        # polling: next never ends; an empty page means caught up
        return PollResult(events, nxt or cursor, has_more=bool(events) and nxt is not None)

    def _rebased(self, link: str) -> str:
        """A next link stored under an earlier ``base_url`` (the org moved to a custom
        domain, or the other way round), asked of the org configured now: same path
        from ``/api/v1/logs`` on, same ``after``. The request goes only to the
        configured host. If that is another org, Okta refuses the ``after`` and the
        run fails with its answer."""
        parts = urlsplit(link)
        at = parts.path.find("/api/v1/logs")
        if at < 0:
            raise ConfigError(
                f"source {self.source!r}: the stored cursor is not an Okta System Log link; "
                "reset the source's cursor to start again"
            )
        base = urlsplit(self.base)
        url = urlunsplit(
            (base.scheme, base.netloc, base.path.rstrip("/") + parts.path[at:], parts.query, "")
        )
        log.warning(
            "source %r: the stored next link is on another host than the configured base "
            "URL (%s); continuing from it there",
            self.source,
            redact_url(self.base),
        )
        return url

    def get_cursor_key(self, endpoint: str) -> str:
        return endpoint
