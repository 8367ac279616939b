"""The wall clock for tests whose code under test reads it too."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


def now_with_hour_left(seconds: float = 60) -> datetime:
    """Now, at least ``seconds`` before the hour ends: waits for the next hour first
    when fewer remain. For a test that takes its hour from the clock while the
    collection it runs takes its own: both then see the same hour, at any time of day,
    as long as the test takes less than ``seconds``."""
    now = datetime.now(UTC)
    next_hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    if (next_hour - now).total_seconds() < seconds:
        time.sleep((next_hour - now).total_seconds() + 0.01)
        now = datetime.now(UTC)
    return now
