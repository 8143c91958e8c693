"""MongoDB event store (motor), within what both MongoDB and FerretDB v1 support.

No multi-document transactions are used. One append is one *commit* document holding all
its events, so an append is atomic by construction:

    {_id: first position, end: last position, stream_id, first: first version,
     last: last version, ids: [...], events: [{id, type, tv, time, data, meta}, ...]}

- Optimistic concurrency: a unique index on (stream_id, first). Versions are contiguous, so
  two writers that both saw version N both try to write first = N + 1; one of them loses.
- Global positions: reserved with `$inc` on a counter before the insert. Two writers can
  therefore commit out of position order. A reader that meets a hole in the positions stops
  there and tries again later; a writer whose insert fails fills its reserved positions with a
  `$gap` commit at once, and a hole left by a writer that died between reserving and inserting
  is skipped after `gap_timeout` seconds. So a reader following `read_all` never skips an event
  that is merely committing late.
"""
from __future__ import annotations

import time as clock
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from ..errors import ConcurrencyError
from ..events import StoredEvent
from .base import EventStore

GAP = "$gap"


def _doc(ev: StoredEvent) -> dict[str, Any]:
    return {
        "id": ev.id,
        "type": ev.type,
        "tv": ev.type_version,
        "time": ev.time.isoformat(),
        "data": ev.data,
        "meta": ev.meta,
    }


def _events(commit: dict[str, Any]) -> list[StoredEvent]:
    return [
        StoredEvent(
            id=e["id"],
            stream_id=commit["stream_id"],
            type=e["type"],
            data=e["data"],
            type_version=e["tv"],
            version=commit["first"] + i,
            position=commit["_id"] + i,
            time=datetime.fromisoformat(e["time"]),
            meta=e["meta"],
        )
        for i, e in enumerate(commit["events"])
    ]


class MongoEventStore(EventStore):
    def __init__(self, database: Any, prefix: str = "", gap_timeout: float = 5.0) -> None:
        self._commits = database[f"{prefix}events"]
        self._counters = database[f"{prefix}counters"]
        self._gap_timeout = gap_timeout
        self._gaps_seen: dict[int, float] = {}
        self._ready = False

    async def _setup(self) -> None:
        if not self._ready:
            await self._commits.create_index(
                [("stream_id", ASCENDING), ("first", ASCENDING)], unique=True
            )
            await self._commits.create_index([("end", ASCENDING)])
            await self._commits.create_index([("ids", ASCENDING)])
            self._ready = True

    async def append(
        self, stream_id: str, events: Sequence[StoredEvent], expected_version: int | None
    ) -> list[StoredEvent]:
        if not events:
            return []
        await self._setup()
        if expected_version is None:
            existing = await self._already_stored(events[0].id)
            if existing is not None:
                return existing
        current = await self.stream_version(stream_id)
        if expected_version is not None and current != expected_version:
            existing = await self._already_stored(events[0].id)
            if existing is not None:
                return existing
            raise ConcurrencyError(stream_id, expected_version, current)
        first_position = await self._reserve(len(events))
        stored = [ev.at(current + i, first_position + i - 1) for i, ev in enumerate(events, 1)]
        commit = {
            "_id": first_position,
            "end": first_position + len(events) - 1,
            "stream_id": stream_id,
            "first": current + 1,
            "last": current + len(events),
            "ids": [ev.id for ev in events],
            "events": [_doc(ev) for ev in events],
        }
        try:
            await self._commits.insert_one(commit)
        except (DuplicateKeyError, BulkWriteError):
            await self._fill_gap(first_position, len(events))
            existing = await self._already_stored(events[0].id)
            if existing is not None:
                return existing
            raise ConcurrencyError(
                stream_id, current, await self.stream_version(stream_id)
            ) from None
        return stored

    async def _reserve(self, n: int) -> int:
        counter = await self._counters.find_one_and_update(
            {"_id": "position"},
            {"$inc": {"seq": n}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return counter["seq"] - n + 1

    async def _fill_gap(self, first_position: int, n: int) -> None:
        await self._commits.insert_one(
            {
                "_id": first_position,
                "end": first_position + n - 1,
                "stream_id": GAP,
                "first": first_position,
                "last": first_position + n - 1,
                "ids": [],
                "events": [],
            }
        )

    async def _already_stored(self, event_id: str) -> list[StoredEvent] | None:
        commit = await self._commits.find_one({"ids": event_id})
        return _events(commit) if commit else None

    async def read_stream(
        self, stream_id: str, from_version: int = 1, to_version: int | None = None
    ) -> list[StoredEvent]:
        query: dict[str, Any] = {"stream_id": stream_id, "last": {"$gte": from_version}}
        if to_version is not None:
            query["first"] = {"$lte": to_version}
        out: list[StoredEvent] = []
        async for commit in self._commits.find(query).sort("first", ASCENDING):
            out.extend(_events(commit))
        high = to_version if to_version is not None else 2**62
        return [ev for ev in out if from_version <= ev.version <= high]

    async def stream_version(self, stream_id: str) -> int:
        cursor = self._commits.find({"stream_id": stream_id}, {"last": 1}).sort("first", -1)
        async for commit in cursor.limit(1):
            return commit["last"]
        return 0

    async def read_all(self, from_position: int = 1, limit: int = 1000) -> list[StoredEvent]:
        out: list[StoredEvent] = []
        expected = from_position
        cursor = self._commits.find({"end": {"$gte": from_position}}).sort("_id", ASCENDING)
        async for commit in cursor.limit(limit):
            if commit["_id"] > expected and not self._gap_expired(expected):
                break
            out.extend(ev for ev in _events(commit) if ev.position >= from_position)
            expected = commit["end"] + 1
            if len(out) >= limit:
                break
        return out[:limit]

    def _gap_expired(self, position: int) -> bool:
        """True once a hole at `position` has been seen for longer than the gap timeout."""
        first_seen = self._gaps_seen.setdefault(position, clock.monotonic())
        if len(self._gaps_seen) > 1000:
            self._gaps_seen = {position: first_seen}
        return clock.monotonic() - first_seen >= self._gap_timeout

    async def head_position(self) -> int:
        counter = await self._counters.find_one({"_id": "position"})
        return counter["seq"] if counter else 0

    async def close(self) -> None:
        """The motor client is owned by whoever created it."""
