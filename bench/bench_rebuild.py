"""rebuild: events/s of a projection rebuild ÷ a raw cursor read of the same events."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path

from common import Result, Timer, event, rate, registry
from mlplane.eventlog import EventLog
from mlplane.projections import Projection, ProjectionRunner, build_into, content_hash


class ModelTotals(Projection):
    """Per model: how many events and the sum of their values."""

    name = "bench_model_totals"
    handles = frozenset({"BenchRecorded"})

    def key(self, event):
        return event.data.model

    def evolve(self, doc, event):
        doc = doc or {"count": 0, "total": 0}
        return {"count": doc["count"] + 1, "total": doc["total"] + event.data.value}


async def _fill(log: EventLog, total: int) -> None:
    for start in range(0, total, 500):
        end = min(start + 500, total)
        await log.append(f"fill-{start}", [event(i) for i in range(start, end)], 0)


async def _measure(log: EventLog, docs, raw_read, total: int, label: str) -> Result:
    projection = ModelTotals()
    await ProjectionRunner(projection, log, docs).run_once()
    scratch = f"{projection.name}__bench"
    with Timer() as ours:
        await build_into(projection, log, docs, scratch)
    with Timer() as raw:
        count = await raw_read()
    assert count == total, (count, total)
    live_hash = content_hash(await docs.all_docs(projection.name))
    rebuilt_hash = content_hash(await docs.all_docs(scratch))
    return Result(
        name=f"rebuild.{label}",
        ratio=rate(total, ours.seconds) / rate(total, raw.seconds),
        target=0.5,
        higher_is_better=True,
        detail={
            "events": total,
            "rebuild_events_per_s": round(rate(total, ours.seconds)),
            "raw_cursor_events_per_s": round(rate(total, raw.seconds)),
            "rebuilt_hash_equals_live": live_hash == rebuilt_hash,
        },
        ours=rate(total, ours.seconds),
        raw=rate(total, raw.seconds),
        unit="events/s",
    )


async def sqlite_rebuild(total: int) -> Result:
    from mlplane.eventstore.sqlite import SQLiteEventStore
    from mlplane.keystore.sqlite import SQLiteKeyStore
    from mlplane.readmodels.sqlite import SQLiteReadModels

    tmp = Path(tempfile.mkdtemp())
    store = SQLiteEventStore(str(tmp / "e.db"))
    log = EventLog(store, registry, SQLiteKeyStore(str(tmp / "k.db")))
    await _fill(log, total)

    async def raw_read() -> int:
        """Rows decoded to documents, as a Mongo driver hands them out."""
        cursor = store._db.execute("SELECT data FROM events ORDER BY position")
        return sum(
            len([json.loads(r[0]) for r in rows])
            for rows in iter(lambda: cursor.fetchmany(2000), [])
        )

    return await _measure(log, SQLiteReadModels(str(tmp / "e.db")), raw_read, total, "sqlite")


async def mongo_rebuild(url: str, total: int) -> Result:
    from mlplane.adapters import mongo_database
    from mlplane.eventstore.mongo import MongoEventStore
    from mlplane.keystore.mongo import MongoKeyStore
    from mlplane.readmodels.mongo import MongoReadModels

    db = mongo_database(url)
    prefix = f"bench{uuid.uuid4().hex[:8]}_"
    store = MongoEventStore(db, prefix)
    log = EventLog(store, registry, MongoKeyStore(db, prefix))
    await _fill(log, total)

    async def raw_read() -> int:
        n = 0
        async for commit in db[f"{prefix}events"].find().sort("_id", 1):
            n += len(commit["events"])
        return n

    try:
        return await _measure(log, MongoReadModels(db, prefix), raw_read, total, "mongo")
    finally:
        for name in await db.list_collection_names():
            if name.startswith(prefix):
                await db.drop_collection(name)
        db.client.close()
