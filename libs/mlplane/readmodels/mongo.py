"""MongoDB read-model store (motor): one collection per physical read model.

The position guard is the filter `{_id: key, _pos: {$lt: position}}` of a replace: when the
stored document is already at or past the position, the filter misses and nothing changes.
A document not stored yet is inserted instead; if another writer inserted it first, the
duplicate-key error sends the write back through the guarded replace, so the later position
wins either way. (Upserts are not used: FerretDB answers a guarded upsert that collides with
a reply pymongo's bulk API cannot read.)

On MongoDB the guarded replace is atomic. FerretDB v1 applies a filtered update as a read
then a write, so two concurrent writers of one document can lose the later position; this
store therefore serialises its own writes per collection (and per checkpoint), which covers
every writer in one process (a live runner and a rebuild catching up). Across processes on
FerretDB, run one projection runner per read model.

Keys holding `.` or `$` (Kubernetes labels, parameter names) are refused by MongoDB-wire
servers; they are stored with those characters swapped for their full-width forms and read
back as written.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, InsertOne, ReplaceOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from .base import (
    ANY_OF,
    Doc,
    Filters,
    Page,
    ReadModelStore,
    Write,
    check_field,
    check_filters,
    decode_cursor,
    encode_cursor,
    lookup,
)

DUPLICATE_KEY = 11000


ESCAPES = str.maketrans({".": "\uff0e", "$": "\uff04"})
UNESCAPES = str.maketrans({"\uff0e": ".", "\uff04": "$"})


def _keys(value: Any, table: dict[int, str]) -> Any:
    """`value` with its (nested) keys translated by `table`."""
    if isinstance(value, dict):
        return {k.translate(table): _keys(v, table) for k, v in value.items()}
    if isinstance(value, list):
        return [_keys(v, table) for v in value]
    return value


def _public(doc: dict[str, Any]) -> Doc:
    doc = _keys(doc, UNESCAPES)
    doc["_key"] = doc.pop("_id")
    doc.pop("_deleted", None)
    return doc


def _field(field: str) -> str:
    return "_id" if field == "_key" else check_field(field)


def _match(filters: Filters | None) -> dict[str, Any]:
    query: dict[str, Any] = {"_deleted": False}
    for field, want in check_filters(filters).items():
        query[_field(field)] = {"$in": list(want)} if isinstance(want, ANY_OF) else want
    return query


def _after(field: str, descending: bool, value: Any, key: str) -> dict[str, Any]:
    """The condition "after (value, key)" in the order `field, _id`, nulls sorting lowest."""
    op = "$lt" if descending else "$gt"
    if field == "_id":
        return {"_id": {op: key}}
    if value is None:
        if descending:
            return {field: None, "_id": {"$lt": key}}
        return {"$or": [{field: {"$ne": None}}, {field: None, "_id": {"$gt": key}}]}
    later: list[dict[str, Any]] = [{field: {op: value}}, {field: value, "_id": {op: key}}]
    if descending:
        later.append({field: None})
    return {"$or": later}


def _body(w: Write) -> dict[str, Any]:
    doc = {k: v for k, v in (w.doc or {}).items() if k not in ("_key", "_pos", "_id")}
    body = _keys(doc, ESCAPES)
    body.update(_pos=w.position, _deleted=w.doc is None)
    return body


def _replace(w: Write) -> ReplaceOne:
    return ReplaceOne({"_id": w.key, "_pos": {"$lt": w.position}}, _body(w))


def _latest(writes: Sequence[Write]) -> list[Write]:
    """One write per key: the one at the highest position."""
    latest: dict[str, Write] = {}
    for w in writes:
        if w.key not in latest or w.position > latest[w.key].position:
            latest[w.key] = w
    return list(latest.values())


BULK_CHUNK = 40
"""Writes per bulk command. FerretDB v1 on PostgreSQL holds one pooled connection per statement
of a command until the command ends, so a command of as many statements as its pool has
connections (50 by default) waits forever, and every other client with it."""


class MongoReadModels(ReadModelStore):
    def __init__(self, database: Any, prefix: str = "") -> None:
        self._db = database
        self._prefix = f"{prefix}rm_"
        self._meta = database[f"{prefix}rm__meta"]
        self._aliases: dict[str, tuple[str, float]] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def _coll(self, collection: str) -> Any:
        return self._db[self._prefix + collection]

    async def get_many(self, collection: str, keys: Iterable[str]) -> dict[str, Doc]:
        collection = await self.resolve(collection)
        cursor = self._coll(collection).find({"_id": {"$in": list(keys)}, "_deleted": False})
        return {d["_id"]: _public(d) async for d in cursor}

    async def positions(self, collection: str, keys: Iterable[str]) -> dict[str, int]:
        cursor = self._coll(collection).find({"_id": {"$in": list(keys)}}, {"_pos": 1})
        return {d["_id"]: d["_pos"] async for d in cursor}

    async def put_many(self, collection: str, writes: Sequence[Write]) -> None:
        if not writes:
            return
        async with self._locks[f"docs:{collection}"]:
            await self._put_many(collection, writes)

    async def _put_many(self, collection: str, writes: Sequence[Write]) -> None:
        coll = self._coll(collection)
        stored = await self.positions(collection, {w.key for w in writes})
        pending = [w for w in _latest(writes) if stored.get(w.key, -1) < w.position]
        if not pending:
            return
        ops = [
            InsertOne({"_id": w.key, **_body(w)}) if w.key not in stored else _replace(w)
            for w in pending
        ]
        for start in range(0, len(ops), BULK_CHUNK):
            chunk = pending[start : start + BULK_CHUNK]
            try:
                await coll.bulk_write(ops[start : start + BULK_CHUNK], ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                # inserted by another writer meanwhile: it exists now, the guarded replace decides
                retry = [_replace(chunk[e["index"]]) for e in errors]
                await coll.bulk_write(retry, ordered=False)

    async def query(
        self,
        collection: str,
        filters: Filters | None = None,
        *,
        sort: str = "_key",
        descending: bool = False,
        limit: int = 50,
        after: str | None = None,
    ) -> Page:
        collection = await self.resolve(collection)
        coll = self._coll(collection)
        match = _match(filters)
        count = await coll.count_documents(match)
        field = _field(sort)
        if after:
            value, key = decode_cursor(after)
            match = {"$and": [match, _after(field, descending, value, key)]}
        direction = DESCENDING if descending else ASCENDING
        order = [(field, direction)] + ([("_id", direction)] if field != "_id" else [])
        docs = [d async for d in coll.find(match).sort(order).limit(limit + 1)]
        has_more = len(docs) > limit
        docs = docs[:limit]
        cursor = None
        if has_more and docs:
            cursor = encode_cursor(lookup(docs[-1], field), docs[-1]["_id"])
        return Page(
            data=[_public(d) for d in docs], count=count, has_more=has_more, next_cursor=cursor
        )

    async def all_docs(self, collection: str) -> dict[str, Doc]:
        collection = await self.resolve(collection)
        return {
            d["_id"]: _public(d) async for d in self._coll(collection).find({"_deleted": False})
        }

    async def drop(self, collection: str) -> None:
        await self._coll(collection).drop()
        await self._meta.delete_one({"_id": f"checkpoint:{collection}"})

    async def collections(self) -> list[str]:
        names = await self._db.list_collection_names()
        return [
            n[len(self._prefix) :]
            for n in names
            if n.startswith(self._prefix) and n != f"{self._prefix}_meta"
        ]

    async def get_checkpoint(self, name: str) -> int:
        doc = await self._meta.find_one({"_id": f"checkpoint:{name}"})
        return doc["position"] if doc else 0

    async def set_checkpoint(self, name: str, position: int) -> None:
        guard = {"_id": f"checkpoint:{name}", "position": {"$lt": position}}
        update = {"$set": {"position": position}}
        async with self._locks[f"checkpoint:{name}"]:
            try:
                await self._meta.update_one(guard, update, upsert=True)
            except DuplicateKeyError:
                # already at or past `position`, or created by another writer just now
                await self._meta.update_one(guard, update)

    async def resolve(self, name: str) -> str:
        cached = self._aliases.get(name)
        if cached and time.monotonic() - cached[1] < 1.0:
            return cached[0]
        doc = await self._meta.find_one({"_id": f"alias:{name}"})
        physical = doc["physical"] if doc else name
        self._aliases[name] = (physical, time.monotonic())
        return physical

    async def set_alias(self, name: str, physical: str) -> None:
        await self._meta.update_one(
            {"_id": f"alias:{name}"}, {"$set": {"physical": physical}}, upsert=True
        )
        self._aliases.pop(name, None)
