"""State stores: cursor, dedupe (the commit log), buffer, secrets."""

from lip_dagster.state.base import (
    Buffer,
    BufferDepth,
    BufferMessage,
    CursorRecord,
    CursorStore,
    DedupeKey,
    DedupeStore,
    IdState,
    SecretStore,
)

__all__ = [
    "Buffer",
    "BufferDepth",
    "BufferMessage",
    "CursorRecord",
    "CursorStore",
    "DedupeKey",
    "DedupeStore",
    "IdState",
    "SecretStore",
]
