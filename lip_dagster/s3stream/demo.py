"""The embedded demo's vendor buckets: landing directories the simulator fills with
CloudTrail, GitHub audit-log streaming and Cloudflare Logpush objects, in the
vendors' own key layouts, housekeeping objects included.

    from lip_dagster.s3stream.demo import S3_DEMO_SOURCES, populate_landing
    counts = populate_landing(settings.home)        # before running the sources
    for source in S3_DEMO_SOURCES: run_source(source, None)

Each call adds new objects (new keys), so running the demo twice shows the sensor
and the sweep picking up only what is new.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lip_dagster.simulator import s3objects as sim

S3_DEMO_SOURCES = ("cloudtrail", "github_audit_stream", "cloudflare")


def landing_dir(home: Path, source: str) -> Path:
    """Where the embedded backend reads a source's vendor objects by default."""
    return home / "landing" / source


def populate_landing(
    home: Path,
    now: datetime | None = None,
    hours: int = 3,
    events_per_hour: int = 120,
    seed: int | None = None,
) -> dict[str, int]:
    """Write ``hours`` of vendor objects ending at ``now`` for the three S3 demo
    sources; returns how many event records each received."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    rng = random.Random(seed if seed is not None else int(now.timestamp()))
    counts = {s: 0 for s in S3_DEMO_SOURCES}
    ct_root = landing_dir(home, "cloudtrail")
    gh_root = landing_dir(home, "github_audit_stream")
    cf_root = landing_dir(home, "cloudflare")
    for h in range(hours, 0, -1):
        start = now - timedelta(hours=h)
        end = start + timedelta(hours=1)
        s = rng.getrandbits(32)
        # CloudTrail: one file per region per hour, one of them an organization trail
        ct_keys = []
        for i, region in enumerate(sim.REGIONS):
            recs = sim.cloudtrail_records(events_per_hour // 3, start, end, s + i, region=region)
            key = sim.cloudtrail_key(end, rng, region=region, org_id=sim.ORG_ID if i == 2 else None)
            sim.write_object(ct_root, key, sim.cloudtrail_file(recs))
            ct_keys.append(key)
            counts["cloudtrail"] += len(recs)
        digest = sim.cloudtrail_digest(end, ct_keys, "demo-cloudtrail")
        sim.write_object(
            ct_root,
            sim.cloudtrail_digest_key(end),
            sim.gzip_bytes(sim.ndjson([digest]).rstrip(b"\n")),
        )
        # GitHub: a few small files per hour
        for part in range(3):
            t0 = start + timedelta(minutes=20 * part)
            evs = sim.github_stream_events(
                events_per_hour // 3, t0, t0 + timedelta(minutes=20), s + part
            )
            sim.write_object(gh_root, sim.github_stream_key(t0, rng), sim.github_stream_file(evs))
            counts["github_audit_stream"] += len(evs)
        # Cloudflare Logpush (audit dataset), daily folders
        recs = sim.cloudflare_audit_events(events_per_hour, start, end, s)
        sim.write_object(cf_root, sim.logpush_key(start, end, rng), sim.logpush_file(recs))
        counts["cloudflare"] += len(recs)
    challenge = cf_root / "ownership-challenge.txt"
    if not challenge.exists():
        sim.write_object(cf_root, "ownership-challenge.txt", sim.ownership_challenge(rng))
    return counts
