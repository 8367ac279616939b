"""Simulator settings. Defaults keep tests unthrottled and small, and still show every
vendor quirk (history to page through, live events trickling in)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lip_dagster.simulator.faults import Faults


@dataclass
class SimConfig:
    """How the simulator is bound, seeded and populated.

    ``history_hours`` x ``events_per_hour`` events are generated per endpoint at start,
    spread over the last ``history_hours``. ``live_rate_per_s`` events per endpoint
    appear as wall-clock time passes (0 freezes the data, which no-loss tests want).
    ``okta_rate_limit_per_min`` sizes the real per-minute bucket behind Okta's
    X-Rate-Limit-* headers. ``token_ttl_s`` is the lifetime of issued OAuth access
    tokens (Okta reports it as ``expires_in``, Google as one second less).
    ``okta_key_type`` is the kind of key registered for the Okta service app: ``rsa``
    (RS256/384/512) or ``ec`` (P-256, ES256); Okta accepts both (VENDORS.md §1).
    ``retention_hours`` bounds what the simulator keeps, as a vendor's retention does
    (None: every event it ever served, which ground-truth tests compare the lake to;
    the demo keeps a window, so a demo left running does not grow without end).
    """

    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 0
    history_hours: float = 3
    events_per_hour: int = 200
    live_rate_per_s: float = 0.5
    faults: Faults = field(default_factory=Faults)
    okta_rate_limit_per_min: int = 600
    token_ttl_s: int = 3600
    okta_key_type: Literal["rsa", "ec"] = "rsa"
    request_log_size: int = 10_000
    retention_hours: float | None = None
