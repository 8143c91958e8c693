"""MongoDB event store (motor), within what both MongoDB and FerretDB v1 support.

No multi-document transactions are used, and no update is trusted to compare-and-set (FerretDB
v1 applies `$inc` and filtered updates as read-then-write, so concurrent ones get lost). The
only atomic step is an insert against unique indexes. One append is one *commit* document
holding all its events, so an append is atomic by construction:

    {_id: first position, end: last position, stream_id, first: first version,
     last: last version, first_id: id of its first event, events: [{id, type, tv, time, data,
     meta}, ...]}

- Optimistic concurrency: a unique index on (stream_id, first). Versions are contiguous, so
  two writers that both saw version N both try to write first = N + 1; one of them loses
  (with `expected_version=ANY` the loser appends again after the winner).
- Global positions form a chain: a commit's `_id` is the `end` of a commit already stored,
  plus one, and `_id` is unique. Two writers that saw the same head both claim the next
  position; one insert wins and the other reads the new head and tries again. So positions
  are contiguous, a commit becomes visible only after every commit before it, and a reader
  following `read_all` never skips an event that commits late: there are no holes to skip.
  A writer that dies mid-append has reserved nothing.
- Idempotent retries: a unique index on `first_id`. A batch re-sent after a lost answer
  collides there and is answered with the stored copy; a batch whose first event is stored in
  another commit is a `Conflict`. (A retry is recognised by its first event, as the whole batch
  is re-sent; an index over every id would be an index over an array of unbounded length,
  which PostgreSQL-backed servers refuse past 2,704 bytes.)

`data` and `meta` are kept as JSON text: event payloads may hold keys MongoDB-wire servers
refuse (dots, a leading `$`) and integers wider than BSON's, and the store never queries them.
"""

from __future__ import annotations

import functools
import json
from collections import OrderedDict
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
            e["id"],
            stream_id,
            e["type"],
            None,
            e["tv"],
            first + i,
            position + i,
            datetime.fromisoformat(e["time"]),
            _meta(e["meta"]),
            raw=e["data"],
        )
        for i, e in enumerate(commit["events"])
    ]


@functools.lru_cache(maxsize=4096)
def _meta(raw: str) -> dict[str, Any]:
    """Metadata repeats across the events of one append and one request: parse it once."""
    return json.loads(raw)


