"""MongoDB event store (motor), within what both MongoDB and FerretDB v1 support.

No multi-document transactions are used, and no update is trusted to compare-and-set (FerretDB
v1 applies `$inc` and filtered updates as read-then-write, so concurrent ones get lost). The
only atomic step is an insert against unique indexes. One append is one *commit* document
holding all its events, so an append is atomic by construction:

    {_id: first position, end: last position, stream_id, first: first version,
     last: last version, ids: [...], events: [{id, type, tv, time, data, meta}, ...]}

- Optimistic concurrency: a unique index on (stream_id, first). Versions are contiguous, so
  two writers that both saw version N both try to write first = N + 1; one of them loses
  (with `expected_version=ANY` the loser appends again after the winner).
- Global positions form a chain: a commit's `_id` is the `end` of a commit already stored,
  plus one, and `_id` is unique. Two writers that saw the same head both claim the next
  position; one insert wins and the other reads the new head and tries again. So positions
  are contiguous, a commit becomes visible only after every commit before it, and a reader
  following `read_all` never skips an event that commits late: there are no holes to skip.
  A writer that dies mid-append has reserved nothing.

`data` and `meta` are kept as JSON text: event payloads may hold keys MongoDB-wire servers
refuse (dots, a leading `$`) and integers wider than BSON's, and the store never queries them.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from ..errors import ConcurrencyError
from ..events import StoredEvent
from .base import EventStore, check_batch, stored_batch


def _doc(ev: StoredEvent) -> dict[str, Any]:
    return {
        "id": ev.id,
        "type": ev.type,
        "tv": ev.type_version,
        "time": ev.time.isoformat(),
        "data": ev.raw,
        "meta": json.dumps(ev.meta, separators=(",", ":")),
    }


def _events(commit: dict[str, Any]) -> list[StoredEvent]:
    stream_id, first, position = commit["stream_id"], commit["first"], commit["_id"]
    return [
        StoredEvent(
            e["id"], stream_id, e["type"], None, e["tv"], first + i, position + i,
            datetime.fromisoformat(e["time"]), _meta(e["meta"]), raw=e["data"],
        )
        for i, e in enumerate(commit["events"])
    ]


@functools.lru_cache(maxsize=4096)
def _meta(raw: str) -> dict[str, Any]:
    """Metadata repeats across the events of one append and one request: parse it once."""
    return json.loads(raw)


class MongoEventStore(EventStore):
    def __init__(self, database: Any, prefix: str = "") -> None:
        self._commits = database[f"{prefix}events"]
        self._head: int | None = None  # the last position this store saw committed

    async def _setup(self) -> None:
        if self._head is None:
            await self._commits.create_index(
                [("stream_id", ASCENDING), ("first", ASCENDING)], unique=True
            )
            await self._commits.create_index([("end", ASCENDING)])
            await self._commits.create_index([("ids", ASCENDING)])
            self._head = await self.head_position()

    async def append(
        self, stream_id: str, events: Sequence[StoredEvent], expected_version: int | None
    ) -> list[StoredEvent]:
        if not events:
            return []
        check_batch(stream_id, events)
        docs = [_doc(ev) for ev in events]
        await self._setup()
        if expected_version is None:
            existing = await self._already_stored(events)
            if existing is not None:
                return existing
        current = await self.stream_version(stream_id)
        while True:
            if expected_version is not None and current != expected_version:
                existing = await self._already_stored(events)
                if existing is not None:
                    return existing
                raise ConcurrencyError(stream_id, expected_version, current)
            first = self._head + 1
            if await self._commit(stream_id, docs, current, first):
                self._head = max(self._head, first + len(events) - 1)
                return [ev.at(current + i, first + i - 1) for i, ev in enumerate(events, 1)]
            # the version or the position was taken by another writer: find out which
            moved = await self.stream_version(stream_id)
            if moved != current:
                existing = await self._already_stored(events)
                if existing is not None:
                    return existing
                if expected_version is not None:
                    raise ConcurrencyError(stream_id, expected_version, moved)
                current = moved
            self._head = max(self._head, await self.head_position())

    async def _commit(
        self, stream_id: str, docs: list[dict[str, Any]], current: int, first_position: int
    ) -> bool:
        """Insert one commit at the versions after `current` and the positions from
        `first_position`; False if another writer holds either."""
        commit = {
            "_id": first_position,
            "end": first_position + len(docs) - 1,
            "stream_id": stream_id,
            "first": current + 1,
            "last": current + len(docs),
            "ids": [d["id"] for d in docs],
            "events": docs,
        }
        try:
            await self._commits.insert_one(commit)
        except DuplicateKeyError:
            return False
        return True

    async def _already_stored(self, events: Sequence[StoredEvent]) -> list[StoredEvent] | None:
        ids = {ev.id for ev in events}
        found = [
            ev
            async for commit in self._commits.find({"ids": {"$in": list(ids)}})
            for ev in _events(commit)
            if ev.id in ids
        ]
        return stored_batch(events, found)

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
        cursor = self._commits.find({"stream_id": stream_id}, {"last": 1}).sort("first", DESCENDING)
        async for commit in cursor.limit(1):
            return commit["last"]
        return 0

    async def read_all(self, from_position: int = 1, limit: int = 1000) -> list[StoredEvent]:
        out: list[StoredEvent] = []
        expected = max(from_position, 1)
        cursor = self._commits.find({"end": {"$gte": expected}}).sort("_id", ASCENDING)
        async for commit in cursor.limit(limit):
            if commit["_id"] > expected:
                break  # never past a position not visible yet (the chain leaves none)
            out.extend(ev for ev in _events(commit) if ev.position >= expected)
            expected = commit["end"] + 1
            if len(out) >= limit:
                break
        return out[:limit]

    async def head_position(self) -> int:
        cursor = self._commits.find({}, {"end": 1}).sort("_id", DESCENDING).limit(1)
        async for commit in cursor:
            return commit["end"]
        return 0

    async def close(self) -> None:
        """The motor client is owned by whoever created it."""
