"""SQLite log store: raw logs, summary buckets and applied offsets in one file, one transaction
per ingested batch.

Summary rows keep the histogram as columns, so a summary is one `SUM(...) GROUP BY model` per
bucket level, computed inside SQLite. Buckets are kept twice: per user (`summary`, keyed by user
before time, so a user's summary reads only that user's rows) and over all users
(`summary_all`, 25 times fewer rows in a space with 25 users), which answers every summary that
does not filter on a user.

Reads run in a thread; writes in a thread too, or in a process of their own (`WriterProcess`),
so storing a batch never stalls the event loop that fetches the next one.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from multiprocessing.connection import Connection
from operator import attrgetter
from typing import Any, TypeVar

from mlplane.eventstore.sqlite import connect

from ..aggregate import (
    HIST_SIZE,
    LOG_FIELDS,
    STAT_FIELDS,
    LogRecord,
    Stats,
    bucket_deltas,
    over_all_users,
    to_micros,
)
from .base import INPROC, LogFilters, LogStore

T = TypeVar("T")
FIELD_VALUES = attrgetter(*LOG_FIELDS)

HIST = [f"h{i}" for i in range(HIST_SIZE)]
STATS = [*STAT_FIELDS, *HIST]
KEY = ["level", "bucket", "space", "model", "user", "type", "status"]
"""The columns of a bucket key, in `aggregate.BucketKey` order."""
ALL_USERS_KEY = [name for name in KEY if name != "user"]
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
    id TEXT NOT NULL PRIMARY KEY, space TEXT NOT NULL, ts INTEGER NOT NULL, endpoint TEXT NOT NULL,
    model TEXT NOT NULL, version TEXT NOT NULL, user TEXT NOT NULL, status TEXT NOT NULL,
    type TEXT NOT NULL, tags TEXT NOT NULL, latency_ms REAL NOT NULL,
    request_bytes INTEGER NOT NULL, response_bytes INTEGER NOT NULL,
    tokens_in INTEGER, tokens_out INTEGER, correlation_id TEXT NOT NULL, error TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS logs_by_time ON logs (space, ts);
CREATE INDEX IF NOT EXISTS logs_by_correlation ON logs (space, correlation_id);
CREATE TABLE IF NOT EXISTS spaces (space TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS summary (
    space TEXT NOT NULL, level INTEGER NOT NULL, user TEXT NOT NULL, bucket INTEGER NOT NULL,
    model TEXT NOT NULL, type TEXT NOT NULL, status TEXT NOT NULL,
    {", ".join(f"{name} INTEGER NOT NULL" for name in STATS)},
    PRIMARY KEY (space, level, user, bucket, model, type, status)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS summary_all (
    space TEXT NOT NULL, level INTEGER NOT NULL, bucket INTEGER NOT NULL,
    model TEXT NOT NULL, type TEXT NOT NULL, status TEXT NOT NULL,
    {", ".join(f"{name} INTEGER NOT NULL" for name in STATS)},
    PRIMARY KEY (space, level, bucket, model, type, status)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS applied (source TEXT PRIMARY KEY, offset INTEGER NOT NULL);
"""
CACHE = "PRAGMA cache_size = -65536"
"""64 MiB of page cache per connection: the indexes of a busy log take random inserts."""

INSERT_LOG = (
    f"INSERT INTO logs ({', '.join(LOG_COLUMNS)}) VALUES ({', '.join('?' * len(LOG_COLUMNS))})"
)


def _merge(table: str, key: list[str]) -> str:
    """Add a delta row to a bucket row (inserting it if new)."""
    columns = key + STATS
    updates = ", ".join(
        f"{name} = max({name}, excluded.{name})"
        if name == "latency_max_us"
        else f"{name} = {name} + excluded.{name}"
        for name in STATS
    )
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


