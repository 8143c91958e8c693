"""SQLite log store: raw logs, summary buckets and applied offsets in one file, one transaction
per ingested batch.

Summary rows keep the histogram as columns, so a summary is one `SUM(...) GROUP BY model` per
bucket level, computed inside SQLite. Work runs in a thread (one writer connection, one reader
connection, WAL mode), so a batch being written never stalls the event loop that fetches the
next one.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from mlplane.eventstore.sqlite import connect

from ..aggregate import HIST_SIZE, STAT_FIELDS, LogRecord, Stats, bucket_deltas, to_micros
from .base import INPROC, LogFilters, LogStore

T = TypeVar("T")

HIST = [f"h{i}" for i in range(HIST_SIZE)]
STATS = [*STAT_FIELDS, *HIST]
KEY = ["level", "bucket", "space", "model", "user", "type", "status"]
"""The columns of a bucket key, in `aggregate.BucketKey` order."""
LOG_COLUMNS = [
    "id",
    "space",
    "ts",
    "endpoint",
    "model",
    "version",
    "user",
    "status",
    "type",
    "tags",
    "latency_ms",
    "request_bytes",
    "response_bytes",
    "tokens_in",
    "tokens_out",
    "correlation_id",
    "error",
]

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS logs (
    id TEXT NOT NULL UNIQUE, space TEXT NOT NULL, ts INTEGER NOT NULL, endpoint TEXT NOT NULL,
    model TEXT NOT NULL, version TEXT NOT NULL, user TEXT NOT NULL, status TEXT NOT NULL,
    type TEXT NOT NULL, tags TEXT NOT NULL, latency_ms REAL NOT NULL,
    request_bytes INTEGER NOT NULL, response_bytes INTEGER NOT NULL,
    tokens_in INTEGER, tokens_out INTEGER, correlation_id TEXT NOT NULL, error TEXT
);
CREATE INDEX IF NOT EXISTS logs_by_time ON logs (space, ts);
CREATE INDEX IF NOT EXISTS logs_by_correlation ON logs (space, correlation_id);
CREATE INDEX IF NOT EXISTS logs_expiry ON logs (ts);
CREATE TABLE IF NOT EXISTS summary (
    space TEXT NOT NULL, level INTEGER NOT NULL, bucket INTEGER NOT NULL, model TEXT NOT NULL,
    user TEXT NOT NULL, type TEXT NOT NULL, status TEXT NOT NULL,
    {", ".join(f"{name} INTEGER NOT NULL" for name in STATS)},
    PRIMARY KEY (space, level, bucket, model, user, type, status)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS applied (source TEXT PRIMARY KEY, offset INTEGER NOT NULL);
"""

INSERT_LOG = (
    f"INSERT INTO logs ({', '.join(LOG_COLUMNS)}) VALUES ({', '.join('?' * len(LOG_COLUMNS))})"
)
MERGE = (
    f"INSERT INTO summary ({', '.join(KEY + STATS)}) VALUES ({', '.join('?' * (len(KEY) + len(STATS)))})"
    f" ON CONFLICT (space, level, bucket, model, user, type, status) DO UPDATE SET "
    + ", ".join(
        f"{name} = max({name}, excluded.{name})"
        if name == "latency_max_us"
        else f"{name} = {name} + excluded.{name}"
        for name in STATS
    )
)
SUMS = ", ".join(f"MAX({name})" if name == "latency_max_us" else f"SUM({name})" for name in STATS)


def _log_row(r: LogRecord) -> tuple:
    return (
        r.id,
        r.space,
        r.ts,
        r.endpoint,
        r.model,
        r.version,
        r.user,
        r.status,
        r.type,
        json.dumps(list(r.tags)),
        r.latency_ms,
        r.request_bytes,
        r.response_bytes,
        r.tokens_in,
        r.tokens_out,
        r.correlation_id,
        r.error,
    )


def _record(row: sqlite3.Row | tuple) -> LogRecord:
    (
        id_,
        space,
        ts,
        endpoint,
        model,
        version,
        user,
        status,
        type_,
        tags,
        latency,
        req,
        resp,
        tin,
        tout,
        corr,
        error,
    ) = row
    return LogRecord(
        id=id_,
        space=space,
        endpoint=endpoint,
        model=model,
        version=version,
        user=user,
        status=status,
        type=type_,
        tags=tuple(json.loads(tags)),
        latency_ms=latency,
        request_bytes=req,
        response_bytes=resp,
        tokens_in=tin,
        tokens_out=tout,
        correlation_id=corr,
        error=error,
        ts=ts,
    )


