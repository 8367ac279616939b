"""What the arrival sensor waits for before it acknowledges anything.

A run request is not a landing: the run can fail after its retries (the lake bucket
refusing puts for ten minutes, one object it may not read). So the sensor keeps, in
its own cursor, every batch of objects it requested until it has seen how the batch's
run ended, and only then acknowledges the objects: deletes the notifications that
announced them, or records them in the stored listing state.

- **landed** (a run of the batch succeeded): acknowledged.
- **running** (queued, started, or failed and about to be retried by Dagster): wait;
  notifications stay hidden (their visibility is extended), so they neither come back
  nor count towards the queue's redrive limit.
- **failed, naming objects** (``lip/not_read`` lists the keys it could not read):
  those keys are requested again under a new run key (a run key Dagster has seen is
  skipped), up to ``max_attempts`` runs that named them; after that they go to
  quarantine with the reason and are acknowledged, so a source never retries one
  object forever and nothing is dropped unseen.
- **failed without naming objects** (the run died before it could say: the lake or
  the state store refused writes, the run worker was lost): that failure is not about
  any object, so it uses up no object's attempts and quarantines nothing (an outage
  of the lake must not send every waiting object to quarantine). The whole batch is
  requested again at once, then after a backoff that doubles up to
  ``MAX_BACKOFF_SECONDS``; each failed run is the source's incident meanwhile.
- **absent** (no run carries the batch's tag, e.g. it was deleted): after
  ``absent_after`` seconds, handled like a run that failed without naming objects.

Nothing here knows Dagster: ``components/s3.py`` reads run outcomes from the instance
and turns batches into run requests.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from lip_dagster.s3stream.arrivals import ListingState, key_digest
from lip_dagster.s3stream.objects import read_error_hint

log = logging.getLogger(__name__)

MAX_RUNS_KEPT = 10
"""Run ids a batch keeps for its give-up reason: a batch retried through a long
outage must not grow the cursor one run id at a time."""
ERROR_DETAIL_CHARS = 200

RunState = Literal["landed", "running", "failed", "absent"]
DEFAULT_MAX_ATTEMPTS = 3
FIRST_BACKOFF_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 1800.0
"""The longest wait between two runs of a batch whose runs keep failing without
naming an object (an outage): bounded, so the batch lands within half an hour of
the outage ending."""


@dataclass(frozen=True)
class RunOutcome:
    """How the runs of one batch ended. ``not_read``: digests of the keys the last
    failed run could not read, with their error code; None means every key (the run
    failed before it could say, e.g. the lake refused a put)."""

    state: RunState
    run_ids: tuple[str, ...] = ()
    not_read: Mapping[str, str] | None = None


def backoff(stalls: int) -> float:
    """Seconds to wait before the next run after ``stalls`` runs in a row failed
    without naming an object: 0 after the first (a short blip), then 60 s doubling up
    to ``MAX_BACKOFF_SECONDS``."""
    if stalls <= 1:
        return 0.0
    return min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2.0 ** min(stalls - 2, 16))


def batch_id(source: str, versions: Mapping[str, str], attempt: int = 1, base: str = "") -> str:
    """The run key (and ``lip/batch`` tag) of a batch: a function of its keys and
    of what announced them (a notification's message id, or the listed
    ``LastModified``), so a re-evaluated tick asks for the same run while a key
    announced again (written again) gets a new one. Retries keep the first
    run's digest and add the run number."""
    if not base:
        text = "\n".join(sorted(f"{k}\x00{v}" for k, v in versions.items()))
        base = f"{source}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"
    return base if attempt == 1 else f"{base}:{attempt}"


