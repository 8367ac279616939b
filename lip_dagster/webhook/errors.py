"""Why the receiver refuses a request, and why a drain sets a message aside.

Both are ``LipError`` subclasses so callers keep catching one root; they live here
rather than in ``lip_dagster.errors`` because only the webhook pattern raises them.
Reasons are written for the vendor's delivery log and the on-call engineer alike:
they name headers, never their values.
"""

from __future__ import annotations

from lip_dagster.errors import LipError

__all__ = ["PoisonMessage", "WebhookRejected"]


class WebhookRejected(LipError):
    """A request answered with ``status`` (a 4xx, or 503 when nothing was stored) and
    ``reason`` in the body."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"HTTP {status}: {reason}")


class PoisonMessage(LipError):
    """A buffered message that no retry can land (not LIP's format, or damaged): it
    goes to quarantine with this reason instead of circling until the DLQ."""
