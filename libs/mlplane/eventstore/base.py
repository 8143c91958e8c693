"""The event store port: append with optimistic concurrency, read a stream, read everything."""
from __future__ import annotations

import abc
from collections.abc import Sequence

from ..events import StoredEvent

ANY = None
"""`expected_version=ANY` appends whatever the stream's current version is."""
NO_STREAM = 0
"""`expected_version=NO_STREAM` appends only to a stream that has no events yet."""


class EventStore(abc.ABC):
    """Append-only log of events, ordered per stream (version) and globally (position).

    Guarantees every adapter honours (tests/contract/test_event_store.py):
    - `append` is atomic: all events of one call are stored, or none;
    - it raises `ConcurrencyError` when the stream is not at `expected_version`;
    - re-appending events whose ids are already stored returns them unchanged (idempotent retry);
    - positions increase with commit order, so a reader following `read_all` never skips an
      event that commits after it has read a later one.
    """

    @abc.abstractmethod
    async def append(
        self, stream_id: str, events: Sequence[StoredEvent], expected_version: int | None
    ) -> list[StoredEvent]:
        """Store `events` at the end of `stream_id`; return them with version and position."""

    @abc.abstractmethod
    async def read_stream(
        self, stream_id: str, from_version: int = 1, to_version: int | None = None
    ) -> list[StoredEvent]:
        """Events of one stream with from_version <= version <= to_version."""

    @abc.abstractmethod
    async def read_all(self, from_position: int = 1, limit: int = 1000) -> list[StoredEvent]:
        """Events of every stream with position >= from_position, in global order."""

    @abc.abstractmethod
    async def head_position(self) -> int:
        """The highest position assigned so far (it may still be committing)."""

    async def stream_version(self, stream_id: str) -> int:
        events = await self.read_stream(stream_id)
        return events[-1].version if events else 0

    async def close(self) -> None:
        """Release connections."""