@dataclass
class Batch:
    """Objects requested in one run, waiting for it to land them.

    ``attempt``: runs that named these keys as not read, plus one (what
    ``max_attempts`` bounds). ``run_no``: runs requested for the batch in all (its
    id's suffix). ``stalls``: runs in a row that failed without naming an object.
    ``due``: set while the next run waits out its backoff (not requested yet)."""

    id: str
    keys: list[str]
    attempt: int = 1
    requested_at: float = 0.0
    runs: list[str] = field(default_factory=list)  # failed runs of earlier attempts
    run_no: int = 0
    stalls: int = 0
    due: float | None = None
    base_id: str = ""

    def __post_init__(self) -> None:
        if self.run_no < 1:
            self.run_no = self.attempt
        if not self.base_id:
            self.base_id = self.id if self.run_no == 1 else self.id.rsplit(":", 1)[0]

    @property
    def base(self) -> str:
        return self.base_id

    def next_run(
        self,
        now: float,
        runs: list[str],
        keys: list[str],
        *,
        attempt: int,
        stalls: int = 0,
        due: float | None = None,
    ) -> Batch:
        """The batch's next run (a new run key: Dagster skips one it has seen)."""
        n = self.run_no + 1
        return Batch(
            id=batch_id("", {}, n, base=self.base),
            keys=keys,
            attempt=attempt,
            requested_at=now,
            runs=runs,
            run_no=n,
            stalls=stalls,
            due=due,
            base_id=self.base,
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "keys": self.keys,
            "attempt": self.attempt,
            "at": self.requested_at,
            "runs": self.runs,
            "n": self.run_no,
            "base": self.base_id,
        }
        if self.stalls:
            d["stalls"] = self.stalls
        if self.due is not None:
            d["due"] = self.due
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Batch:
        due = d.get("due")
        return cls(
            id=str(d["id"]),
            keys=[str(k) for k in d["keys"]],
            attempt=int(d.get("attempt", 1)),
            requested_at=float(d.get("at", 0.0)),
            runs=[str(r) for r in d.get("runs") or []],
            run_no=int(d.get("n", 0)),
            stalls=int(d.get("stalls", 0)),
            due=None if due is None else float(due),
            base_id=str(d.get("base") or ""),
        )


@dataclass
class Message:
    """A notification kept hidden until none of its keys waits for a run."""

    receipt: str
    keys: list[str]
    hidden_until: float

    def to_dict(self) -> dict[str, Any]:
        return {"r": self.receipt, "k": self.keys, "u": self.hidden_until}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Message:
        return cls(str(d["r"]), [str(k) for k in d.get("k") or []], float(d.get("u", 0.0)))


@dataclass
class GiveUp:
    """A key no run could land: quarantined with ``reason``, then acknowledged."""

    key: str
    reason: str
    code: str | None
    runs: list[str]
    batch: str = ""  # the batch's first run key: with the key, names this give-up


@dataclass
class Settled:
    """What one tick decided about the batches it was waiting for."""

    landed: list[Batch] = field(default_factory=list)
    retry: list[Batch] = field(default_factory=list)
    given_up: list[GiveUp] = field(default_factory=list)
    waiting: int = 0
    backing_off: list[Batch] = field(default_factory=list)  # runs failed, none named a key


