"""The declared sources, read from the loaded Dagster definitions: the one place that
knows how a source's asset says what it is.

A source is an asset tagged ``lip/pattern`` (``polling``, ``webhook`` or ``s3``);
its name is the asset key's last part. The secrets it reads are listed in the
asset's metadata ``lip/secrets`` (a list of secret names), so provisioning can
create their placeholders. A lake-layout producer's asset says where its objects are
in ``lip/producer_objects`` (the names of the variables that locate them), so the
content checks read them there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lip_dagster.errors import LipError
from lip_dagster.lake.layout import validate_source_name
from lip_dagster.s3stream.objects import ObjectLocation

__all__ = [
    "PATTERN_TAG",
    "PRODUCER_METADATA",
    "SECRETS_METADATA",
    "DeclaredSource",
    "buffered",
    "declared_sources",
    "select",
]

PATTERN_TAG = "lip/pattern"
SECRETS_METADATA = "lip/secrets"
PRODUCER_METADATA = "lip/producer_objects"


@dataclass(frozen=True)
class DeclaredSource:
    name: str
    pattern: str
    secrets: tuple[str, ...] = ()
    producer: ObjectLocation | None = None  # a lake-layout producer's objects

    @property
    def buffered(self) -> bool:
        return buffered(self.pattern)


def buffered(pattern: str) -> bool:
    """Which sources wait in a buffer queue with a dead-letter queue: webhook ones."""
    return pattern == "webhook"


def _secret_names(value: Any) -> tuple[str, ...]:
    raw = getattr(value, "value", value)
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.split(",")]
    return tuple(sorted({str(v) for v in raw if str(v)}))


def producer_metadata(location: ObjectLocation) -> dict[str, str | None]:
    """How a lake-layout source's asset records where its producer writes."""
    return {
        "bucket_env": location.bucket_env,
        "prefix_env": location.prefix_env,
        "prefix_default": location.prefix_default,
        "landing_dir_env": location.landing_dir_env,
    }


def _producer(name: str, value: Any) -> ObjectLocation | None:
    raw = getattr(value, "value", value)
    if not isinstance(raw, dict):
        return None
    return ObjectLocation(
        source=name,
        bucket_env=raw.get("bucket_env"),
        prefix_env=raw.get("prefix_env"),
        prefix_default=raw.get("prefix_default") or "",
        landing_dir_env=raw.get("landing_dir_env"),
    )


def declared_sources(definitions: Any = None) -> list[DeclaredSource]:
    """Every source in the definitions (loaded from ``defs/`` if not given), by name."""
    if definitions is None:
        from lip_dagster.definitions import defs

        definitions = defs()
    graph = definitions.resolve_asset_graph()
    found: list[DeclaredSource] = []
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        pattern = node.tags.get(PATTERN_TAG)
        if not pattern:
            continue
        name = validate_source_name(key.path[-1])
        found.append(
            DeclaredSource(
                name,
                pattern,
                _secret_names(node.metadata.get(SECRETS_METADATA)),
                _producer(name, node.metadata.get(PRODUCER_METADATA)),
            )
        )
    return sorted(found, key=lambda s: s.name)


def select(sources: Sequence[DeclaredSource], names: Iterable[str] | None) -> list[DeclaredSource]:
    """The sources named (all when ``names`` is empty); an unknown name is an error
    that lists the known ones."""
    wanted = list(dict.fromkeys(names or []))
    if not wanted:
        return list(sources)
    by_name = {s.name: s for s in sources}
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        known = ", ".join(sorted(by_name)) or "none"
        raise LipError(f"no source named {', '.join(map(repr, unknown))}; declared: {known}")
    return [by_name[n] for n in wanted]
