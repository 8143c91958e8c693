"""append: events/s through the event log ÷ raw inserts of the same rows on the same server."""

from __future__ import annotations

import json
import sqlite3
import tempfile
import uuid
from pathlib import Path

from common import Result, Timer, event, rate, registry
from mlplane.eventlog import EventLog
from mlplane.eventstore.sqlite import COLUMNS, SCHEMA, connect
from mlplane.keystore.sqlite import SQLiteKeyStore


def _batches(total: int, size: int) -> list[list]:
    return [[event(i) for i in range(start, start + size)] for start in range(0, total, size)]


async def _through_log(log: EventLog, batches: list[list]) -> float:
    with Timer() as t:
        for n, batch in enumerate(batches):
            await log.append(f"bench-{n % 100}", batch, None)
    return t.seconds


def _documents(batches: list[list]) -> list[list]:
    """The same events as plain documents (what a caller of the raw driver would hold)."""
    out, position = [], 0
    for n, batch in enumerate(batches):
        docs = []
        for v, ev in enumerate(batch, 1):
            position += 1
            docs.append(registry.to_stored(f"raw-{n}", ev, source="mlplane").at(v, position))
        out.append(docs)
    return out


def _raw_sqlite(db: sqlite3.Connection, batches: list[list]) -> float:
    """executemany of the same documents; JSON encoding is timed, as a Mongo driver's BSON is."""
    with Timer() as t:
        for batch in batches:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                f"INSERT INTO events ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        d.position,
                        d.id,
                        d.stream_id,
                        d.version,
                        d.type,
                        d.type_version,
                        d.time.isoformat(),
                        json.dumps(d.data),
                        json.dumps(d.meta),
                    )
                    for d in batch
                ],
            )
            db.execute("COMMIT")
    return t.seconds


async def sqlite_append(total: int, size: int) -> Result:
    from mlplane.eventstore.sqlite import SQLiteEventStore

    tmp = Path(tempfile.mkdtemp())
    log = EventLog(
        SQLiteEventStore(str(tmp / "log.db")), registry, SQLiteKeyStore(str(tmp / "k.db"))
    )
    batches = _batches(total, size)
    ours = await _through_log(log, batches)
    raw_db = connect(str(tmp / "raw.db"))
    raw_db.executescript(SCHEMA)
    raw = _raw_sqlite(raw_db, _documents(batches))
    return Result(
        name=f"append.sqlite.batch{size}",
        ratio=rate(total, ours) / rate(total, raw),
        target=0.7,
        higher_is_better=True,
        detail={
            "events": total,
            "mlplane_events_per_s": round(rate(total, ours)),
            "raw_executemany_events_per_s": round(rate(total, raw)),
        },
        ours=rate(total, ours),
        raw=rate(total, raw),
        unit="events/s",
    )


async def mongo_append(url: str, total: int, size: int) -> Result:
    from mlplane.adapters import mongo_database
    from mlplane.eventstore.mongo import MongoEventStore
    from mlplane.keystore.mongo import MongoKeyStore

    db = mongo_database(url)
    prefix = f"bench{uuid.uuid4().hex[:8]}_"
    log = EventLog(MongoEventStore(db, prefix), registry, MongoKeyStore(db, prefix))
    batches = _batches(total, size)
    await log.append("warmup", [event(0)], None)
    ours = await _through_log(log, batches)
    raw_coll = db[f"{prefix}raw"]
    docs = [
        [
            {
                "_id": uuid.uuid4().hex,
                "stream_id": f"raw-{n}",
                "version": v,
                "type": ev.type_name,
                "data": json.loads(ev.model_dump_json()),
                "meta": {"source": "mlplane"},
            }
            for v, ev in enumerate(batch, 1)
        ]
        for n, batch in enumerate(batches)
    ]
    with Timer() as t:
        for batch in docs:
            await raw_coll.insert_many(batch)
    for name in await db.list_collection_names():
        if name.startswith(prefix):
            await db.drop_collection(name)
    db.client.close()
    return Result(
        name=f"append.mongo.batch{size}",
        ratio=rate(total, ours) / rate(total, t.seconds),
        target=0.7,
        higher_is_better=True,
        detail={
            "events": total,
            "mlplane_events_per_s": round(rate(total, ours)),
            "raw_insert_many_events_per_s": round(rate(total, t.seconds)),
            "note": "one append = one commit document insert; a stream this store has not seen"
            " yet costs one indexed read of its version first",
        },
        ours=rate(total, ours),
        raw=rate(total, t.seconds),
        unit="events/s",
    )
