"""The masked secret type and URL redaction.

A ``Secret`` prints as ``'**********'`` everywhere (repr, str, f-strings, Dagster
metadata), so a secret can only leave through an explicit ``reveal()`` at the one
place that needs the raw value: an HTTP header or a signature.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "**********"

_SENSITIVE_PARAMS = re.compile(
    r"(token|secret|password|passwd|key|signature|sig|assertion|code|auth|credential)",
    re.IGNORECASE,
)


class Secret:
    """A value that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret holds a str")
        self._value = value

    def reveal(self) -> str:
        """The raw value: call only where it goes on the wire or into a MAC."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> object:
        raise TypeError("a Secret cannot be pickled")


def redact_url(url: str) -> str:
    """Mask userinfo and sensitive query parameters before a URL reaches a log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = [
            (k, MASK if _SENSITIVE_PARAMS.search(k) else v)
            for k, v in parse_qsl(query, keep_blank_values=True)
        ]
        query = urlencode(pairs, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