MERGE = _merge("summary", KEY)
MERGE_ALL_USERS = _merge("summary_all", ALL_USERS_KEY)
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
    """`writer="process"` writes from a process of its own (see `WriterProcess`); the default
    writes from a thread of this one."""

    def __init__(self, path: str, *, writer: str = "thread") -> None:
        if writer not in ("thread", "process"):
            raise ValueError("writer is 'thread' or 'process'")
        self._path = path
        self._in_process = writer == "process"
        self._writer: sqlite3.Connection | WriterProcess | None = None
        self._reader: sqlite3.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()

    async def open(self) -> None:
        if self._reader is None:
            self._reader = await asyncio.to_thread(_open, self._path)
        if self._writer is None:
            self._writer = await asyncio.to_thread(
                WriterProcess if self._in_process else _open, self._path
            )

    async def _write(self, op: str, *args: Any) -> Any:
        await self.open()
        async with self._write_lock:
            writer = self._writer
            if isinstance(writer, WriterProcess):
                try:
                    return await asyncio.to_thread(writer.call, op, *args)
                except (EOFError, OSError):
                    self._writer = None  # the process died: the next write starts another
                    await asyncio.to_thread(writer.close)
                    raise
            return await asyncio.to_thread(OPERATIONS[op], writer, *args)

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        await self.open()
        async with self._read_lock:
            return await asyncio.to_thread(work, self._reader)

    async def ingest_many(self, batches: Mapping[str, Sequence[LogRecord]]) -> int:
        if not any(batches.values()):
            return 0
        if self._in_process:  # field tuples pickle several times faster than the records
            return await self._write(
                "ingest_rows", {k: list(map(FIELD_VALUES, v)) for k, v in batches.items()}
            )
        return await self._write("ingest", batches)

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

    async def log(self, space: str, log_id: str) -> LogRecord | None:
        sql = f"SELECT {', '.join(LOG_COLUMNS)} FROM logs WHERE id = ? AND space = ?"

        def read(db: sqlite3.Connection) -> LogRecord | None:
            row = db.execute(sql, (log_id, space)).fetchone()
            return None if row is None else _record(row)

        return await self._read(read)

    async def all_logs(self, filters: LogFilters) -> list[LogRecord]:
        where, args = _where(filters)
        sql = f"SELECT {', '.join(LOG_COLUMNS)} FROM logs WHERE {where}"
        return await self._read(lambda db: [_record(row) for row in db.execute(sql, args)])

    async def bucket_stats(
        self, space: str, level: int, first: int, end: int, dimensions: Mapping[str, Any]
    ) -> dict[str, Stats]:
        table = "summary" if "user" in dimensions else "summary_all"
        clauses = ["space = ?", "level = ?", "bucket >= ?", "bucket < ?"]
        args: list[Any] = [space, level, first, end]
        for name, want in dimensions.items():
            clauses.append(f"{name} = ?")
            args.append(want)
        sql = f"SELECT model, {SUMS} FROM {table} WHERE {' AND '.join(clauses)} GROUP BY model"

        def read(db: sqlite3.Connection) -> dict[str, Stats]:
            return {row[0]: Stats.of_row(row[1:]) for row in db.execute(sql, args)}

        return await self._read(read)

    async def purge(self, before: datetime) -> int:
        return await self._write("purge", to_micros(before))

    async def close(self) -> None:
        async with self._write_lock, self._read_lock:
            for held in (self._writer, self._reader):
                if held is not None:
                    await asyncio.to_thread(held.close)
            self._writer = self._reader = None


def _open(path: str) -> sqlite3.Connection:
    db = connect(path)
    db.executescript(SCHEMA)
    db.execute(CACHE)
    return db


