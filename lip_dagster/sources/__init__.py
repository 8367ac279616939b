"""Vendor adapters, registered by name for the YAML ``adapter:`` field."""

from __future__ import annotations

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
