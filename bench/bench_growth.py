"""growth: the same work with 100,000 events stored ÷ with 1,000 stored, same server, same run.

A store that serves appends and stream reads from its indexes does both at the same pace
whatever the size of the log; one that scans slows down as the log grows. Two logs are filled on
the same server (two SQLite files, or two collection prefixes in one MongoDB database): a small
one with `small` events and a large one with `large`, in commits of 1,000 events. Then, rounds
alternating between the two logs (the machine is shared, so the best round of each counts):

- append: single-event appends, each creating a new stream (the store reads that stream's
  version, then inserts);
- load: reading one aggregate of 50 events, written as 50 appends of one event (the way an
  entity's history accumulates), and decoding them, as the kernel does before each command.

The ratio is the large log's rate ÷ the small log's; `raw` in the table is the small log's rate.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from common import Result, Timer, event, rate, registry
from mlplane.eventlog import EventLog

ROUNDS = 3
FILL_COMMIT = 1_000
AGGREGATE_EVENTS = 50
TARGET = 0.8


async def _fill(log: EventLog, total: int) -> None:
    for start in range(0, total, FILL_COMMIT):
        size = min(FILL_COMMIT, total - start)
        await log.append(f"fill-{start}", [event(i) for i in range(start, start + size)], 0)


async def _aggregate(log: EventLog) -> str:
    stream = f"aggregate-{uuid.uuid4().hex[:8]}"
    for version in range(AGGREGATE_EVENTS):
        await log.append(stream, [event(version)], version)
    return stream


async def _appends(log: EventLog, count: int) -> float:
    tag = uuid.uuid4().hex[:8]
    with Timer() as t:
        for i in range(count):
            await log.append(f"new-{tag}-{i}", [event(i)], None)
    return t.seconds


async def _loads(log: EventLog, stream: str, count: int) -> float:
    with Timer() as t:
        for _ in range(count):
            assert len(await log.read_stream(stream)) == AGGREGATE_EVENTS
    return t.seconds


async def _growth(
    label: str, logs: dict[str, EventLog], sizes: dict[str, int], appends: int, loads: int
) -> list[Result]:
    for size, log in logs.items():
        await _fill(log, sizes[size])
    streams = {size: await _aggregate(log) for size, log in logs.items()}
    append_s: dict[str, list[float]] = {size: [] for size in logs}
    load_s: dict[str, list[float]] = {size: [] for size in logs}
    for _ in range(ROUNDS):
        for size, log in logs.items():
            append_s[size].append(await _appends(log, appends))
            load_s[size].append(await _loads(log, streams[size], loads))
    return [
        _result(f"growth.append.{label}", append_s, appends, sizes, "appends/s"),
        _result(f"growth.load50.{label}", load_s, loads, sizes, "loads/s"),
    ]


def _result(
    name: str, seconds: dict[str, list[float]], count: int, sizes: dict[str, int], unit: str
) -> Result:
    small, large = rate(count, min(seconds["small"])), rate(count, min(seconds["large"]))
    return Result(
        name,
        large / small,
        TARGET,
        True,
        {
            "stored_small": sizes["small"],
            "stored_large": sizes["large"],
            "per_round": count,
            "rounds": ROUNDS,
            "small_per_s": round(small, 1),
            "large_per_s": round(large, 1),
        },
        ours=large,
        raw=small,
        unit=unit,
    )


async def sqlite_growth(small: int, large: int, appends: int, loads: int) -> list[Result]:
    from mlplane.eventstore.sqlite import SQLiteEventStore
    from mlplane.keystore.sqlite import SQLiteKeyStore

    tmp = Path(tempfile.mkdtemp(prefix="mlplane-bench-growth-"))
    stores = {size: SQLiteEventStore(str(tmp / f"{size}.db")) for size in ("small", "large")}
    logs = {
        size: EventLog(store, registry, SQLiteKeyStore(str(tmp / f"{size}-keys.db")))
        for size, store in stores.items()
    }
    try:
        return await _growth("sqlite", logs, {"small": small, "large": large}, appends, loads)
    finally:
        for store in stores.values():
            await store.close()


async def mongo_growth(url: str, small: int, large: int, appends: int, loads: int) -> list[Result]:
    from mlplane.adapters import mongo_database
    from mlplane.eventstore.mongo import MongoEventStore
    from mlplane.keystore.mongo import MongoKeyStore

    db = mongo_database(url)
    prefixes = {size: f"bench{uuid.uuid4().hex[:8]}_" for size in ("small", "large")}
    logs = {
        size: EventLog(MongoEventStore(db, p), registry, MongoKeyStore(db, p))
        for size, p in prefixes.items()
    }
    try:
        return await _growth("mongo", logs, {"small": small, "large": large}, appends, loads)
    finally:
        await _drop(db, tuple(prefixes.values()))
        db.client.close()


async def _drop(db, prefixes: tuple[str, ...]) -> None:
    for name in await db.list_collection_names():
        if name.startswith(prefixes):
            await db.drop_collection(name)


if __name__ == "__main__":
    import asyncio
    import sys

    url = sys.argv[1] if len(sys.argv) > 1 else None
    run = (
        mongo_growth(url, 1_000, 100_000, 100, 100)
        if url
        else sqlite_growth(1_000, 100_000, 200, 200)
    )
    for result in asyncio.run(run):
        print(result.record())
