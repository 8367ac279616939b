"""Small auth helpers: a token cache that refreshes before expiry, a signed JWT
assertion builder (Okta private_key_jwt, Google service-account flow), and the
signing algorithm a private key calls for."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from lip_dagster.secrets import Secret

_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


@dataclass
class CachedToken:
    """An access token and when it stops being usable."""

    token: Secret
    expires_at: float


class TokenCache:
    """Caches one access token until ``refresh_margin`` seconds before it expires, so
    a long run never sends an expired token and a short one fetches it once."""

    def __init__(
        self,
        fetch: Callable[[], tuple[str, float]],
        refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetch = fetch
        self._margin = refresh_margin
        self._clock = clock
        self._cached: CachedToken | None = None
        self.fetches = 0

    def get(self) -> Secret:
        now = self._clock()
        if self._cached is None or self._cached.expires_at - self._margin <= now:
            token, lifetime = self._fetch()
            self.fetches += 1
            self._cached = CachedToken(Secret(token), now + float(lifetime))
        return self._cached.token

    def clear(self) -> None:
        self._cached = None


def signed_assertion(
    private_key_pem: Secret,
    claims: dict[str, Any],
    lifetime: int = 300,
    algorithm: str = "RS256",
    headers: dict[str, Any] | None = None,
) -> str:
    """A short-lived JWT signed with the client's private key; ``iat``/``exp``/``jti``
    are added here so no adapter gets them wrong."""
    now = int(time.time())
    body = {"iat": now, "exp": now + lifetime, "jti": uuid.uuid4().hex, **claims}
    return jwt.encode(body, private_key_pem.reveal(), algorithm=algorithm, headers=headers)


def key_algorithm(private_key_pem: Secret) -> str | None:
    """The JWS algorithm a PEM private key signs with: RS256 for an RSA key, ES256,
    ES384 or ES512 for an EC key on P-256, P-384 or P-521 (the ones Okta accepts,
    VENDORS.md §1). None for anything else (not PEM, encrypted, another curve), so the
    caller can name the secret; the parser's own message is dropped, as it may quote
    the key."""
    try:
        key = serialization.load_pem_private_key(private_key_pem.reveal().encode(), None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _EC_ALGORITHMS.get(key.curve.name)
    return None


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str | None, int | None] | None:
    """Scheme, host and port of ``url`` as RFC 3986 compares them: scheme and host
    case-insensitive, a default port the same as none. None for a URL carrying user
    information or a port that is not a number: no link of a vendor's has either."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    scheme = parts.scheme.lower()
    return scheme, parts.hostname, port or _DEFAULT_PORTS.get(scheme)


def canonical_base_url(url: str) -> str:
    """``url`` with its scheme and host in lower case, without the scheme's default
    port or a trailing ``/``: how a vendor spells its own URLs. A base URL written
    ``https://Acme.okta.com:443`` names the same org, but a URL LIP builds from it
    and the vendor compares as text (Okta's token endpoint as the JWT ``aud``) must
    be spelled the vendor's way. A URL ``_origin`` refuses (credentials in it, a
    port that is no number) is left as written, for the request to fail on."""
    from urllib.parse import urlsplit, urlunsplit

    stripped = url.rstrip("/")
    origin = _origin(stripped)
    if origin is None:
        return stripped
    scheme, host, port = origin
    netloc = f"[{host}]" if host and ":" in host else host or ""  # IPv6 keeps brackets
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc = f"{netloc}:{port}"
    parts = urlsplit(stripped)
    return urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment))


def same_origin(url: str, base_url: str) -> bool:
    """A vendor-supplied link may only point back at the vendor we configured: a
    ``next`` link to another host would carry our credential to it. Origins compare
    as RFC 3986 says (``https://Acme.okta.com:443`` is ``https://acme.okta.com``):
    the vendor spells its own host in its links, and a base URL written another way
    must not make every link look foreign, which stopped the source at its first
    page."""
    a, b = _origin(url), _origin(base_url)
    return a is not None and a == b