def _where(f: LogFilters) -> tuple[str, list[Any]]:
    clauses, args = ["space = ?"], [f.space]
    if f.start is not None:
        clauses.append("ts >= ?")
        args.append(to_micros(f.start))
    if f.end is not None:
        clauses.append("ts < ?")
        args.append(to_micros(f.end))
    for name, want in f.dimensions().items():
        clauses.append(f"{name} = ?")
        args.append(want)
    if f.correlation_id is not None:
        clauses.append("correlation_id = ?")
        args.append(f.correlation_id)
    if f.tag is not None:
        clauses.append("EXISTS (SELECT 1 FROM json_each(logs.tags) WHERE value = ?)")
        args.append(f.tag)
    return " AND ".join(clauses), args


class SQLiteLogStore(LogStore):
    def __init__(self, path: str) -> None:
        self._path = path
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()

    async def open(self) -> None:
        if self._writer is None:
            self._writer = connect(self._path)
            self._writer.executescript(SCHEMA)
            self._reader = connect(self._path)

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        await self.open()
        async with self._write_lock:
            return await asyncio.to_thread(work, self._writer)

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        await self.open()
        async with self._read_lock:
            return await asyncio.to_thread(work, self._reader)

    async def ingest(self, source: str, records: Sequence[LogRecord]) -> int:
        if not records:
            return 0
        return await self._write(lambda db: _ingest(db, source, records))

    async def applied(self, source: str) -> int:
        def read(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT offset FROM applied WHERE source = ?", (source,)).fetchone()
            return row[0] if row else -1

        return await self._read(read)

    async def logs(
        self, filters: LogFilters, *, skip: int = 0, limit: int = 20
    ) -> tuple[int, list[LogRecord]]:
        where, args = _where(filters)

        def read(db: sqlite3.Connection) -> tuple[int, list[LogRecord]]:
            count = db.execute(f"SELECT COUNT(*) FROM logs WHERE {where}", args).fetchone()[0]
            rows = db.execute(
                f"SELECT {', '.join(LOG_COLUMNS)} FROM logs WHERE {where}"
                " ORDER BY ts DESC, id DESC LIMIT ? OFFSET ?",
                [*args, limit, skip],
            ).fetchall()
            return count, [_record(row) for row in rows]

        return await self._read(read)

    async def bucket_stats(
        self, space: str, level: int, first: int, end: int, dimensions: Mapping[str, Any]
    ) -> dict[str, Stats]:
        clauses = ["space = ?", "level = ?", "bucket >= ?", "bucket < ?"]
        args: list[Any] = [space, level, first, end]
        for name, want in dimensions.items():
            clauses.append(f"{name} = ?")
            args.append(want)
        sql = f"SELECT model, {SUMS} FROM summary WHERE {' AND '.join(clauses)} GROUP BY model"

        def read(db: sqlite3.Connection) -> dict[str, Stats]:
            return {row[0]: Stats.of_row(row[1:]) for row in db.execute(sql, args)}

        return await self._read(read)

    async def purge(self, before: datetime) -> int:
        cutoff = to_micros(before)
        return await self._write(
            lambda db: db.execute("DELETE FROM logs WHERE ts < ?", (cutoff,)).rowcount
        )

    async def close(self) -> None:
        async with self._write_lock, self._read_lock:
            for db in (self._writer, self._reader):
                if db is not None:
                    db.close()
            self._writer = self._reader = None


def _ingest(db: sqlite3.Connection, source: str, records: Sequence[LogRecord]) -> int:
    db.execute("BEGIN IMMEDIATE")
    try:
        fresh = _fresh(db, source, records)
        db.executemany(INSERT_LOG, [_log_row(r) for r in fresh])
        db.executemany(MERGE, [(*key, *stats.row()) for key, stats in bucket_deltas(fresh).items()])
        last = records[-1].offset
        if source != INPROC and last >= 0:
            db.execute(
                "INSERT INTO applied (source, offset) VALUES (?, ?) ON CONFLICT (source)"
                " DO UPDATE SET offset = excluded.offset WHERE excluded.offset > applied.offset",
                (source, last),
            )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return len(fresh)


def _fresh(db: sqlite3.Connection, source: str, records: Sequence[LogRecord]) -> list[LogRecord]:
    """The records not applied yet: past the source's offset, and with ids not stored."""
    row = db.execute("SELECT offset FROM applied WHERE source = ?", (source,)).fetchone()
    done = row[0] if row else -1
    by_id: dict[str, LogRecord] = {}
    for r in records:
        if (r.offset < 0 or r.offset > done) and r.id not in by_id:
            by_id[r.id] = r
    ids = list(by_id)
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        for (stored,) in db.execute(
            f"SELECT id FROM logs WHERE id IN ({','.join('?' * len(chunk))})", chunk
        ):
            del by_id[stored]
    return list(by_id.values())
