"""Where the events are in a delivery, and what identifies each, per vendor.

==================  ================================  =================================
vendor              one lake line per                 id / time
==================  ================================  =================================
okta_event_hook     event of ``data.events[]``        ``uuid`` / ``published``
github              delivery, in GitHub's own         ``guid`` (= ``X-GitHub-Delivery``)
                    webhook-delivery shape            / none: filed by arrival
jamf                POST (the whole body)             hash of ``webhookEvent``,
                                                      ``eventTimestamp``, webhook id and
                                                      device identifiers /
                                                      ``webhook.eventTimestamp``
generic             event at ``events_path``          ``id_fields`` / ``time_field``
==================  ================================  =================================

GitHub puts the event name and the delivery id in headers, not in the body, and
its payloads have no common timestamp. A line is therefore the delivery as GitHub's
own REST API describes one (``GET /repos/{owner}/{repo}/hooks/{id}/deliveries/
{delivery_id}``): ``guid``, ``event``, ``action``, ``installation_id``,
``repository_id`` and ``request: {headers, payload}``, with the body unchanged under
``request.payload``. Signature headers are left out; GitHub's fields that only its
own log knows (``status_code``, ``duration``, ...) are absent rather than invented.

Bodies are parsed with orjson, which also refuses invalid UTF-8, nesting deeper than
1024 levels and numbers beyond a double's range: each becomes a 400 with the parser's
reason. Integers beyond 64 bits are not refused: orjson reads them as the nearest
double, so they land rounded (and an id field holding one identifies by the rounded
value).
orjson writes only 254 levels, so a body nested deeper than ``MAX_BODY_DEPTH`` is a
400 too (the receiver finds it where the body is first written: hashed into an id or
packed into a buffer message): read, it could be neither buffered nor landed. A
lone UTF-16 surrogate escape (``"\\ud83d"``, a string cut mid-emoji) is valid JSON that
orjson refuses: it becomes U+FFFD and the delivery is accepted, since a 400 would make
the vendor drop it.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import orjson

from lip_dagster import jsontext
from lip_dagster.lake.envelope import EventIdentity, dig
from lip_dagster.webhook.errors import WebhookRejected
from lip_dagster.webhook.spec import WebhookSourceSpec

__all__ = [
    "GITHUB_IDENTITY",
    "JAMF_IDENTITY",
    "OKTA_EVENT_IDENTITY",
    "Extractor",
    "GenericExtractor",
    "GitHubExtractor",
    "JamfExtractor",
    "OktaEventHookExtractor",
    "build_extractor",
    "jamf_event_id",
]

Headers = Mapping[str, str]
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MAX_HEADER_ID_CHARS = 128

log = logging.getLogger(__name__)

_WRAPPING = 4
"""Levels a body's content can sit deeper once buffered: GitHub's line puts the body
under ``request.payload``, and the buffer message puts the lines in ``events[]``."""
MAX_BODY_DEPTH = jsontext.MAX_WRITE_DEPTH - _WRAPPING


def _bad(reason: str) -> WebhookRejected:
    return WebhookRejected(400, reason)


def parse_json(body: bytes, source: str) -> Any:
    """The delivery's JSON, or a 400 with orjson's reason. Lone surrogate escapes are
    replaced by U+FFFD (one warning naming ``source``, never the content) rather than
    refused: a refused delivery is one the vendor drops."""
    if not body.strip():
        raise _bad("empty body")
    try:
        doc, repaired = jsontext.loads(body)
    except orjson.JSONDecodeError as err:
        raise _bad(f"body is not valid JSON: {err.msg}") from None
    if repaired:
        log.warning(
            "webhook %s: replaced %d lone UTF-16 surrogate escape(s) in the delivery with U+FFFD",
            source,
            repaired,
        )
    return doc


class Extractor(ABC):
    """Turns one authenticated delivery into the events to buffer."""

    identity: EventIdentity
    content_types: tuple[str, ...] = (JSON,)
    source: str = "webhook"
    """The source's name, for log lines; ``build_extractor`` sets it."""

    @abstractmethod
    def extract(self, body: bytes, content_type: str, headers: Headers) -> list[dict[str, Any]]:
        """The delivery's events (at least one) or ``WebhookRejected(400)`` naming what
        is wrong. ``content_type`` is one of ``content_types`` (lower case, no
        parameters)."""


OKTA_EVENT_IDENTITY = EventIdentity(id_fields=("uuid",), time_field="published")


class OktaEventHookExtractor(Extractor):
    """Okta Event Hooks: ``{"eventType": "com.okta.event_hook", "data": {"events":
    [<System Log event>, ...]}}``; each event lands like a polled System Log event."""

    identity = OKTA_EVENT_IDENTITY

    def extract(self, body: bytes, content_type: str, headers: Headers) -> list[dict[str, Any]]:
        doc = parse_json(body, self.source)
        if not isinstance(doc, dict):
            raise _bad("an Okta Event Hook delivery must be a JSON object")
        events = dig(doc, "data.events")
        if not isinstance(events, list) or not events:
            raise _bad("payload has no events: data.events[] is missing or empty")
        if not all(isinstance(e, dict) for e in events):
            raise _bad("data.events[] must hold JSON objects")
        return events


GITHUB_IDENTITY = EventIdentity(id_fields=("guid",))

# Kept from the request, with GitHub's spelling: what an analyst needs to read the
# payload (event, hook, target). Signatures are left out.
_GITHUB_HEADERS = (
    "X-GitHub-Delivery",
    "X-GitHub-Event",
    "X-GitHub-Hook-ID",
    "X-GitHub-Hook-Installation-Target-Type",
    "X-GitHub-Hook-Installation-Target-ID",
    "User-Agent",
    "Content-Type",
)


