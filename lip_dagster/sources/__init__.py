"""Vendor adapters, registered by name for the YAML ``adapter:`` field."""

from __future__ import annotations

from typing import Any

from lip_dagster.errors import VendorError
from lip_dagster.polling.base import BasePoller

POLLERS: dict[str, str] = {
    "okta": "lip_dagster.sources.okta:OktaPoller",
    "onepassword": "lip_dagster.sources.onepassword:OnePasswordPoller",
    "slack": "lip_dagster.sources.slack:SlackPoller",
    "google_workspace": "lip_dagster.sources.google_workspace:GoogleWorkspacePoller",
}


def poller_class(adapter: str) -> type[BasePoller]:
    """Import an adapter lazily so one vendor's import cost is not paid by all."""
    import importlib

    try:
        target = POLLERS[adapter]
    except KeyError:
        raise KeyError(
            f"unknown polling adapter {adapter!r}; known: {', '.join(sorted(POLLERS))}"
        ) from None
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not issubclass(cls, BasePoller):
        raise TypeError(f"{target} is not a BasePoller")
    return cls


def page_events(
    source: str, endpoint: str, status: int, value: Any, where: str
) -> list[dict[str, Any]]:
    """The events of a page, found at ``where`` in the vendor's answer: a JSON array
    of objects (absent or null: no events). Anything else is a ``VendorError`` naming
    source, endpoint and status, raised before any of the page is handed on: a page
    the adapter cannot read must fail its endpoint (the others are still polled), not
    crash the run with an ``AttributeError`` or be reported as a lake failure."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise VendorError(
            source, endpoint, status, f"{where} is a JSON {_json_type(value)}, not an array"
        )
    for i, event in enumerate(value):
        if not isinstance(event, dict):
            raise VendorError(
                source,
                endpoint,
                status,
                f"{where}[{i}] is a JSON {_json_type(event)}, not an object; no event of "
                "this page was landed",
            )
    return value


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages an operator reads."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"
