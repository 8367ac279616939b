"""The polling pattern: one loop (``BasePoller``), small adapters."""

from lip_dagster.polling.base import (
    Backpressure,
    BackpressurePolicy,
    BasePoller,
    PollerConfig,
    PollReport,
    PollResult,
)
from lip_dagster.polling.http import HttpClient, RetryPolicy

__all__ = [
    "Backpressure",
    "BackpressurePolicy",
    "BasePoller",
    "HttpClient",
    "PollReport",
    "PollResult",
    "PollerConfig",
    "RetryPolicy",
]
