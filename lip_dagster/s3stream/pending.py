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
- **failed**: the keys the run could not land are requested again under a new run key
  (a run key Dagster has seen is skipped), up to ``max_attempts`` runs in all; after
  that they go to quarantine with the reason and are acknowledged, so a source never
  retries forever and nothing is dropped unseen.
- **absent** (no run carries the batch's tag, e.g. it was deleted): after
  ``absent_after`` seconds, handled like a failed run.

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

RunState = Literal["landed", "running", "failed", "absent"]
DEFAULT_MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class RunOutcome:
    """How the runs of one batch ended. ``not_read``: digests of the keys the last
    failed run could not read, with their error code; None means every key (the run
    failed before it could say, e.g. the lake refused a put)."""

    state: RunState
    run_ids: tuple[str, ...] = ()
    not_read: Mapping[str, str] | None = None


def batch_id(source: str, versions: Mapping[str, str], attempt: int = 1, base: str = "") -> str:
    """The run key (and ``lip/batch`` tag) of a batch: a function of its keys and
    of what announced them (a notification's message id, or the listed
    ``LastModified``), so a re-evaluated tick asks for the same run while a key
    announced again (written again) gets a new one. Retries keep the first
    attempt's digest and add the attempt number."""
    if not base:
        text = "\n".join(sorted(f"{k}\x00{v}" for k, v in versions.items()))
        base = f"{source}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"
    return base if attempt == 1 else f"{base}:{attempt}"


@dataclass
class Batch:
    """Objects requested in one run, waiting for it to land them."""

    id: str
    keys: list[str]
    attempt: int = 1
    requested_at: float = 0.0
    runs: list[str] = field(default_factory=list)  # failed runs of earlier attempts

    @property
    def base(self) -> str:
        return self.id if self.attempt == 1 else self.id.rsplit(":", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "keys": self.keys,
            "attempt": self.attempt,
            "at": self.requested_at,
            "runs": self.runs,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Batch:
        return cls(
            id=str(d["id"]),
            keys=[str(k) for k in d["keys"]],
            attempt=int(d.get("attempt", 1)),
            requested_at=float(d.get("at", 0.0)),
            runs=[str(r) for r in d.get("runs") or []],
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


@dataclass
class Settled:
    """What one tick decided about the batches it was waiting for."""

    landed: list[Batch] = field(default_factory=list)
    retry: list[Batch] = field(default_factory=list)
    given_up: list[GiveUp] = field(default_factory=list)
    waiting: int = 0


@dataclass
class SensorState:
    """The arrival sensor's cursor.

    ``listing``: listing only, everything found so far (what discovery skips).
    ``objects``: listing only, keys found and not yet committed to the stored listing
    state, with their ``LastModified``. ``messages``: notifications not deleted yet,
    by message id. ``batches``: requested and not known to have landed."""

    listing: ListingState | None = None
    objects: dict[str, float] = field(default_factory=dict)
    messages: dict[str, Message] = field(default_factory=dict)
    batches: list[Batch] = field(default_factory=list)

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
            runs = batch.runs + list(outcome.run_ids)
            codes = _codes(batch.keys, outcome.not_read)
            if not codes:  # the run read every object, then failed: they landed
                out.landed.append(batch)
                continue
            if batch.attempt >= max_attempts:
                for key, code in codes.items():
                    reason = _give_up_reason(describe(key), code, runs, how_to_rerun)
                    out.given_up.append(GiveUp(key, reason, code, runs))
                continue
            attempt = batch.attempt + 1
            retry = Batch(
                id=batch_id("", {}, attempt, base=batch.base),
                keys=list(codes),
                attempt=attempt,
                requested_at=now,
                runs=runs,
            )
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
            return state
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError, KeyError):
            log.warning("ignoring an unreadable sensor cursor")
            return cls()


def _codes(keys: Iterable[str], not_read: Mapping[str, str] | None) -> dict[str, str | None]:
    """The keys a failed run did not land, with the error code it gave (if any)."""
    if not_read is None:
        return {k: None for k in keys}
    return {k: not_read[key_digest(k)] for k in keys if key_digest(k) in not_read}


def _give_up_reason(where: str, code: str | None, runs: list[str], how_to_rerun: str) -> str:
    what = read_error_hint(code) if code else "the runs failed before it landed"
    tried = f"{len(runs)} run(s) ({', '.join(runs[-5:])})" if runs else "any run (none was found)"
    return (
        f"{where} was not landed by {tried}: {what}. The vendor object is unchanged; "
        f"see the runs' errors, fix the cause, then {how_to_rerun}"
    )
