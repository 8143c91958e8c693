"""SQLite event store: the embedded default (one file, WAL mode).

Positions are the table's integer primary key, assigned inside the write transaction.
SQLite admits one writer at a time, so positions commit in order and a reader never sees a
later position before an earlier one.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Sequence
from datetime import datetime

from ..errors import ConcurrencyError
from ..events import StoredEvent
from .base import EventStore, check_batch, stored_batch

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position     INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    stream_id    TEXT NOT NULL,
    version      INTEGER NOT NULL,
    type         TEXT NOT NULL,
    type_version INTEGER NOT NULL,
    time         TEXT NOT NULL,
    data         TEXT NOT NULL,
    meta         TEXT NOT NULL,
    UNIQUE (stream_id, version)
);
"""

COLUMNS = "position, id, stream_id, version, type, type_version, time, data, meta"


BUSY_TIMEOUT_S = 10.0


def connect(path: str) -> sqlite3.Connection:
    """Open a SQLite file the way every mlplane adapter wants it."""
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
    )
    _use_wal(conn)
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL mode (it stays so), waiting out other connections.

    SQLite answers "database is locked" at once, without its busy timeout, when another
    connection holds the file while the mode changes: processes opening a new file together.
    """
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
        return
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _rows(events: Sequence[StoredEvent]) -> list[tuple]:
    """Rows to insert; the metadata, shared by the events of one append, is encoded once."""
    rows, meta, meta_json = [], None, ""
    for ev in events:
        if ev.meta != meta:
            meta, meta_json = ev.meta, json.dumps(ev.meta, separators=(",", ":"))
        rows.append(
            (
                ev.position,
                ev.id,
                ev.stream_id,
                ev.version,
                ev.type,
                ev.type_version,
                ev.time.isoformat(),
                ev.raw,
                meta_json,
            )
        )
    return rows


def _event(row: tuple) -> StoredEvent:
    position, id_, stream_id, version, type_, type_version, time, data, meta = row
    return StoredEvent(
        id_,
        stream_id,
        type_,
        None,
        type_version,
        version,
        position,
        datetime.fromisoformat(time),
        _meta(meta),
        raw=data,
    )


@functools.lru_cache(maxsize=4096)
def _meta(raw: str) -> dict:
    """Metadata repeats across the events of one append and one request: parse it once."""
    return json.loads(raw)


class SQLiteEventStore(EventStore):
    def __init__(self, path: str) -> None:
        self._db = connect(path)
        self._db.executescript(SCHEMA)

    async def append(
        self, stream_id: str, events: Sequence[StoredEvent], expected_version: int | None
    ) -> list[StoredEvent]:
        if not events:
            return []
        check_batch(stream_id, events)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            current, head = db.execute(
                "SELECT (SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?),"
                " (SELECT COALESCE(MAX(position), 0) FROM events)",
                (stream_id,),
            ).fetchone()
            if expected_version is not None and current != expected_version:
                existing = self._already_stored(events)
                if existing is not None:  # a retry of an append that went through
                    db.execute("ROLLBACK")
                    return existing
                raise ConcurrencyError(stream_id, expected_version, current)
            stored = [ev.at(current + i, head + i) for i, ev in enumerate(events, start=1)]
            try:
                db.executemany(
                    f"INSERT INTO events ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                    _rows(stored),
                )
            except sqlite3.IntegrityError:  # an event id already stored: an idempotent retry
                db.execute("ROLLBACK")
                existing = self._already_stored(events)
                if existing is None:
                    raise
                return existing
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return stored

    def _already_stored(self, events: Sequence[StoredEvent]) -> list[StoredEvent] | None:
        ids = [ev.id for ev in events]
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(
            f"SELECT {COLUMNS} FROM events WHERE id IN ({marks}) ORDER BY position", ids
        ).fetchall()
        return stored_batch(events, [_event(r) for r in rows])

    async def read_stream(
        self, stream_id: str, from_version: int = 1, to_version: int | None = None
    ) -> list[StoredEvent]:
        rows = self._db.execute(
            f"SELECT {COLUMNS} FROM events WHERE stream_id = ? AND version >= ? AND version <= ?"
            " ORDER BY version",
            (stream_id, from_version, to_version if to_version is not None else 2**62),
        ).fetchall()
        return [_event(r) for r in rows]

    async def read_all(self, from_position: int = 1, limit: int = 1000) -> list[StoredEvent]:
        rows = self._db.execute(
            f"SELECT {COLUMNS} FROM events WHERE position >= ? ORDER BY position LIMIT ?",
            (from_position, limit),
        ).fetchall()
        return [_event(r) for r in rows]

    async def head_position(self) -> int:
        return self._db.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()[0]

    async def stream_version(self, stream_id: str) -> int:
        return self._db.execute(
            "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?", (stream_id,)
        ).fetchone()[0]

    async def close(self) -> None:
        self._db.close()
