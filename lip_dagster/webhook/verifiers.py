"""Who sent this delivery: one small class per way a vendor proves it.

Every verifier fails closed (``WebhookRejected(401)``), compares with
``hmac.compare_digest`` over bytes, takes its secret from the backend's
``SecretStore`` by name at the moment it compares (the store caches it with a TTL;
the verifier keeps no copy), and names headers in its reasons, never their values.

==================  =========================================================  =====
``auth.type``       what a request must carry                                  body?
==================  =========================================================  =====
okta_event_hook     the shared secret in ``header`` (default Authorization);   no
                    also answers Okta's one-time verification ``GET``
github              ``X-Hub-Signature-256: sha256=<HMAC-SHA256(raw body)>``;   yes
                    a request with only the SHA-1 ``X-Hub-Signature`` is refused
header              the secret in ``header``                                   no
header_map          every header of the JSON map held by the secret (Jamf      no
                    Pro "Header Authentication" takes exactly this map)
basic               ``Authorization: Basic``; the secret is ``user:password``  no
hmac                ``X-Lip-Timestamp: <unix seconds>`` and                    yes
                    ``X-Lip-Signature: sha256=<HMAC-SHA256("<ts>." + body)>``,
                    the timestamp within ``tolerance_seconds``; a signature
                    already seen inside the window is refused as a replay
==================  =========================================================  =====

A failed comparison may mean the secret was rotated: the verifier then reloads it
once (at most every ``REFRESH_INTERVAL_SECONDS``, so a flood of bad requests cannot
turn into a flood of Secrets Manager calls) and compares again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping

import orjson

from lip_dagster.errors import ConfigError, LipError, SecretNotFound
from lip_dagster.secrets import Secret
from lip_dagster.state.base import SecretStore
from lip_dagster.webhook.errors import WebhookRejected

__all__ = [
    "BasicAuthVerifier",
    "GitHubVerifier",
    "HeaderMapVerifier",
    "HeaderVerifier",
    "HmacTimestampVerifier",
    "OktaEventHookVerifier",
    "SecretRef",
    "Verifier",
    "build_verifier",
]

log = logging.getLogger(__name__)

Headers = Mapping[str, str]
"""Request headers, names in lower case (as ASGI gives them)."""

REFRESH_INTERVAL_SECONDS = 30.0
MAX_CHALLENGE_CHARS = 512


def _unauthorized(reason: str) -> WebhookRejected:
    return WebhookRejected(401, reason)


def _b(value: str) -> bytes:
    # Header values arrive as latin-1 text (ASGI); compare them as the bytes they were.
    return value.encode("latin-1", "replace")


class SecretRef:
    """A secret by name: read from the store when a comparison needs it, reloaded at
    most once per ``refresh_interval`` after a mismatch (a rotation)."""

    def __init__(
        self,
        store: SecretStore,
        name: str,
        *,
        refresh_interval: float = REFRESH_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.name = name
        self._interval = refresh_interval
        self._clock = clock
        self._last_refresh = -float("inf")
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SecretRef({self.name!r})"

    def get(self) -> Secret:
        try:
            return self.store.get(self.name)
        except SecretNotFound as err:
            # our misconfiguration, not the sender's: fail closed, and retryable
            raise WebhookRejected(
                503, f"the receiver is missing its secret {self.name!r}; try again later"
            ) from err
        except LipError as err:
            # the store failed (Secrets Manager throttled or unreachable, a secrets
            # file being rewritten): fail closed as for a missing secret, with a
            # Retry-After, instead of failing the request as a crash would (a 500 and a
            # traceback; on Lambda an errored invocation). The cause is logged here: the
            # answer names only the secret.
            log.warning("cannot read the secret %r: %s", self.name, err)
            raise WebhookRejected(
                503, f"the receiver cannot read its secret {self.name!r}; try again later"
            ) from err

    def refreshed(self) -> Secret | None:
        """The secret reloaded from the store, or None if a reload happened too
        recently to try again."""
        with self._lock:
            now = self._clock()
            if now - self._last_refresh < self._interval:
                return None
            self._last_refresh = now
        self.store.invalidate(self.name)
        return self.get()

    def check(self, matches: Callable[[Secret], bool]) -> bool:
        """``matches(secret)``, retried once with a reloaded secret on a mismatch."""
        if matches(self.get()):
            return True
        fresh = self.refreshed()
        return fresh is not None and matches(fresh)


class Verifier(ABC):
    """Authenticates one source's deliveries."""

    reads_body: bool = False
    """True if the proof covers the body: the receiver must read it first. False: the
    receiver refuses a bad request before reading its body."""

    def __init__(self, secret: SecretRef) -> None:
        self.secret = secret

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.secret!r})"

    @abstractmethod
    def verify(self, headers: Headers, body: bytes) -> None:
        """Return if the request is authentic; raise ``WebhookRejected(401)`` if not."""

    def challenge(self, headers: Headers) -> dict[str, str] | None:
        """The answer to a vendor's verification ``GET``, or None if this vendor has
        none (the receiver then answers 405)."""
        return None

    def release(self, headers: Headers) -> None:
        """The request ``verify`` accepted was then refused (a 503 asking for a
        retry, or a 4xx): nothing of it was stored, so the same request sent again
        must authenticate again. Only a verifier that remembers requests needs this."""
        return None


