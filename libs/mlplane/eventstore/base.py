"""The event store port: append with optimistic concurrency, read a stream, read everything."""

from __future__ import annotations

import abc
from collections.abc import Sequence

from ..errors import Conflict
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
      a batch of which only some ids are stored is not a retry: it raises `Conflict`;
    - every event of a batch names the stream appended to, and no id appears twice in it;
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


def check_batch(stream_id: str, events: Sequence[StoredEvent]) -> None:
    """Refuse a batch that names another stream or repeats an event id (before any write)."""
    for ev in events:
        if ev.stream_id != stream_id:
            raise ValueError(f"event {ev.id} names stream {ev.stream_id!r}, not {stream_id!r}")
    if len({ev.id for ev in events}) != len(events):
        raise ValueError(f"a batch appended to {stream_id!r} repeats an event id")


def stored_batch(
    events: Sequence[StoredEvent], found: Sequence[StoredEvent]
) -> list[StoredEvent] | None:
    """The stored copies of `events` in their order, None if none is stored.

    Raises `Conflict` when only some are: their ids were used by another append.
    """
    if not found:
        return None
    by_id = {ev.id: ev for ev in found}
    if any(ev.id not in by_id for ev in events):
        taken = sorted(ev.id for ev in events if ev.id in by_id)
        raise Conflict(f"event ids already stored by another append: {', '.join(taken)}")
    return [by_id[ev.id] for ev in events]
