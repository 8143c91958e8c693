"""SQLite read-model store: one table of JSON documents, filtered with json_extract."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ..eventstore.sqlite import connect
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
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    coll    TEXT NOT NULL,
    key     TEXT NOT NULL,
    pos     INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    doc     TEXT NOT NULL,
    PRIMARY KEY (coll, key)
);
CREATE TABLE IF NOT EXISTS checkpoints (name TEXT PRIMARY KEY, position INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS aliases (name TEXT PRIMARY KEY, physical TEXT NOT NULL);
"""

COLUMN_FIELDS = {"_key": "key", "_pos": "pos"}
ALIAS_TTL_S = 1.0
"""How long a projection's physical name is reused before it is read again: a rebuild by
another process is seen within this time (one in this process at once)."""


def _path(field: str) -> str:
    if field in COLUMN_FIELDS:
        return COLUMN_FIELDS[field]
    return f"json_extract(doc, '$.{check_field(field)}')"


def _after(expr: str, descending: bool, value: Any, key: str) -> tuple[str, list[Any]]:
    """The condition "after (value, key)" in the order `expr, key`, NULLs sorting lowest."""
    op = "<" if descending else ">"
    if value is None:
        if descending:
            return f"({expr} IS NULL AND key < ?)", [key]
        return f"({expr} IS NOT NULL OR key > ?)", [key]
    later = f"{expr} {op} ? OR ({expr} = ? AND key {op} ?)"
    if descending:
        return f"({later} OR {expr} IS NULL)", [value, value, key]
    return f"({later})", [value, value, key]


def _load(key: str, pos: int, raw: str) -> Doc:
    doc = json.loads(raw)
    doc["_key"], doc["_pos"] = key, pos
    return doc


class SQLiteReadModels(ReadModelStore):
    def __init__(self, path: str) -> None:
        self._db = connect(path)
        self._db.executescript(SCHEMA)
        self._aliases: dict[str, tuple[str, float]] = {}

    async def get_many(self, collection: str, keys: Iterable[str]) -> dict[str, Doc]:
        collection = await self.resolve(collection)
        keys = list(keys)
        out: dict[str, Doc] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            rows = self._db.execute(
                f"SELECT key, pos, doc FROM docs WHERE coll = ? AND deleted = 0"
                f" AND key IN ({','.join('?' * len(chunk))})",
                [collection, *chunk],
            ).fetchall()
            out.update({k: _load(k, p, d) for k, p, d in rows})
        return out

    async def positions(self, collection: str, keys: Iterable[str]) -> dict[str, int]:
        keys = list(keys)
        out: dict[str, int] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            rows = self._db.execute(
                f"SELECT key, pos FROM docs WHERE coll = ? AND key IN ({','.join('?' * len(chunk))})",
                [collection, *chunk],
            ).fetchall()
            out.update(dict(rows))
        return out

    async def put_many(self, collection: str, writes: Sequence[Write]) -> None:
        if not writes:
            return
        rows = [
            (
                collection,
                w.key,
                w.position,
                int(w.doc is None),
                json.dumps({k: v for k, v in (w.doc or {}).items() if k not in ("_key", "_pos")}),
            )
            for w in writes
        ]
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO docs (coll, key, pos, deleted, doc) VALUES (?,?,?,?,?)"
                " ON CONFLICT(coll, key) DO UPDATE SET pos = excluded.pos,"
                " deleted = excluded.deleted, doc = excluded.doc WHERE docs.pos < excluded.pos",
                rows,
            )

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
        where, args = ["coll = ?", "deleted = 0"], [collection]
        for field, want in check_filters(filters).items():
            if isinstance(want, ANY_OF):
                want = list(want)
                where.append(f"{_path(field)} IN ({','.join('?' * len(want))})")
                args.extend(want)
            elif want is None:
                where.append(f"{_path(field)} IS NULL")
            else:
                where.append(f"{_path(field)} = ?")
                args.append(want)
        count = self._db.execute(
            f"SELECT COUNT(*) FROM docs WHERE {' AND '.join(where)}", args
        ).fetchone()[0]
        sort_expr, order = _path(sort), ("DESC" if descending else "ASC")
        if after:
            value, key = decode_cursor(after)
            condition, more = _after(sort_expr, descending, value, key)
            where.append(condition)
            args.extend(more)
        rows = self._db.execute(
            f"SELECT key, pos, doc, {sort_expr} FROM docs WHERE {' AND '.join(where)}"
            f" ORDER BY {sort_expr} {order}, key {order} LIMIT ?",
            [*args, limit + 1],
        ).fetchall()
        has_more = len(rows) > limit
        rows = rows[:limit]
        data = [_load(k, p, d) for k, p, d, _ in rows]
        cursor = encode_cursor(rows[-1][3], rows[-1][0]) if has_more and rows else None
        return Page(data=data, count=count, has_more=has_more, next_cursor=cursor)

    async def all_docs(self, collection: str) -> dict[str, Doc]:
        collection = await self.resolve(collection)
        rows = self._db.execute(
            "SELECT key, pos, doc FROM docs WHERE coll = ? AND deleted = 0", (collection,)
        ).fetchall()
        return {k: _load(k, p, d) for k, p, d in rows}

    async def drop(self, collection: str) -> None:
        self._db.execute("DELETE FROM docs WHERE coll = ?", (collection,))
        self._db.execute("DELETE FROM checkpoints WHERE name = ?", (collection,))

    async def collections(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT coll FROM docs").fetchall()]

    async def get_checkpoint(self, name: str) -> int:
        row = self._db.execute(
            "SELECT position FROM checkpoints WHERE name = ?", (name,)
        ).fetchone()
        return row[0] if row else 0

    async def set_checkpoint(self, name: str, position: int) -> None:
        self._db.execute(
            "INSERT INTO checkpoints (name, position) VALUES (?, ?) ON CONFLICT(name)"
            " DO UPDATE SET position = excluded.position WHERE checkpoints.position < excluded.position",
            (name, position),
        )

    async def resolve(self, name: str) -> str:
        now = time.monotonic()
        cached = self._aliases.get(name)
        if cached and cached[1] > now:
            return cached[0]
        row = self._db.execute("SELECT physical FROM aliases WHERE name = ?", (name,)).fetchone()
        physical = row[0] if row else name
        self._aliases[name] = (physical, now + ALIAS_TTL_S)
        return physical

    async def set_alias(self, name: str, physical: str) -> None:
        self._db.execute(
            "INSERT INTO aliases (name, physical) VALUES (?, ?) ON CONFLICT(name)"
            " DO UPDATE SET physical = excluded.physical",
            (name, physical),
        )
        self._aliases.pop(name, None)

    async def close(self) -> None:
        self._db.close()
