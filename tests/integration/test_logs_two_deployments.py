"""Two deployments on one Kafka broker, told apart by `MLPLANE_PREFIX`: the inference-log
ingest of one reads its own platform's topic with its own group, and stores none of the other's
logs though both publish on what each calls `mlplane.inference`."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
from logs_samples import inference_event
from mlplane.bus.kafka import KafkaBus

from services.logs.ingest import TOPIC, KafkaIngest, publish_logs
from services.logs.store import LogFilters
from services.logs.store.sqlite import SQLiteLogStore

pytestmark = pytest.mark.kafka


async def publish(bootstrap: str, prefix: str, space: str, count: int) -> list[str]:
    rng = random.Random(space)
    bus = KafkaBus(bootstrap, prefix=prefix)
    await bus.start()
    try:
        return await publish_logs(bus, [inference_event(rng, space) for _ in range(count)])
    finally:
        await bus.stop()


async def test_an_ingest_stores_the_logs_of_its_own_deployment_only(
    kafka_bootstrap: str, unique: str, tmp_path: Path
):
    ours, theirs = f"{unique}blue_", f"{unique}green_"
    mine = await publish(kafka_bootstrap, ours, "space-blue", 300)
    await publish(kafka_bootstrap, theirs, "space-green", 200)
    store = SQLiteLogStore(str(tmp_path / "logs.db"))
    await store.open()
    ingest = KafkaIngest(kafka_bootstrap, store, prefix=ours)
    task = asyncio.create_task(ingest.run())
    try:
        deadline = time.monotonic() + 60
        while ingest.ingested < len(mine):
            assert not task.done() and time.monotonic() < deadline, "the ingest did not catch up"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # time enough for a stray log of the other deployment
    finally:
        ingest.stop()
        await task
    try:
        assert (ingest.topic, ingest.group) == (f"{ours}{TOPIC}", f"{ours}mlplane-logs")
        assert sorted(r.id for r in await store.all_logs(LogFilters("space-blue"))) == sorted(mine)
        assert await store.all_logs(LogFilters("space-green")) == []
        assert ingest.ingested == len(mine)
    finally:
        await store.close()
