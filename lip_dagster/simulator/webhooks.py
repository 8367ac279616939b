"""The push side of the simulator: Okta Event Hooks, GitHub webhooks and Jamf Pro
webhooks, delivered to a receiver the way each vendor sends them (VENDORS.md §1,
§5, §8).

    sim = WebhookSimulator(seed=1)
    secrets = sim.credentials()          # okta-hooks/shared-secret, github/webhook-secret,
                                         # jamf/webhook-auth
    sim.send(base_url, [sim.okta_verification()])
    deliveries = sim.okta_deliveries(50) + sim.github_deliveries(20) + sim.jamf_deliveries(20)
    statuses = sim.send(base_url, deliveries, concurrency=8)

- Okta: the one-time verification ``GET`` (``X-Okta-Verification-Challenge``), then
  ``POST``s of ``{"eventType": "com.okta.event_hook", ..., "data": {"events": [...]}}``
  with the raw shared secret in ``Authorization``.
- GitHub: one event per ``POST``, ``X-GitHub-Event``, ``X-GitHub-Delivery`` (a GUID),
  ``X-GitHub-Hook-ID``, ``X-Hub-Signature`` (SHA-1, kept by GitHub for
  compatibility) and ``X-Hub-Signature-256`` over the raw body.
- Jamf Pro: one event per ``POST``, ``{"event": {...}, "webhook": {"eventTimestamp":
  <ms>, "id", "name", "webhookEvent"}}``, with the "Header Authentication" map.

Every ``Delivery`` carries the vendor events it holds, the ground truth a test
compares the lake with. Nothing in the product imports this module.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from lip_dagster.simulator.generators import OKTA_DOMAIN, ORG_NAME, _org, okta_events

__all__ = ["Delivery", "WebhookSimulator"]

GITHUB_ORG = "example-corp"
GITHUB_ORG_ID = 91_234_567
GITHUB_HOOK_ID = 471_236_004
JAMF_URL = "https://example.jamfcloud.com"


@dataclass(frozen=True)
class Delivery:
    """One HTTP request a vendor makes. ``source`` is the LIP source it is for (the
    route ``/webhooks/<source>``); ``events`` are the vendor events inside."""

    source: str
    method: str
    headers: dict[str, str]
    body: bytes = b""
    events: list[dict[str, Any]] = field(default_factory=list)
    label: str = ""


def _token(rng: random.Random, nbytes: int = 24) -> str:
    return base64.urlsafe_b64encode(rng.randbytes(nbytes)).decode().rstrip("=")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _spread(n: int, start: datetime, end: datetime) -> list[datetime]:
    step = (end - start) / max(n, 1)
    return [start + step * i for i in range(n)]


class WebhookSimulator:
    """Okta, GitHub and Jamf as senders; deterministic for a seed."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._rng = random.Random(f"lip-webhooks/{seed}")
        secrets = random.Random(f"lip-webhook-secrets/{seed}")
        self.okta_secret = _token(secrets)
        self.github_secret = _token(secrets)
        self.jamf_headers = {"Authorization": f"Bearer {_token(secrets)}", "X-Jamf-Hook": "lip"}
        self.okta_hook_id = "who" + _token(secrets, 13)[:17]

    # ------------------------------------------------------------------ secrets

    def credentials(self) -> dict[str, str]:
        """Secret name -> value, as the receiver looks them up."""
        return {
            "okta-hooks/shared-secret": self.okta_secret,
            "github/webhook-secret": self.github_secret,
            "jamf/webhook-auth": orjson.dumps(self.jamf_headers).decode(),
        }

    # ------------------------------------------------------------------ Okta

    def okta_verification(self, source: str = "okta_hooks") -> Delivery:
        """The one-time ``GET`` Okta makes when the hook is verified."""
        return Delivery(
            source,
            "GET",
            {
                "User-Agent": "Okta-Integrations",
                "Accept": "application/json",
                "X-Okta-Request-Id": _token(self._rng, 12),
                "X-Okta-Verification-Challenge": _token(self._rng, 30),
                "Authorization": self.okta_secret,
            },
            label="okta verification",
        )

    def okta_delivery(self, events: list[dict[str, Any]], source: str = "okta_hooks") -> Delivery:
        doc = {
            "eventType": "com.okta.event_hook",
            "eventTypeVersion": "1.0",
            "cloudEventsVersion": "0.1",
            "source": f"https://{OKTA_DOMAIN}/api/v1/eventHooks/{self.okta_hook_id}",
            "eventId": _uuid(self._rng),
            "data": {"events": events},
            "eventTime": _iso(datetime.now(UTC)),
            "contentType": "application/json",
        }
        return Delivery(
            source,
            "POST",
            {
                "User-Agent": "Okta-Integrations",
                "Accept": "application/json",
                "Content-Type": "application/json",
                "X-Okta-Request-Id": _token(self._rng, 12),
                "Authorization": self.okta_secret,
            },
            orjson.dumps(doc),
            list(events),
            "okta event hook",
        )

    def okta_deliveries(
        self,
        n_events: int,
        per_delivery: int = 10,
        start: datetime | None = None,
        end: datetime | None = None,
        source: str = "okta_hooks",
    ) -> list[Delivery]:
        """``n_events`` System Log events in batches of up to ``per_delivery``, with
        ``published`` spread over ``[start, end)`` (default: the last 10 minutes)."""
        end = end or datetime.now(UTC)
        start = start or end - timedelta(minutes=10)
        events = okta_events(n_events, start, end, seed=self._rng.getrandbits(32))
        return [
            self.okta_delivery(events[i : i + per_delivery], source)
            for i in range(0, len(events), per_delivery)
        ]

    # ------------------------------------------------------------------ GitHub

    def github_delivery(
        self,
        event: str,
        payload: dict[str, Any],
        *,
        guid: str | None = None,
        form: bool = False,
        source: str = "github",
    ) -> Delivery:
        """One GitHub delivery; ``form`` sends it ``application/x-www-form-urlencoded``
        (``payload=<json>``) as a hook set to that content type does."""
        raw = orjson.dumps(payload)
        if form:
            from urllib.parse import urlencode

            body = urlencode({"payload": raw.decode()}).encode()
            ctype = "application/x-www-form-urlencoded"
        else:
            body, ctype = raw, "application/json"
        key = self.github_secret.encode()
        headers = {
            "User-Agent": "GitHub-Hookshot/044aadd",
            "Accept": "*/*",
            "Content-Type": ctype,
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": guid or _uuid(self._rng),
            "X-GitHub-Hook-ID": str(GITHUB_HOOK_ID),
            "X-GitHub-Hook-Installation-Target-Type": "organization",
            "X-GitHub-Hook-Installation-Target-ID": str(GITHUB_ORG_ID),
            "X-Hub-Signature": "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
            "X-Hub-Signature-256": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
        }
        return Delivery(source, "POST", headers, body, [payload], f"github {event}")

    def github_deliveries(
        self,
        n: int,
        start: datetime | None = None,
        end: datetime | None = None,
        source: str = "github",
    ) -> list[Delivery]:
        """``n`` deliveries of varied events (push, pull_request, issues, member,
        repository, organization) happening over ``[start, end)``."""
        end = end or datetime.now(UTC)
        start = start or end - timedelta(minutes=10)
        out = []
        for t in _spread(n, start, end):
            event, payload = self._github_event(t)
            out.append(self.github_delivery(event, payload, source=source))
        return out

    def _github_event(self, t: datetime) -> tuple[str, dict[str, Any]]:
        rng = self._rng
        org = _org()
        user = org.users[rng.randrange(len(org.users))]
        login = user.email.split("@")[0].replace(".", "-")
        sender = {
            "login": login,
            "id": 1_000_000 + int(hashlib.sha256(login.encode()).hexdigest()[:8], 16) % 9_000_000,
            "node_id": "MDQ6VXNlcj" + _token(rng, 6),
            "type": "User",
            "site_admin": False,
        }
        repo_name = rng.choice(["api", "web", "infra", "data-pipeline", "mobile", "docs"])
        repository = {
            "id": 500_000_000 + rng.randrange(10_000),
            "node_id": "R_kgDO" + _token(rng, 6),
            "name": repo_name,
            "full_name": f"{GITHUB_ORG}/{repo_name}",
            "private": rng.random() < 0.8,
            "owner": {"login": GITHUB_ORG, "id": GITHUB_ORG_ID, "type": "Organization"},
            "html_url": f"https://github.com/{GITHUB_ORG}/{repo_name}",
            "default_branch": "main",
            "visibility": "private",
        }
        organization = {
            "login": GITHUB_ORG,
            "id": GITHUB_ORG_ID,
            "node_id": "O_kgDOBW" + _token(rng, 4),
            "description": ORG_NAME,
        }
        stamp = t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        kind = rng.random()
        if kind < 0.4:
            before, after = rng.randbytes(20).hex(), rng.randbytes(20).hex()
            commit = {
                "id": after,
                "tree_id": rng.randbytes(20).hex(),
                "distinct": True,
                "message": rng.choice(["Fix flaky test", "Bump deps", "Add audit logging"]),
                "timestamp": stamp,
                "url": f"https://github.com/{GITHUB_ORG}/{repo_name}/commit/{after}",
                "author": {"name": user.name, "email": user.email, "username": login},
                "committer": {"name": user.name, "email": user.email, "username": login},
                "added": [],
                "removed": [],
                "modified": ["README.md"],
            }
            return "push", {
                "ref": "refs/heads/main",
                "before": before,
                "after": after,
                "repository": repository,
                "pusher": {"name": login, "email": user.email},
                "organization": organization,
                "sender": sender,
                "created": False,
                "deleted": False,
                "forced": rng.random() < 0.05,
                "base_ref": None,
                "compare": f"https://github.com/{GITHUB_ORG}/{repo_name}/compare/{before[:12]}...{after[:12]}",
                "commits": [commit],
                "head_commit": commit,
            }
        if kind < 0.65:
            number = rng.randrange(1, 5000)
            action = rng.choice(["opened", "closed", "synchronize", "reopened"])
            return "pull_request", {
                "action": action,
                "number": number,
                "pull_request": {
                    "id": 1_800_000_000 + rng.randrange(10**6),
                    "number": number,
                    "state": "closed" if action == "closed" else "open",
                    "title": rng.choice(["Rotate keys", "Tighten IAM policy", "Upgrade Python"]),
                    "user": sender,
                    "created_at": stamp,
                    "updated_at": stamp,
                    "merged": action == "closed" and rng.random() < 0.8,
                    "html_url": f"https://github.com/{GITHUB_ORG}/{repo_name}/pull/{number}",
                },
                "repository": repository,
                "organization": organization,
                "sender": sender,
            }
        if kind < 0.8:
            number = rng.randrange(1, 5000)
            return "issues", {
                "action": rng.choice(["opened", "closed", "labeled"]),
                "issue": {
                    "id": 2_100_000_000 + rng.randrange(10**6),
                    "number": number,
                    "title": "Access request",
                    "user": sender,
                    "state": "open",
                    "created_at": stamp,
                    "updated_at": stamp,
                },
                "repository": repository,
                "organization": organization,
                "sender": sender,
            }
        if kind < 0.9:
            return "member", {
                "action": rng.choice(["added", "removed", "edited"]),
                "member": {"login": login, "id": sender["id"], "type": "User"},
                "changes": {"permission": {"to": rng.choice(["write", "admin", "read"])}},
                "repository": repository,
                "organization": organization,
                "sender": sender,
            }
        if kind < 0.96:
            return "repository", {
                "action": rng.choice(["created", "privatized", "publicized", "archived"]),
                "repository": repository,
                "organization": organization,
                "sender": sender,
            }
        return "organization", {
            "action": rng.choice(["member_added", "member_removed", "member_invited"]),
            "membership": {
                "state": "active",
                "role": "member",
                "user": {"login": login, "id": sender["id"], "type": "User"},
            },
            "organization": organization,
            "sender": sender,
        }

    # ------------------------------------------------------------------ Jamf

    def jamf_delivery(self, payload: dict[str, Any], source: str = "jamf") -> Delivery:
        headers = {
            "User-Agent": "Jamf Pro",
            "Content-Type": "application/json",
            "Accept": "*/*",
            **self.jamf_headers,
        }
        return Delivery(
            source,
            "POST",
            headers,
            orjson.dumps(payload),
            [payload],
            f"jamf {payload['webhook']['webhookEvent']}",
        )

    def jamf_deliveries(
        self,
        n: int,
        start: datetime | None = None,
        end: datetime | None = None,
        source: str = "jamf",
    ) -> list[Delivery]:
        end = end or datetime.now(UTC)
        start = start or end - timedelta(minutes=10)
        return [self.jamf_delivery(self._jamf_event(t), source) for t in _spread(n, start, end)]

    def _jamf_event(self, t: datetime) -> dict[str, Any]:
        rng = self._rng
        org = _org()
        user = org.users[rng.randrange(len(org.users))]
        jss_id = rng.randrange(1, 20_000)
        serial = "C02" + _token(rng, 9).upper()[:9]
        computer = {
            "alternateMacAddress": "72:00:01:" + rng.randbytes(3).hex(":"),
            "building": rng.choice(["HQ", "Annex", ""]),
            "department": rng.choice(["Engineering", "Finance", "Sales", "IT"]),
            "deviceName": f"{user.name.split()[0]}'s MacBook Pro",
            "emailAddress": user.email,
            "ipAddress": user.ip,
            "jssID": jss_id,
            "macAddress": "a4:83:e7:" + rng.randbytes(3).hex(":"),
            "model": rng.choice(["MacBookPro18,3", "Mac14,2", "Mac15,6"]),
            "osBuild": "23F79",
            "osVersion": rng.choice(["14.5", "14.6.1", "15.0"]),
            "phone": "",
            "position": "",
            "realName": user.name,
            "reportedIpAddress": user.ip,
            "room": "",
            "serialNumber": serial,
            "udid": _uuid(rng).upper(),
            "userDirectoryID": "-1",
            "username": user.email.split("@")[0],
            "managementId": _uuid(rng),
        }
        kind = rng.random()
        if kind < 0.35:
            name, event = (
                "ComputerCheckIn",
                {
                    "computer": computer,
                    "trigger": "CLIENT_CHECKIN",
                    "username": computer["username"],
                },
            )
        elif kind < 0.5:
            name, event = "ComputerInventoryCompleted", {"computer": computer}
        elif kind < 0.6:
            name, event = "ComputerAdded", computer
        elif kind < 0.75:
            name, event = (
                "MobileDeviceEnrolled",
                {
                    "deviceName": f"{user.name.split()[0]}'s iPhone",
                    "ipAddress": user.ip,
                    "jssID": jss_id,
                    "model": "iPhone 15",
                    "osVersion": "17.5.1",
                    "serialNumber": "F" + serial[1:],
                    "udid": rng.randbytes(20).hex(),
                    "username": computer["username"],
                    "managementId": _uuid(rng),
                },
            )
        elif kind < 0.9:
            name, event = (
                "RestAPIOperation",
                {
                    "authorizedUsername": rng.choice(["api-automation", "jamf-admin"]),
                    "objectID": rng.randrange(1, 5000),
                    "objectName": rng.choice(["FileVault Policy", "Firewall Profile"]),
                    "objectTypeName": rng.choice(["Policy", "Configuration Profile"]),
                    "operationSuccessful": rng.random() < 0.95,
                    "restAPIOperationType": rng.choice(["GET", "PUT", "POST", "DELETE"]),
                },
            )
        else:
            name, event = (
                "SmartGroupComputerMembershipChange",
                {
                    "computer": True,
                    "groupAddedDevices": [{"jssID": jss_id, "deviceName": computer["deviceName"]}],
                    "groupAddedDevicesIds": [jss_id],
                    "groupRemovedDevices": [],
                    "groupRemovedDevicesIds": [],
                    "jssid": rng.randrange(1, 300),
                    "name": rng.choice(["Out of date macOS", "FileVault off"]),
                    "smartGroup": True,
                },
            )
        return {
            "event": event,
            "webhook": {
                "eventTimestamp": int(t.timestamp() * 1000),
                "id": rng.randrange(1, 50),
                "name": f"LIP {name}",
                "webhookEvent": name,
            },
        }

    # ------------------------------------------------------------------ tampering

    def tampered(self, delivery: Delivery) -> Delivery:
        """The same request with a proof that does not verify (a wrong signature for
        GitHub, a wrong shared secret for Okta and Jamf)."""
        headers = dict(delivery.headers)
        if "X-Hub-Signature-256" in headers:
            headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
        elif delivery.source and "Authorization" in headers:
            headers["Authorization"] = "not-" + headers["Authorization"]
        return replace(delivery, headers=headers, label=delivery.label + " (bad auth)")

    # ------------------------------------------------------------------ sending

    def send(
        self,
        base_url: str,
        deliveries: Sequence[Delivery],
        *,
        concurrency: int = 8,
        timeout: float = 10.0,
    ) -> list[int]:
        """Deliver to ``{base_url}/webhooks/<source>`` with up to ``concurrency``
        requests in flight; returns the HTTP statuses in order (0: no response)."""
        return asyncio.run(self._send(base_url, deliveries, concurrency, timeout))

    async def _send(
        self, base_url: str, deliveries: Sequence[Delivery], concurrency: int, timeout: float
    ) -> list[int]:
        statuses = [0] * len(deliveries)
        queue = list(enumerate(deliveries))
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

            async def worker() -> None:
                while queue:
                    i, d = queue.pop(0)
                    try:
                        resp = await client.request(
                            d.method,
                            f"{base_url}/webhooks/{d.source}",
                            headers=d.headers,
                            content=d.body if d.method != "GET" else None,
                        )
                        statuses[i] = resp.status_code
                    except httpx.TransportError:
                        statuses[i] = 0

            await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
        return statuses