class HeaderVerifier(Verifier):
    """A shared secret sent as-is in one header."""

    def __init__(self, secret: SecretRef, header: str = "Authorization") -> None:
        super().__init__(secret)
        self.header = header
        self._key = header.lower()

    def verify(self, headers: Headers, body: bytes) -> None:
        got = headers.get(self._key)
        if got is None:
            raise _unauthorized(f"missing {self.header} header")
        given = _b(got)
        if not self.secret.check(lambda s: hmac.compare_digest(given, s.reveal().encode())):
            raise _unauthorized(f"{self.header} header does not match the shared secret")


class OktaEventHookVerifier(HeaderVerifier):
    """Okta Event Hooks: the configured header carries the raw shared secret on every
    request, and the one-time ``GET`` carrying ``X-Okta-Verification-Challenge`` must
    be answered with ``{"verification": <that value>}`` (VENDORS.md §1)."""

    def challenge(self, headers: Headers) -> dict[str, str] | None:
        self.verify(headers, b"")
        value = headers.get("x-okta-verification-challenge")
        if not value:
            raise WebhookRejected(400, "missing X-Okta-Verification-Challenge header")
        if len(value) > MAX_CHALLENGE_CHARS:
            raise WebhookRejected(400, "X-Okta-Verification-Challenge header is too long")
        return {"verification": value}


class GitHubVerifier(Verifier):
    """GitHub: ``X-Hub-Signature-256`` is ``sha256=`` + hex HMAC-SHA256 of the raw
    body keyed with the webhook secret. SHA-1 (``X-Hub-Signature``) is refused."""

    reads_body = True

    def verify(self, headers: Headers, body: bytes) -> None:
        got = headers.get("x-hub-signature-256")
        if got is None:
            if headers.get("x-hub-signature") is not None:
                raise _unauthorized(
                    "only the SHA-1 X-Hub-Signature was sent; X-Hub-Signature-256 is required"
                )
            raise _unauthorized("missing X-Hub-Signature-256 header")
        given = _b(got)
        if not given.startswith(b"sha256="):
            raise _unauthorized("X-Hub-Signature-256 must start with 'sha256='")

        def matches(s: Secret) -> bool:
            mac = hmac.new(s.reveal().encode(), body, hashlib.sha256).hexdigest()
            return hmac.compare_digest(given, b"sha256=" + mac.encode())

        if not self.secret.check(matches):
            raise _unauthorized("X-Hub-Signature-256 does not match the body")


class HeaderMapVerifier(Verifier):
    """Every header of a JSON object ``{"Header-Name": "value", ...}`` held by the
    secret, as Jamf Pro's "Header Authentication" sends them."""

    def verify(self, headers: Headers, body: bytes) -> None:
        def matches(s: Secret) -> bool:
            try:
                expected = orjson.loads(s.reveal())
            except orjson.JSONDecodeError:
                expected = None
            if not isinstance(expected, dict) or not expected:
                raise WebhookRejected(
                    503,
                    f"secret {self.secret.name!r} must hold a JSON object of header names "
                    "to values; the receiver cannot check deliveries",
                )
            ok = True
            for name, value in expected.items():
                got = headers.get(str(name).lower())
                # compare every header even after a mismatch: timing says nothing
                same = hmac.compare_digest(_b(got or ""), str(value).encode())
                ok = ok and got is not None and same
            return ok

        if not self.secret.check(matches):
            raise _unauthorized("the authentication headers do not match")


class BasicAuthVerifier(Verifier):
    """HTTP Basic: the secret holds ``username:password``."""

    def verify(self, headers: Headers, body: bytes) -> None:
        got = headers.get("authorization")
        if got is None:
            raise _unauthorized("missing Authorization header")
        scheme, _, token = got.partition(" ")
        if scheme.lower() != "basic" or not token:
            raise _unauthorized("Authorization header is not Basic")
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise _unauthorized("Authorization header is not valid base64") from None
        if not self.secret.check(lambda s: hmac.compare_digest(given, s.reveal().encode())):
            raise _unauthorized("Basic credentials do not match")


