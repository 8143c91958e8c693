"""Optimistic concurrency under real contention: many writers, one stream, every adapter.

MongoDB (FerretDB) writers run concurrently with asyncio.gather over a connection pool. SQLite
calls do not yield to the event loop, so its writers are OS threads and processes opening the
same file (each append takes the write lock with BEGIN IMMEDIATE).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from backends import Backend
from mlplane.errors import ConcurrencyError
from mlplane.events import StoredEvent, new_id
from mlplane.eventstore import EventStore
from mlplane.eventstore.sqlite import SQLiteEventStore

WRITERS = 50


def ev(stream_id: str, writer: int, i: int = 0) -> StoredEvent:
    return StoredEvent(id=new_id(), stream_id=stream_id, type="Thing", data={"w": writer, "i": i})


async def append_once(store: EventStore, writer: int, expected: int) -> bool:
    try:
        await store.append("hot", [ev("hot", writer)], expected)
    except ConcurrencyError as err:
        assert (err.expected, err.actual) == (expected, expected + 1)
        return False
    return True


async def append_until_stored(store: EventStore, writer: int, count: int) -> int:
    """Append `count` events, each at the version just read; return the conflicts met."""
    conflicts = 0
    for i in range(count):
        while True:
            version = await store.stream_version("hot")
            try:
                await store.append("hot", [ev("hot", writer, i)], version)
                break
            except ConcurrencyError:
                conflicts += 1
    return conflicts


async def assert_one_unbroken_history(store: EventStore, per_writer: dict[int, int]) -> None:
    events = await store.read_stream("hot")
    assert [e.version for e in events] == list(range(1, sum(per_writer.values()) + 1))
    for writer, count in per_writer.items():
        assert [e.data["i"] for e in events if e.data["w"] == writer] == list(range(count))
    positions = [e.position for e in await store.read_all(1, 10_000)]
    assert positions == sorted(set(positions))


async def test_concurrent_appenders_at_one_version_exactly_one_wins_each_round(backend: Backend):
    store, rounds = backend.event_store(), 4
    for version in range(rounds):
        if backend.name == "sqlite":
            won = await asyncio.to_thread(threaded_at_once, str(backend.path), 8, version)
        else:
            won = await asyncio.gather(*(append_once(store, w, version) for w in range(WRITERS)))
        assert sum(won) == 1
    assert [e.version for e in await store.read_stream("hot")] == list(range(1, rounds + 1))
    assert [e.position for e in await store.read_all()] == list(range(1, rounds + 1))


async def test_concurrent_appenders_that_retry_leave_versions_without_gaps(backend: Backend):
    writers, count = 8, 3
    if backend.name == "sqlite":
        with ThreadPoolExecutor(writers) as pool:
            loop = asyncio.get_running_loop()
            await asyncio.gather(
                *(
                    loop.run_in_executor(pool, thread_writer, str(backend.path), w, count)
                    for w in range(writers)
                )
            )
    else:
        stores = [backend.event_store() for _ in range(4)]
        conflicts = await asyncio.gather(
            *(append_until_stored(stores[w % 4], w, count) for w in range(writers))
        )
        assert sum(conflicts) > 0  # the writers did contend
    await assert_one_unbroken_history(backend.event_store(), dict.fromkeys(range(writers), count))


async def test_sqlite_writers_in_separate_processes_leave_versions_without_gaps(tmp_path: Path):
    path, count = str(tmp_path / "events.db"), 10
    SQLiteEventStore(path)  # create the schema before the writers race
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(pool, process_writer, path, w, count) for w in range(4))
        )
    await assert_one_unbroken_history(SQLiteEventStore(path), dict.fromkeys(range(4), count))


def threaded_at_once(path: str, threads: int, expected: int) -> list[bool]:
    """`threads` writers, each with its own connection, released together at one version."""
    barrier = threading.Barrier(threads)

    def one(writer: int) -> bool:
        store = SQLiteEventStore(path)
        barrier.wait()
        return asyncio.run(append_once(store, writer, expected))

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(threads)))


def thread_writer(path: str, writer: int, count: int) -> int:
    return asyncio.run(append_until_stored(SQLiteEventStore(path), writer, count))


def process_writer(path: str, writer: int, count: int) -> int:
    return asyncio.run(append_until_stored(SQLiteEventStore(path), writer, count))
