"""Okta System Log (VENDORS.md §1).

Auth: ``SSWS`` API token, or OAuth 2.0 client credentials with a private-key JWT
client assertion (token cached until shortly before its 1 h expiry), signed RS256 with
an RSA key or ES256/384/512 with an EC one, as the registered key's type requires.
Pagination: the ``Link: rel="next"`` URL, followed verbatim. In polling mode (no
``until``) ``next`` never ends, so an empty page means caught up; a bounded request
(backfill) ends when ``next`` is absent. Id ``uuid``, time ``published``.
"""

from __future__ import annotations

from datetime import datetime

from lip_dagster.errors import ConfigError, VendorError
from lip_dagster.lake.envelope import EventIdentity
from lip_dagster.polling.auth import TokenCache, key_algorithm, same_origin, signed_assertion
from lip_dagster.polling.base import BasePoller, PollResult
from lip_dagster.secrets import Secret
from lip_dagster.sources import page_events

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def rfc3339(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class OktaPoller(BasePoller):
    identity = EventIdentity(id_fields=("uuid",), time_field="published")
    default_endpoints = ("logs",)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.base = self.config.base_url.rstrip("/")
        self.token_url = f"{self.base}/oauth2/v1/token"
        self._tokens = TokenCache(self._fetch_oauth_token, clock=self.clock)

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
            if not same_origin(cursor, self.base):
                raise VendorError(self.source, endpoint, None, "next link points off the Okta org")
            resp = self.request("GET", cursor, headers=headers)
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
        if end_time is not None:  # bounded: the last page has no next
            return PollResult(events, nxt, has_more=nxt is not None)
        # polling: next never ends; an empty page means caught up
        return PollResult(events, nxt or cursor, has_more=bool(events) and nxt is not None)

    def get_cursor_key(self, endpoint: str) -> str:
        return endpoint
