"""Consumers killed with SIGKILL at random points lose nothing and apply nothing twice.

A writer appends 10,000 counter events over a few seconds while a consumer process (the
projection runner, or a Kafka consumer folding into a read model) is killed again and again.
After a last run catches up, every stream's count and sum equal what was appended, no event
was folded out of stream order, and the read model equals a rebuild from the log.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable

import pytest
from backbone_proc import (
    CounterTotals,
    Proc,
    append_slowly,
    counter_registry,
    expected_totals,
    open_log,
    totals,
)
from mlplane import adapters
from mlplane.bus.kafka import KafkaBus
from mlplane.outbox import OutboxRelay
from mlplane.projections import build_into, content_hash, verify

EVENTS = 10_000
STREAMS = 50
KILLS = 10
SEED = int(os.environ.get("MLPLANE_CRASH_SEED", time.time_ns() % 10_000))


async def poll(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s (seed {SEED})")
        await asyncio.sleep(0.1)


async def kill_repeatedly(
    make: Callable[[], Proc],
    ready: str,
    writer: asyncio.Task,
    progress: Callable[[], Awaitable[int]],
    rng: random.Random,
) -> int:
    """Start the consumer, let it work for a random while, SIGKILL it; again, at least
    KILLS times and for as long as the writer is still appending. Returns how many kills
    struck a consumer that was making progress."""
    kills = mid_work = 0
    while kills < KILLS or not writer.done():
        before = await progress()
        proc = await make().start()
        try:
            await proc.wait_for(ready)
            await asyncio.sleep(rng.uniform(0.1, 0.8))
        finally:
            await proc.kill()
        kills += 1
        mid_work += await progress() > before
    await writer  # surface a writer failure
    print(f"{kills} kills, {mid_work} of them mid-work (seed {SEED})")
    return mid_work


async def rebuilt_equals_live(log, docs) -> None:
    live = await docs.all_docs(CounterTotals.name)
    scratch = f"{CounterTotals.name}__rebuilt"
    await build_into(CounterTotals(), log, docs, scratch)
    try:
        assert content_hash(live) == content_hash(await docs.all_docs(scratch))
    finally:
        await docs.drop(scratch)


async def test_projection_runner_killed_at_random_points_loses_and_repeats_nothing(
    tmp_path, sqlite_url
):
    rng = random.Random(SEED)
    log = open_log(sqlite_url, "", "mlplane.counters")
    docs = adapters.read_models(sqlite_url)
    writer = asyncio.create_task(append_slowly(log, EVENTS, STREAMS, seconds=8))

    def runner() -> Proc:
        return Proc(
            "project",
            "--events",
            sqlite_url,
            "--batch-size",
            "50",
            log_path=str(tmp_path / "project.log"),
        )

    mid_work = await kill_repeatedly(
        runner, "projecting", writer, lambda: docs.get_checkpoint(CounterTotals.name), rng
    )

    last = await runner().start()
    try:
        head = await log.store.head_position()
        await poll(lambda: _checkpoint_at(docs, head), 60, "projection catch-up")
    finally:
        await last.kill()
    assert mid_work >= KILLS // 2, f"only {mid_work} kills struck a working consumer (seed {SEED})"
    assert totals(await docs.all_docs(CounterTotals.name)) == expected_totals(EVENTS, STREAMS)
    assert (await verify(CounterTotals(), log, docs)).empty
    await rebuilt_equals_live(log, docs)


async def _checkpoint_at(docs, position: int) -> bool:
    return await docs.get_checkpoint(CounterTotals.name) >= position


READ_MODELS = [
    pytest.param("sqlite", EVENTS, id="sqlite"),
    # FerretDB answers one read-model round trip in milliseconds (tens under load), and the
    # consumer makes two per event: a smaller run keeps the test within its time budget
    pytest.param("mongo", 2_000, id="mongo", marks=pytest.mark.mongo),
]


@pytest.fixture
async def read_model_url(request, unique, sqlite_url):
    """Where the consumer keeps its read model; a Mongo test's collections are dropped after."""
    if request.param == "sqlite":
        yield sqlite_url
        return
    url = request.getfixturevalue("mongo_url")
    yield url
    db = adapters.mongo_database(url)
    for name in await db.list_collection_names():
        if name.startswith(unique):
            await db.drop_collection(name)
    db.client.close()


@pytest.mark.kafka
@pytest.mark.parametrize(("read_model_url", "events"), READ_MODELS, indirect=["read_model_url"])
async def test_kafka_consumer_killed_at_random_points_loses_and_repeats_nothing(
    tmp_path, sqlite_url, read_model_url, events, kafka_bootstrap, unique
):
    rng = random.Random(SEED)
    topic = f"mlplane.{unique}counters"
    log = open_log(sqlite_url, "", topic)
    checkpoints = adapters.read_models(sqlite_url)
    docs = adapters.read_models(read_model_url, unique)
    bus = KafkaBus(kafka_bootstrap)
    await bus.start()
    relay = OutboxRelay(
        log.store, checkpoints, bus, counter_registry(topic), poll_interval=0.05, wake=log.waker()
    )
    relaying = asyncio.create_task(relay.run())
    writer = asyncio.create_task(append_slowly(log, events, STREAMS, seconds=8))

    def consumer() -> Proc:
        return Proc(
            "consume",
            "--readmodels",
            read_model_url,
            "--prefix",
            unique,
            "--topic",
            topic,
            "--bus",
            f"kafka://{kafka_bootstrap}",
            "--group",
            f"{unique}totals",
            "--instance",
            f"{unique}totals-0",
            log_path=str(tmp_path / "consume.log"),
        )

    try:
        mid_work = await kill_repeatedly(consumer, "consuming", writer, lambda: _folded(docs), rng)
        last = await consumer().start()
        try:
            await poll(lambda: _all_folded(docs, events), 60, "consumer catch-up")
        finally:
            await last.kill()
    finally:
        relay.stop()
        log.notify()
        await asyncio.wait_for(relaying, 10)
        await bus.stop()
    assert mid_work >= KILLS // 2, f"only {mid_work} kills struck a working consumer (seed {SEED})"
    assert totals(await docs.all_docs(CounterTotals.name)) == expected_totals(events, STREAMS)
    await rebuilt_equals_live(log, docs)


async def _folded(docs) -> int:
    return sum(doc["count"] for doc in (await docs.all_docs(CounterTotals.name)).values())


async def _all_folded(docs, events: int) -> bool:
    return await _folded(docs) >= events