class MongoEventStore(EventStore):
    """One append on the happy path is one round trip: the insert of its commit.

    The store remembers the log's head and, for a bounded set of recent streams, their version,
    so it needs to read neither before inserting; with `expected_version` given, the caller's
    version is used as it is. Only an insert refused by a unique index is followed by reads,
    each by an index on scalar fields, to learn why: the batch is a retry of one already stored
    (`first_id`), the stream moved on (`stream_id`, `first`), or another writer took the
    position (`_id`). No index covers an array, so commits of any size fit every backend.
    """

    STREAMS_REMEMBERED = 10_000

    def __init__(self, database: Any, prefix: str = "") -> None:
        self._commits = database[f"{prefix}events"]
        self._head: int | None = None  # the last position this store saw committed
        self._versions: OrderedDict[str, int] = OrderedDict()  # recent streams' last versions

    async def _setup(self) -> None:
        if self._head is None:
            await self._commits.create_index(
                [("stream_id", ASCENDING), ("first", ASCENDING)], unique=True
            )
            await self._commits.create_index([("end", ASCENDING)])
            await self._name_first_ids()
            await self._commits.create_index([("first_id", ASCENDING)], unique=True)
            self._head = await self.head_position()

    async def _name_first_ids(self) -> None:
        """Give commits stored before `first_id` existed theirs (once; none in a new store)."""
        async for commit in self._commits.find({"first_id": {"$exists": False}}, {"events.id": 1}):
            first_id = commit["events"][0]["id"]
            await self._commits.update_one({"_id": commit["_id"]}, {"$set": {"first_id": first_id}})

    async def append(
        self, stream_id: str, events: Sequence[StoredEvent], expected_version: int | None
    ) -> list[StoredEvent]:
        if not events:
            return []
        check_batch(stream_id, events)
        docs = [_doc(ev) for ev in events]
        await self._setup()
        current = await self._version_to_append_at(stream_id, events, expected_version)
        if isinstance(current, list):
            return current
        while True:
            first = self._head + 1
            if await self._commit(stream_id, docs, current, first):
                self._head = max(self._head, first + len(events) - 1)
                self._remember(stream_id, current + len(events))
                return [ev.at(current + i, first + i - 1) for i, ev in enumerate(events, 1)]
            # refused by a unique index: find out which, reading by index only
            existing = await self._already_stored(events)
            if existing is not None:
                return existing
            taken = {"stream_id": stream_id, "first": current + 1}
            if await self._commits.find_one(taken, {"_id": 1}) is None:
                self._head = max(self._head, await self.head_position())  # position taken
                continue
            moved = await self.stream_version(stream_id)
            if expected_version is not None:
                raise ConcurrencyError(stream_id, expected_version, moved)
            current = moved

    async def _version_to_append_at(
        self, stream_id: str, events: Sequence[StoredEvent], expected: int | None
    ) -> int | list[StoredEvent]:
        """The version the batch goes after; the stored batch if this is a retry of one that
        went through.

        An insert after version `v` is safe when `v` ends a commit (or is 0): a commit holding
        `v + 1` then has to start there, and the unique index on (stream_id, first) refuses
        ours. The versions this store remembers (of streams it appended to or read whole) end
        commits, so an append at one of them, or at 0, needs no read.
        """
        known = self._versions.get(stream_id)
        if expected is None:
            return known if known is not None else await self.stream_version(stream_id)
        if expected in (0, known):
            return expected
        actual = await self.stream_version(stream_id)
        if actual != expected:
            existing = await self._already_stored(events)
            if existing is not None:
                return existing
            raise ConcurrencyError(stream_id, expected, actual)
        return expected

    def _remember(self, stream_id: str, version: int) -> None:
        self._versions[stream_id] = version
        self._versions.move_to_end(stream_id)
        if len(self._versions) > self.STREAMS_REMEMBERED:
            self._versions.popitem(last=False)

    async def _commit(
        self, stream_id: str, docs: list[dict[str, Any]], current: int, first_position: int
    ) -> bool:
        """Insert one commit at the versions after `current` and the positions from
        `first_position`; False if another writer holds either (or its first event id)."""
        commit = {
            "_id": first_position,
            "end": first_position + len(docs) - 1,
            "stream_id": stream_id,
            "first": current + 1,
            "last": current + len(docs),
            "first_id": docs[0]["id"],
            "events": docs,
        }
        try:
            await self._commits.insert_one(commit)
        except DuplicateKeyError:
            return False
        return True

    async def _already_stored(self, events: Sequence[StoredEvent]) -> list[StoredEvent] | None:
        """The stored copies of a batch whose first event id is taken (a retry), None if the
        id is free; `Conflict` when the commit holding it is another batch."""
        commit = await self._commits.find_one({"first_id": events[0].id})
        if commit is None:
            return None
        return stored_batch(events, _events(commit))

    async def read_stream(
        self, stream_id: str, from_version: int = 1, to_version: int | None = None
    ) -> list[StoredEvent]:
        query: dict[str, Any] = {"stream_id": stream_id, "last": {"$gte": from_version}}
        if to_version is not None:
            query["first"] = {"$lte": to_version}
        out: list[StoredEvent] = []
        async for commit in self._commits.find(query).sort("first", ASCENDING):
            out.extend(_events(commit))
        if to_version is None and out:
            self._remember(stream_id, out[-1].version)
        high = to_version if to_version is not None else 2**62
        return [ev for ev in out if from_version <= ev.version <= high]

    async def stream_version(self, stream_id: str) -> int:
        cursor = self._commits.find({"stream_id": stream_id}, {"last": 1}).sort("first", DESCENDING)
        async for commit in cursor.limit(1):
            self._remember(stream_id, commit["last"])
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