class WriterProcess:
    """The store's writes, done by a child process: batches go down a socket, results come back.

    Ingesting is CPU work (decoding in this process, folding and SQLite's B-trees in the
    writer); in two processes it runs on two cores instead of sharing one interpreter lock.
    The child ends when the socket closes, so it never outlives its parent by more than the
    write in hand; a write it finished after its parent died is found applied on redelivery.
    """

    def __init__(self, path: str) -> None:
        ours, theirs = socket.socketpair()
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, path, str(theirs.fileno())], pass_fds=[theirs.fileno()]
        )
        theirs.close()
        self._conn = Connection(ours.detach())
        self.call("ping")

    def call(self, op: str, *args: Any) -> Any:
        self._conn.send((op, args))
        ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        self._conn.close()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _serve(path: str, conn: Connection) -> None:
    db = _open(path)
    while True:
        try:
            op, args = conn.recv()
        except (EOFError, OSError):
            break
        try:
            reply = (True, OPERATIONS[op](db, *args))
        except Exception as exc:  # noqa: BLE001 - the parent raises it
            reply = (False, f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except OSError:
            break
    db.close()


def _purge(db: sqlite3.Connection, cutoff: int) -> int:
    spaces = [space for (space,) in db.execute("SELECT space FROM spaces")]
    return sum(
        db.execute("DELETE FROM logs WHERE space = ? AND ts < ?", (space, cutoff)).rowcount
        for space in spaces
    )


def _ingest(db: sqlite3.Connection, batches: Mapping[str, Sequence[LogRecord]]) -> int:
    """One transaction for every source's batch: raw logs, merged bucket deltas, offsets."""
    db.execute("BEGIN IMMEDIATE")
    try:
        fresh = _insert_raw(db, _unapplied(db, batches))
        deltas = bucket_deltas(fresh)
        db.executemany(MERGE, [(*key, *stats.row()) for key, stats in deltas.items()])
        db.executemany(
            MERGE_ALL_USERS, [(*key, *stats.row()) for key, stats in over_all_users(deltas).items()]
        )
        db.executemany(
            "INSERT OR IGNORE INTO spaces (space) VALUES (?)",
            [(s,) for s in {r.space for r in fresh}],
        )
        db.executemany(
            "INSERT INTO applied (source, offset) VALUES (?, ?) ON CONFLICT (source)"
            " DO UPDATE SET offset = excluded.offset WHERE excluded.offset > applied.offset",
            [
                (source, records[-1].offset)
                for source, records in batches.items()
                if source != INPROC and records and records[-1].offset >= 0
            ],
        )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return len(fresh)


def _unapplied(
    db: sqlite3.Connection, batches: Mapping[str, Sequence[LogRecord]]
) -> list[LogRecord]:
    """The records past their source's applied offset, each id once."""
    by_id: dict[str, LogRecord] = {}
    for source, records in batches.items():
        row = db.execute("SELECT offset FROM applied WHERE source = ?", (source,)).fetchone()
        done = row[0] if row else -1
        for r in records:
            if (r.offset < 0 or r.offset > done) and r.id not in by_id:
                by_id[r.id] = r
    return list(by_id.values())


def _insert_raw(db: sqlite3.Connection, records: list[LogRecord]) -> list[LogRecord]:
    """Insert the raw logs whose ids are not stored yet; return those. A batch without a
    stored id (the usual case) is one insert; one with, takes a lookup of its ids first."""
    db.execute("SAVEPOINT raw")
    try:
        db.executemany(INSERT_LOG, [_log_row(r) for r in records])
    except sqlite3.IntegrityError:
        db.execute("ROLLBACK TO raw")
        stored: set[str] = set()
        ids = [r.id for r in records]
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            query = f"SELECT id FROM logs WHERE id IN ({','.join('?' * len(chunk))})"
            stored.update(found for (found,) in db.execute(query, chunk))
        records = [r for r in records if r.id not in stored]
        db.executemany(INSERT_LOG, [_log_row(r) for r in records])
    db.execute("RELEASE raw")
    return records


def _ingest_rows(db: sqlite3.Connection, batches: Mapping[str, Sequence[tuple]]) -> int:
    return _ingest(
        db, {source: [LogRecord(*row) for row in rows] for source, rows in batches.items()}
    )


OPERATIONS: dict[str, Callable[..., Any]] = {
    "ingest": _ingest,
    "ingest_rows": _ingest_rows,
    "purge": _purge,
    "ping": lambda db: True,
}


if __name__ == "__main__":
    _serve(sys.argv[1], Connection(int(sys.argv[2])))