def _header_token(headers: Headers, name: str) -> str:
    value = headers.get(name.lower())
    if not value:
        raise _bad(f"missing {name} header")
    if len(value) > MAX_HEADER_ID_CHARS or not value.isprintable() or not value.isascii():
        raise _bad(f"{name} header is not a short printable token")
    return value


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class GitHubExtractor(Extractor):
    """GitHub webhooks: one event per delivery, JSON or form-encoded
    (``payload=<json>``), identified by ``X-GitHub-Delivery``."""

    identity = GITHUB_IDENTITY
    content_types = (JSON, FORM)

    def extract(self, body: bytes, content_type: str, headers: Headers) -> list[dict[str, Any]]:
        guid = _header_token(headers, "X-GitHub-Delivery")
        event = _header_token(headers, "X-GitHub-Event")
        if content_type == FORM:
            body = self._form_payload(body)
        payload = parse_json(body, self.source)
        if not isinstance(payload, dict):
            raise _bad("a GitHub webhook payload must be a JSON object")
        installation = payload.get("installation")
        repository = payload.get("repository")
        action = payload.get("action")
        kept = {h: headers[h.lower()] for h in _GITHUB_HEADERS if h.lower() in headers}
        return [
            {
                "guid": guid,
                "event": event,
                "action": action if isinstance(action, str) else None,
                "installation_id": _int_or_none(
                    installation.get("id") if isinstance(installation, dict) else None
                ),
                "repository_id": _int_or_none(
                    repository.get("id") if isinstance(repository, dict) else None
                ),
                "request": {"headers": kept, "payload": payload},
            }
        ]

    @staticmethod
    def _form_payload(body: bytes) -> bytes:
        try:
            text = body.decode("ascii")
            fields = parse_qs(text, strict_parsing=True, max_num_fields=4)
        except (UnicodeDecodeError, ValueError):
            raise _bad("form body is not valid application/x-www-form-urlencoded") from None
        values = fields.get("payload")
        if not values or len(values) != 1:
            raise _bad("form body must carry exactly one 'payload' field")
        return values[0].encode("utf-8")


def jamf_event_id(event: dict[str, Any]) -> str | None:
    """Jamf Pro sends no event id (VENDORS.md §8). The id is a hash of the event
    name, its timestamp, the webhook's id and the whole ``event`` object (which holds
    the device identifiers). The event object is in it because the name, time and
    device are not enough: a Mac finishing two policies in the same second (Jamf
    sometimes sends seconds, not milliseconds) sends two ComputerPolicyFinished
    events that differ only in ``policyId``, and keyed by device they were one. The
    same event sent twice is the same bytes, and one id."""
    hook = event.get("webhook")
    if not isinstance(hook, dict):
        return None
    parts: dict[str, Any] = {
        "webhookEvent": hook.get("webhookEvent"),
        "eventTimestamp": hook.get("eventTimestamp"),
        "webhook.id": hook.get("id"),
        "event": event.get("event"),
    }
    canon = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)
    return "jamf:sha256:" + hashlib.sha256(canon).hexdigest()


JAMF_IDENTITY = EventIdentity(id_func=jamf_event_id, time_field="webhook.eventTimestamp")


class JamfExtractor(Extractor):
    """Jamf Pro webhooks: one event per POST, ``{"event": {...}, "webhook":
    {"webhookEvent", "eventTimestamp", "id", "name"}}``. JSON only: a webhook set to
    XML is refused with 415 so the misconfiguration is visible in Jamf's log."""

    identity = JAMF_IDENTITY

    def extract(self, body: bytes, content_type: str, headers: Headers) -> list[dict[str, Any]]:
        doc = parse_json(body, self.source)
        if not isinstance(doc, dict):
            raise _bad("a Jamf Pro webhook must be a JSON object")
        hook = doc.get("webhook")
        if not isinstance(hook, dict) or not isinstance(hook.get("webhookEvent"), str):
            raise _bad("payload has no event: webhook.webhookEvent is missing")
        return [doc]


class GenericExtractor(Extractor):
    """Any JSON sender: the events at ``events_path`` (or the body itself: one object
    or an array of objects), ids and times where the source declares them."""

    def __init__(
        self, events_path: str | None, id_fields: tuple[str, ...], time_field: str | None
    ) -> None:
        self.events_path = events_path
        self.identity = EventIdentity(id_fields=id_fields, time_field=time_field)

    def extract(self, body: bytes, content_type: str, headers: Headers) -> list[dict[str, Any]]:
        doc = parse_json(body, self.source)
        found = dig(doc, self.events_path) if self.events_path else doc
        events = found if isinstance(found, list) else [found]
        if not events or found is None:
            where = self.events_path or "the body"
            raise _bad(f"payload has no events at {where}")
        if not all(isinstance(e, dict) for e in events):
            raise _bad("every event must be a JSON object")
        return events


def build_extractor(spec: WebhookSourceSpec) -> Extractor:
    extractor: Extractor
    if spec.vendor == "okta_event_hook":
        extractor = OktaEventHookExtractor()
    elif spec.vendor == "github":
        extractor = GitHubExtractor()
    elif spec.vendor == "jamf":
        extractor = JamfExtractor()
    else:
        extractor = GenericExtractor(spec.events_path, tuple(spec.id_fields), spec.time_field)
    extractor.source = spec.name
    return extractor
