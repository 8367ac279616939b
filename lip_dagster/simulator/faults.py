"""Fault injection: random (seeded) throttling, server errors and slow responses, plus
scripted per-vendor status sequences.

Random faults exercise retry/backoff paths the way a flaky vendor does; the seed makes a
failing run reproducible. Scripts (``VendorSimulator.script``) give tests an exact,
order-dependent sequence (for example ``[429, 500, 200]``) so a retry assertion does not
depend on probability.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

SLOW = "slow"  # script entry: delay by Faults.slow_seconds, then answer normally


@dataclass
class Faults:
    """Mutable fault rates, read on every request, so a test can change them mid-run.

    ``rate_429``: share of requests throttled with the vendor's own 429 shape and headers
    (Google answers overload with 503, as it documents). ``rate_5xx``: share answered
    500/502/503. ``slow_rate``/``slow_seconds``: share delayed and by how long. ``seed``:
    the random sequence; changing it restarts the sequence. ``vendors``: limit random
    faults to these vendors (empty means all); scripts always apply.
    """

    rate_429: float = 0.0
    rate_5xx: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 2.0
    seed: int = 0
    vendors: tuple[str, ...] = ()


class Decision(NamedTuple):
    """What to do with one request: ``status`` None means answer normally. ``throttled``
    marks a random rate-limit fault, which each vendor answers its own way (Google with
    503); a scripted status is returned verbatim."""

    status: int | None
    delay: float
    throttled: bool = False


class FaultInjector:
    """Decides each request's fate; thread-safe because tests script from their thread."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[int | str]] = {}
        self._rng = random.Random(faults.seed)
        self._rng_seed = faults.seed

    def script(self, vendor: str, statuses: Iterable[int | str]) -> None:
        items = list(statuses)
        for s in items:
            if s != SLOW and not (isinstance(s, int) and 100 <= s <= 599):
                raise ValueError(f"script entries are HTTP statuses or {SLOW!r}, not {s!r}")
        with self._lock:
            self._scripts.setdefault(vendor, deque()).extend(items)

    def clear_scripts(self, vendor: str | None = None) -> None:
        with self._lock:
            if vendor is None:
                self._scripts.clear()
            else:
                self._scripts.pop(vendor, None)

    def pending(self, vendor: str) -> int:
        with self._lock:
            return len(self._scripts.get(vendor, ()))

    def decide(self, vendor: str) -> Decision:
        with self._lock:
            queue = self._scripts.get(vendor)
            if queue:
                item = queue.popleft()
                if item == SLOW:
                    return Decision(None, self.faults.slow_seconds)
                assert isinstance(item, int)
                return Decision(None if 200 <= item < 300 else item, 0.0)
            f = self.faults
            if f.seed != self._rng_seed:
                self._rng = random.Random(f.seed)
                self._rng_seed = f.seed
            # always draw three numbers so one request's decision never shifts the
            # sequence of the next when rates change
            u_slow, u_fault, u_code = self._rng.random(), self._rng.random(), self._rng.random()
            if f.vendors and vendor not in f.vendors:
                return Decision(None, 0.0)
            delay = f.slow_seconds if u_slow < f.slow_rate else 0.0
            if u_fault < f.rate_429:
                return Decision(429, delay, throttled=True)
            if u_fault < f.rate_429 + f.rate_5xx:
                return Decision((500, 502, 503)[min(int(u_code * 3), 2)], delay)
            return Decision(None, delay)
