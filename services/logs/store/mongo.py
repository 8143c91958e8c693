"""MongoDB log store (motor): raw logs, and summary buckets kept per source.

MongoDB here is used without multi-document transactions, so "exactly once" rests on two
idempotent writes instead of one atomic one:

- raw logs are inserted under their id, remembering the source and offset they came from; an id
  already stored from the same place is this batch's own earlier attempt (it counts), from any
  other place a duplicate (it does not);
- summary buckets are kept per source (a Kafka partition has one consumer at a time), and each
  bucket document holds the offset of its source it reflects: a batch adds to a bucket only the
  logs past that offset, and writes it back only if the offset is still the one it read (a
  compare-and-set on `_id` and `o`). A crash at any point leaves every bucket either with or
  without a log, never twice; the batch redelivered completes what is missing. A bucket changed
  meanwhile (a consumer that lost its partition and did not notice yet) fails the compare-and-set
  and the batch is retried against the fresh state.

Logs of the in-process bus (source `inproc`, no offsets) cannot tell their own earlier attempt
from a duplicate: a crash between the two writes loses their summary contribution rather than
counting it twice. The in-process bus loses what it held at a crash anyway.

Reads merge the per-source documents in Python (FerretDB's `$group` cannot sum several fields
at once), and every query is on indexed fields on a real MongoDB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from mlplane.readmodels.mongo import BULK_CHUNK
from pymongo import ASCENDING, DESCENDING, InsertOne, ReplaceOne
from pymongo.errors import BulkWriteError

from ..aggregate import (
    STAT_FIELDS,
    LogRecord,
    Stats,
    bucket_keys,
    key_id,
    to_micros,
)
from .base import INPROC, LogFilters, LogStore, StaleWrite

DUPLICATE_KEY = 11000
FIELDS = (
    "space",
    "endpoint",
    "model",
    "version",
    "user",
    "status",
    "type",
    "latency_ms",
    "request_bytes",
    "response_bytes",
    "tokens_in",
    "tokens_out",
    "correlation_id",
    "error",
    "ts",
)


def _raw(r: LogRecord, source: str) -> dict[str, Any]:
    doc = {name: getattr(r, name) for name in FIELDS}
    doc.update(_id=r.id, tags=list(r.tags), src=source, off=r.offset)
    return doc


def _record(doc: Mapping[str, Any]) -> LogRecord:
    return LogRecord(id=doc["_id"], tags=tuple(doc["tags"]), **{name: doc[name] for name in FIELDS})


def _stats(doc: Mapping[str, Any]) -> Stats:
    return Stats(*(doc[name] for name in STAT_FIELDS), hist=list(doc["hist"]))


def _bucket(key: tuple, source: str, offset: int, stats: Stats) -> dict[str, Any]:
    level, bucket, space, model, user, type_, status = key
    doc = {
        "_id": key_id(key, source),
        "space": space,
        "level": level,
        "bucket": bucket,
        "model": model,
        "user": user,
        "type": type_,
        "status": status,
        "src": source,
        "o": offset,
    }
    doc.update({name: getattr(stats, name) for name in STAT_FIELDS}, hist=stats.hist)
    return doc


def _match(f: LogFilters) -> dict[str, Any]:
    query: dict[str, Any] = {"space": f.space}
    span = {}
    if f.start is not None:
        span["$gte"] = to_micros(f.start)
    if f.end is not None:
        span["$lt"] = to_micros(f.end)
    if span:
        query["ts"] = span
    query.update(f.dimensions())
    if f.correlation_id is not None:
        query["correlation_id"] = f.correlation_id
    if f.tag is not None:
        query["tags"] = f.tag
    return query


class MongoLogStore(LogStore):
    def __init__(self, database: Any, prefix: str = "") -> None:
        self._raw = database[f"{prefix}logs_raw"]
        self._buckets = database[f"{prefix}logs_summary"]
        self._applied = database[f"{prefix}logs_applied"]
        self._opened = False

    async def open(self) -> None:
        if self._opened:
            return
        await self._raw.create_index([("space", ASCENDING), ("ts", DESCENDING)])
        await self._raw.create_index([("space", ASCENDING), ("correlation_id", ASCENDING)])
        await self._raw.create_index([("ts", ASCENDING)])
        await self._buckets.create_index(
            [("space", ASCENDING), ("level", ASCENDING), ("bucket", ASCENDING)]
        )
        self._opened = True

    async def ingest_many(self, batches: Mapping[str, Sequence[LogRecord]]) -> int:
        return sum([await self._ingest(source, records) for source, records in batches.items()])

    async def _ingest(self, source: str, records: Sequence[LogRecord]) -> int:
        if not records:
            return 0
        await self.open()
        unique = _unique(records)
        counted, new = await self._insert_raw(source, unique)
        await self._add_to_buckets(source, counted)
        last = records[-1].offset
        if source != INPROC and last >= 0:
            await self._applied.update_one({"_id": source}, {"$max": {"offset": last}}, upsert=True)
        return new

    async def _insert_raw(
        self, source: str, records: list[LogRecord]
    ) -> tuple[list[LogRecord], int]:
        """Insert the raw logs; return those that count (new, or stored by an earlier attempt of
        this very batch: same source and offset) and how many were new."""
        try:
            await self._raw.insert_many([_raw(r, source) for r in records], ordered=False)
            return records, len(records)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
        taken = {records[e["index"]].id for e in errors}
        origin = {
            d["_id"]: (d.get("src"), d.get("off"))
            async for d in self._raw.find({"_id": {"$in": list(taken)}}, {"src": 1, "off": 1})
        }
        own = source != INPROC
        counted = [
            r
            for r in records
            if r.id not in taken
            or (own and r.offset >= 0 and origin.get(r.id) == (source, r.offset))
        ]
        return counted, len(records) - len(taken)

    async def _add_to_buckets(self, source: str, records: list[LogRecord]) -> None:
        by_key: dict[tuple, list[LogRecord]] = {}
        for r in records:
            for key in bucket_keys(r):
                by_key.setdefault(key, []).append(r)
        if not by_key:
            return
        ids = {key_id(key, source): key for key in by_key}
        stored = {d["_id"]: d async for d in self._buckets.find({"_id": {"$in": list(ids)}})}
        ops, replaces = [], 0
        for doc_id, key in ids.items():
            current = stored.get(doc_id)
            done = current["o"] if current else -1
            fresh = [r for r in by_key[key] if r.offset < 0 or r.offset > done]
            if not fresh:
                continue
            stats = _stats(current) if current else Stats()
            for r in fresh:
                stats.add(r)
            doc = _bucket(key, source, max(done, fresh[-1].offset), stats)
            if current is None:
                ops.append(InsertOne(doc))
            else:
                ops.append(ReplaceOne({"_id": doc_id, "o": done}, doc))
                replaces += 1
        if not ops:
            return
        matched = 0
        for start in range(0, len(ops), BULK_CHUNK):  # see BULK_CHUNK: FerretDB's pool
            try:
                result = await self._buckets.bulk_write(
                    ops[start : start + BULK_CHUNK], ordered=False
                )
            except BulkWriteError as exc:
                raise StaleWrite(f"summary buckets of {source} changed meanwhile") from exc
            matched += result.matched_count
        if matched != replaces:
            raise StaleWrite(f"summary buckets of {source} changed meanwhile")

    async def applied(self, source: str) -> int:
        doc = await self._applied.find_one({"_id": source})
        return doc["offset"] if doc else -1

    async def logs(
        self, filters: LogFilters, *, skip: int = 0, limit: int = 20
    ) -> tuple[int, list[LogRecord]]:
        query = _match(filters)
        count = await self._raw.count_documents(query)
        cursor = (
            self._raw.find(query)
            .sort([("ts", DESCENDING), ("_id", DESCENDING)])
            .skip(skip)
            .limit(limit)
        )
        return count, [_record(d) async for d in cursor]

    async def log(self, space: str, log_id: str) -> LogRecord | None:
        found = await self._raw.find_one({"_id": log_id, "space": space})
        return None if found is None else _record(found)

    async def all_logs(self, filters: LogFilters) -> list[LogRecord]:
        return [_record(d) async for d in self._raw.find(_match(filters))]

    async def bucket_stats(
        self, space: str, level: int, first: int, end: int, dimensions: Mapping[str, Any]
    ) -> dict[str, Stats]:
        query = {
            "space": space,
            "level": level,
            "bucket": {"$gte": first, "$lt": end},
            **dimensions,
        }
        out: dict[str, Stats] = {}
        async for doc in self._buckets.find(query, {"_id": 0, "src": 0, "o": 0}):
            stats = _stats(doc)
            model = doc["model"]
            out[model] = out[model].merge(stats) if model in out else stats
        return out

    async def purge(self, before: datetime) -> int:
        result = await self._raw.delete_many({"ts": {"$lt": to_micros(before)}})
        return result.deleted_count


def _unique(records: Sequence[LogRecord]) -> list[LogRecord]:
    seen: set[str] = set()
    out = []
    for r in records:
        if r.id not in seen:
            seen.add(r.id)
            out.append(r)
    return out