class HmacTimestampVerifier(Verifier):
    """A signed timestamp: ``sha256=`` + hex HMAC-SHA256 of ``"<ts>." + body``.

    A request outside ``tolerance_seconds`` of now is refused, so a captured request
    cannot be replayed later; inside the window the same signature is refused a
    second time (per receiver process; across processes the dedupe store still keeps
    the events from landing twice). A signature counts as used only once its request
    was stored: a delivery refused after ``verify`` (503, try again) is ``release``d,
    so the sender's retry of the very same request is not taken for a replay."""

    reads_body = True

    def __init__(
        self,
        secret: SecretRef,
        *,
        signature_header: str = "X-Lip-Signature",
        timestamp_header: str = "X-Lip-Timestamp",
        tolerance_seconds: int = 300,
        clock: Callable[[], float] = time.time,
        max_remembered: int = 100_000,
    ) -> None:
        super().__init__(secret)
        if tolerance_seconds < 1:
            raise ConfigError("hmac auth: tolerance_seconds must be at least 1")
        self.signature_header = signature_header
        self.timestamp_header = timestamp_header
        self.tolerance = tolerance_seconds
        self._clock = clock
        # signature -> when its timestamp leaves the window; a heap of the same, to
        # forget them in that order
        self._seen: dict[bytes, float] = {}
        self._expiry: list[tuple[float, bytes]] = []
        self._max = max_remembered
        self._lock = threading.Lock()

    def verify(self, headers: Headers, body: bytes) -> None:
        sig = headers.get(self.signature_header.lower())
        ts = headers.get(self.timestamp_header.lower())
        if sig is None or ts is None:
            raise _unauthorized(f"missing {self.signature_header} or {self.timestamp_header}")
        if not ts.isascii() or not ts.isdigit() or len(ts) > 12:
            raise _unauthorized(f"{self.timestamp_header} must be unix seconds")
        now = self._clock()
        if abs(now - int(ts)) > self.tolerance:
            raise _unauthorized(
                f"{self.timestamp_header} is more than {self.tolerance}s from now "
                "(a replayed request, or a clock out of sync)"
            )
        given = _b(sig)
        message = ts.encode() + b"." + body

        def matches(s: Secret) -> bool:
            mac = hmac.new(s.reveal().encode(), message, hashlib.sha256).hexdigest()
            return hmac.compare_digest(given, b"sha256=" + mac.encode())

        if not self.secret.check(matches):
            raise _unauthorized(f"{self.signature_header} does not match the body")
        self._remember(given, int(ts) + self.tolerance, now)

    def release(self, headers: Headers) -> None:
        sig = headers.get(self.signature_header.lower())
        if sig is not None:
            with self._lock:
                self._seen.pop(_b(sig), None)

    def _remember(self, sig: bytes, expires: float, now: float) -> None:
        """Remember ``sig`` until its timestamp leaves the window (``expires``): from
        then on the window refuses it. The memory is bounded, and full it refuses
        (503: nothing stored, the sender retries) rather than forget a signature whose
        timestamp is still accepted: an evicted one could be replayed."""
        with self._lock:
            while self._expiry and self._expiry[0][0] < now:
                gone, old = heapq.heappop(self._expiry)
                if self._seen.get(old) == gone:
                    del self._seen[old]
            if sig in self._seen:
                raise _unauthorized("this signature was already used: a replayed request")
            if len(self._seen) >= self._max:
                raise WebhookRejected(
                    503,
                    f"more than {self._max} signed requests within the replay window; "
                    "retry shortly",
                )
            self._seen[sig] = expires
            heapq.heappush(self._expiry, (expires, sig))


def build_verifier(auth: Mapping[str, str | int], secrets: SecretStore) -> Verifier:
    """The verifier an ``auth:`` block of a source declares."""
    kind = str(auth.get("type"))
    ref = SecretRef(secrets, str(auth["secret"]))
    header = str(auth.get("header", "Authorization"))
    if kind == "okta_event_hook":
        return OktaEventHookVerifier(ref, header)
    if kind == "github":
        return GitHubVerifier(ref)
    if kind == "header":
        return HeaderVerifier(ref, header)
    if kind == "header_map":
        return HeaderMapVerifier(ref)
    if kind == "basic":
        return BasicAuthVerifier(ref)
    if kind == "hmac":
        try:
            tolerance = int(auth.get("tolerance_seconds", 300))
        except ValueError:
            raise ConfigError("hmac auth: tolerance_seconds must be an integer") from None
        return HmacTimestampVerifier(
            ref,
            signature_header=str(auth.get("signature_header", "X-Lip-Signature")),
            timestamp_header=str(auth.get("timestamp_header", "X-Lip-Timestamp")),
            tolerance_seconds=tolerance,
        )
    raise ConfigError(f"unknown auth type {kind!r}")
