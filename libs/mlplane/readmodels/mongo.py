"""MongoDB read-model store (motor): one collection per physical read model.

The position guard is the filter `{_id: key, _pos: {$lt: position}}` of an upsert: when the
stored document is already at or past the position, the filter misses, the upsert collides
with the existing `_id`, and the duplicate-key error is the no-op.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from .base import Doc, Filters, Page, ReadModelStore, Write, decode_cursor, encode_cursor

DUPLICATE_KEY = 11000


def _public(doc: dict[str, Any]) -> Doc:
    doc = dict(doc)
    doc["_key"] = doc.pop("_id")
    doc.pop("_deleted", None)
    return doc


def _match(filters: Filters | None) -> dict[str, Any]:
    query: dict[str, Any] = {"_deleted": False}
    for field, want in (filters or {}).items():
        field = "_id" if field == "_key" else field
        query[field] = {"$in": list(want)} if isinstance(want, (list, tuple, set, frozenset)) else want
    return query


class MongoReadModels(ReadModelStore):
    def __init__(self, database: Any, prefix: str = "") -> None:
        self._db = database
        self._prefix = f"{prefix}rm_"
        self._meta = database[f"{prefix}rm__meta"]
        self._aliases: dict[str, tuple[str, float]] = {}

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
        ops = []
        for w in writes:
            body = {k: v for k, v in (w.doc or {}).items() if k not in ("_key", "_pos", "_id")}
            body.update(_pos=w.position, _deleted=w.doc is None)
            ops.append(
                UpdateOne({"_id": w.key, "_pos": {"$lt": w.position}}, {"$set": body}, upsert=True)
            )
        try:
            await self._coll(collection).bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise

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
        field = "_id" if sort == "_key" else sort
        op = "$lt" if descending else "$gt"
        if after:
            value, key = decode_cursor(after)
            tie = {"_id": {op: key}} if field == "_id" else {field: value, "_id": {op: key}}
            match = {"$and": [match, {"$or": [{field: {op: value}}, tie]}]}
        direction = DESCENDING if descending else ASCENDING
        order = [(field, direction)] + ([("_id", direction)] if field != "_id" else [])
        docs = [d async for d in coll.find(match).sort(order).limit(limit + 1)]
        has_more = len(docs) > limit
        docs = docs[:limit]
        last = docs[-1] if docs else None
        cursor = encode_cursor(last.get(field) if field != "_id" else last["_id"], last["_id"]) if has_more and last else None
        return Page(data=[_public(d) for d in docs], count=count, has_more=has_more, next_cursor=cursor)

    async def all_docs(self, collection: str) -> dict[str, Doc]:
        collection = await self.resolve(collection)
        return {d["_id"]: _public(d) async for d in self._coll(collection).find({"_deleted": False})}

    async def drop(self, collection: str) -> None:
        await self._coll(collection).drop()
        await self._meta.delete_one({"_id": f"checkpoint:{collection}"})

    async def collections(self) -> list[str]:
        names = await self._db.list_collection_names()
        return [n[len(self._prefix) :] for n in names if n.startswith(self._prefix) and n != f"{self._prefix}_meta"]

    async def get_checkpoint(self, name: str) -> int:
        doc = await self._meta.find_one({"_id": f"checkpoint:{name}"})
        return doc["position"] if doc else 0

    async def set_checkpoint(self, name: str, position: int) -> None:
        try:
            await self._meta.update_one(
                {"_id": f"checkpoint:{name}", "position": {"$lt": position}},
                {"$set": {"position": position}},
                upsert=True,
            )
        except DuplicateKeyError:
            pass  # already at or past `position`

    async def resolve(self, name: str) -> str:
        cached = self._aliases.get(name)
        if cached and time.monotonic() - cached[1] < 1.0:
            return cached[0]
        doc = await self._meta.find_one({"_id": f"alias:{name}"})
        physical = doc["physical"] if doc else name
        self._aliases[name] = (physical, time.monotonic())
        return physical

    async def set_alias(self, name: str, physical: str) -> None:
        await self._meta.update_one({"_id": f"alias:{name}"}, {"$set": {"physical": physical}}, upsert=True)
        self._aliases.pop(name, None)