@dataclass
class SensorState:
    """The arrival sensor's cursor.

    ``listing``: listing only, everything found so far (what discovery skips).
    ``objects``: listing only, keys found and not yet committed to the stored listing
    state, with their ``LastModified``. ``messages``: notifications not deleted yet,
    by message id. ``batches``: requested and not known to have landed.
    ``unchecked``: lake-layout only, hours that got objects no content check was
    requested for yet, with when the first came; ``checked``: when the last content
    check of an hour was requested (kept while it holds back the next)."""

    listing: ListingState | None = None
    objects: dict[str, float] = field(default_factory=dict)
    messages: dict[str, Message] = field(default_factory=dict)
    batches: list[Batch] = field(default_factory=list)
    unchecked: dict[str, float] = field(default_factory=dict)
    checked: dict[str, float] = field(default_factory=dict)

    def pending_keys(self) -> set[str]:
        return {k for b in self.batches for k in b.keys}

    def settle(
        self,
        outcomes: Mapping[str, RunOutcome],
        now: float,
        *,
        max_attempts: int,
        absent_after: float,
        describe: Callable[[str], str],
        how_to_rerun: str,
    ) -> Settled:
        """Apply how each batch's runs ended: keep waiting, drop (landed), request
        the unlanded keys again, or give them up to quarantine."""
        out = Settled()
        kept: list[Batch] = []
        for batch in self.batches:
            if batch.due is not None:  # backing off: no run of this number yet
                if now >= batch.due:
                    batch.due, batch.requested_at = None, now
                    out.retry.append(batch)
                else:
                    out.waiting += 1
                    out.backing_off.append(batch)
                kept.append(batch)
                continue
            outcome = outcomes.get(batch.id, RunOutcome("absent"))
            if outcome.state == "landed":
                out.landed.append(batch)
                continue
            if outcome.state == "running" or (
                outcome.state == "absent" and now - batch.requested_at < absent_after
            ):
                out.waiting += 1
                kept.append(batch)
                continue
            runs = (batch.runs + list(outcome.run_ids))[-MAX_RUNS_KEPT:]
            if outcome.not_read is None:  # not about any one object: no attempt used
                stalls = batch.stalls + 1
                wait = backoff(stalls)
                retry = batch.next_run(
                    now,
                    runs,
                    list(batch.keys),
                    attempt=batch.attempt,
                    stalls=stalls,
                    due=now + wait if wait > 0 else None,
                )
                (out.retry if retry.due is None else out.backing_off).append(retry)
                if retry.due is not None:
                    out.waiting += 1
                kept.append(retry)
                continue
            codes = _codes(batch.keys, outcome.not_read)
            if not codes:  # the run read every object, then failed: they landed
                out.landed.append(batch)
                continue
            if batch.attempt >= max_attempts:
                for key, code in codes.items():
                    reason = _give_up_reason(describe(key), code, runs, how_to_rerun)
                    out.given_up.append(GiveUp(key, reason, code, runs, batch.base))
                continue
            retry = batch.next_run(now, runs, list(codes), attempt=batch.attempt + 1)
            out.retry.append(retry)
            kept.append(retry)
        self.batches = kept
        return out

    # ------------------------------------------------------------------- JSON
    def dumps(self) -> str:
        return orjson.dumps(
            {
                "v": 3,
                "listing": orjson.loads(self.listing.to_json()) if self.listing else None,
                "objects": self.objects,
                "messages": {m: msg.to_dict() for m, msg in self.messages.items()},
                "batches": [b.to_dict() for b in self.batches],
                "unchecked": self.unchecked,
                "checked": self.checked,
            }
        ).decode()

    @classmethod
    def loads(cls, raw: str | None, settle_seconds: float) -> SensorState:
        """Read a cursor back with the source's own ``settle_seconds`` (the listing
        state prunes handled keys by it). A cursor from before batches were tracked
        keeps its listing as what was found; its notifications are not deleted: they
        come back after their visibility timeout and are requested again, and the
        writer lands nothing twice."""
        if not raw:
            return cls()
        try:
            d = orjson.loads(raw)
            listing = d.get("listing")
            state = cls(
                listing=(
                    ListingState.from_json(orjson.dumps(listing).decode(), settle_seconds)
                    if listing
                    else None
                )
            )
            if d.get("v") != 3:
                if d.get("receipts"):
                    log.warning(
                        "older sensor cursor: %d notifications are left to come back and "
                        "be handled again",
                        len(d["receipts"]),
                    )
                return state
            state.objects = {str(k): float(t) for k, t in (d.get("objects") or {}).items()}
            state.messages = {
                str(m): Message.from_dict(v) for m, v in (d.get("messages") or {}).items()
            }
            state.batches = [Batch.from_dict(b) for b in d.get("batches") or []]
            state.unchecked = {str(h): float(t) for h, t in (d.get("unchecked") or {}).items()}
            state.checked = {str(h): float(t) for h, t in (d.get("checked") or {}).items()}
            return state
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError, KeyError):
            log.warning("ignoring an unreadable sensor cursor")
            return cls()


def _codes(keys: Iterable[str], not_read: Mapping[str, str]) -> dict[str, str]:
    """The keys a failed run named as not read, with the error it gave."""
    return {k: not_read[key_digest(k)] for k in keys if key_digest(k) in not_read}


def _give_up_reason(where: str, error: str | None, runs: list[str], how_to_rerun: str) -> str:
    """``error``: ``<code>: <what the run saw>`` (the ``lip/not_read`` value), or a
    bare code from a run of an older version."""
    code, _, detail = (error or "").partition(": ")
    what = read_error_hint(code or None)
    if detail:
        what += f" ({detail[:ERROR_DETAIL_CHARS]})"
    tried = f"{len(runs)} run(s) ({', '.join(runs[-5:])})" if runs else "any run (none was found)"
    return (
        f"{where} was not landed by {tried}: {what}. The vendor object is unchanged; "
        f"see the runs' errors, fix the cause, then {how_to_rerun}"
    )
