"""The outbox relay publishes every appended event at least once, whatever kills the process.

Mostly real processes on real servers: the event store is SQLite or MongoDB (FerretDB), the bus is
Kafka. A process is SIGKILLed after appending and before relaying, or right after the relay
published a batch and before it recorded its checkpoint; a fresh relay publishes everything.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from backbone_proc import Proc, append_counters, open_log, read_topic
from mlplane import adapters
from mlplane.bus.inproc import InProcessBus
from mlplane.bus.kafka import KafkaBus
from mlplane.outbox import RELAY, OutboxRelay

STORES = [
    pytest.param("sqlite", marks=pytest.mark.kafka),
    pytest.param("mongo", marks=[pytest.mark.mongo, pytest.mark.kafka]),
]


@pytest.fixture(params=STORES)
async def events_url(request, unique, tmp_path):
    """The event store URL of this test (its own SQLite file or its own Mongo collections)."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_url")
        return
    url = request.getfixturevalue("mongo_url")
    yield url
    db = adapters.mongo_database(url)
    for name in await db.list_collection_names():
        if name.startswith(unique):
            await db.drop_collection(name)
    db.client.close()


def count_for(url: str) -> int:
    return 300 if url.startswith("sqlite") else 120


async def stored_ids(url: str, prefix: str, topic: str) -> list[str]:
    log = open_log(url, prefix, topic)
    try:
        return [row.id for row in await log.store.read_all(1, 100_000)]
    finally:
        await log.store.close()


def relay(url: str, prefix: str, topic: str, bootstrap: str, tmp_path, *extra: str) -> Proc:
    return Proc(
        "relay",
        "--events",
        url,
        "--prefix",
        prefix,
        "--topic",
        topic,
        "--bus",
        f"kafka://{bootstrap}",
        "--batch-size",
        "50",
        *extra,
        log_path=str(tmp_path / "relay.log"),
    )


async def test_events_appended_by_a_process_killed_before_relaying_are_published_after_restart(
    events_url, unique, kafka_bootstrap, tmp_path
):
    topic = f"mlplane.{unique}counters"
    count = count_for(events_url)
    writer = await Proc(
        "append",
        "--events",
        events_url,
        "--prefix",
        unique,
        "--topic",
        topic,
        "--count",
        str(count),
        "--streams",
        "7",
        log_path=str(tmp_path / "append.log"),
    ).start()
    await writer.wait_for("appended")
    await writer.kill()
    appended = await stored_ids(events_url, unique, topic)
    assert len(appended) == count

    restarted = await relay(events_url, unique, topic, kafka_bootstrap, tmp_path).start()
    await restarted.wait_for("relayed")
    assert await restarted.exit_code() == 0

    published = await read_topic(kafka_bootstrap, topic)
    assert sorted(eid for eid, _ in published) == sorted(appended)


async def test_a_relay_killed_after_publishing_and_before_its_checkpoint_republishes(
    events_url, unique, kafka_bootstrap, tmp_path
):
    topic = f"mlplane.{unique}counters"
    count = count_for(events_url)
    writer = await Proc(
        "append",
        "--events",
        events_url,
        "--prefix",
        unique,
        "--topic",
        topic,
        "--count",
        str(count),
        "--streams",
        "7",
        log_path=str(tmp_path / "append.log"),
    ).start()
    await writer.wait_for("appended")
    await writer.kill()
    appended = await stored_ids(events_url, unique, topic)

    dying = await relay(
        events_url, unique, topic, kafka_bootstrap, tmp_path, "--die-after-publishes", "2"
    ).start()
    await dying.wait_for("dying after publish")
    assert await dying.exit_code() == -9
    restarted = await relay(events_url, unique, topic, kafka_bootstrap, tmp_path).start()
    await restarted.wait_for("relayed")
    assert await restarted.exit_code() == 0

    published = Counter(eid for eid, _ in await read_topic(kafka_bootstrap, topic))
    assert set(published) == set(appended)  # nothing lost
    assert max(published.values()) == 2  # the unrecorded batch went out again, once more
    repeated = [eid for eid in appended if published[eid] == 2]
    assert repeated == appended[50:100]  # the second batch; the first was checkpointed


async def test_relayed_events_keep_their_stream_order_on_kafka(
    events_url, unique, kafka_bootstrap, tmp_path
):
    topic = f"mlplane.{unique}counters"
    count = count_for(events_url)
    log = open_log(events_url, unique, topic)
    try:
        await append_counters(log, count, streams=7)
        expected: dict[str, list[str]] = {}
        for row in await log.store.read_all(1, 100_000):
            expected.setdefault(row.stream_id, []).append(row.id)
    finally:
        await log.store.close()

    done = await relay(events_url, unique, topic, kafka_bootstrap, tmp_path).start()
    await done.wait_for("relayed")
    assert await done.exit_code() == 0

    received: dict[str, list[str]] = {}
    for eid, stream in await read_topic(kafka_bootstrap, topic):
        received.setdefault(stream, []).append(eid)
    assert received == expected


async def test_a_relay_killed_between_sending_and_its_checkpoint_loses_and_reorders_nothing(
    events_url, unique, kafka_bootstrap, tmp_path
):
    """The relay sends a whole batch before it waits for the broker: killed in between, part of
    the batch is on Kafka and part is not. The restarted relay sends it all again, and a
    consumer that drops repeats by id sees every event, each stream in its order."""
    topic = f"mlplane.{unique}counters"
    log = open_log(events_url, unique, topic)
    try:
        await append_counters(log, count_for(events_url), streams=7)
        stored = await log.store.read_all(1, 100_000)
    finally:
        await log.store.close()
    appended = [row.id for row in stored]
    second = set(appended[50:100])

    dying = await relay(
        events_url, unique, topic, kafka_bootstrap, tmp_path, "--die-mid-send", "2"
    ).start()
    await dying.wait_for("dying mid-send")
    assert await dying.exit_code() == -9
    on_kafka = {eid for eid, _ in await read_topic(kafka_bootstrap, topic)}
    assert set(appended[:50]) <= on_kafka  # the first batch, acknowledged and recorded
    assert 0 < len(on_kafka & second) < len(second)  # the second: killed part-way
    assert on_kafka <= set(appended[:100])

    restarted = await relay(events_url, unique, topic, kafka_bootstrap, tmp_path).start()
    await restarted.wait_for("relayed")
    assert await restarted.exit_code() == 0

    received = await consume_once_each(kafka_bootstrap, topic, f"{unique}checker", len(appended))
    expected: dict[str, list[str]] = {}
    for row in stored:
        expected.setdefault(row.stream_id, []).append(row.id)
    assert received == expected  # nothing lost, each stream in stream order
    repeated = Counter(eid for eid, _ in await read_topic(kafka_bootstrap, topic))
    assert {eid for eid, n in repeated.items() if n > 1} == on_kafka & second


async def consume_once_each(
    bootstrap: str, topic: str, group: str, count: int
) -> dict[str, list[str]]:
    """Subscribe `group` through the Kafka bus; each stream's event ids in the order they came,
    repeats dropped by id, once `count` distinct events have arrived."""
    seen: set[str] = set()
    by_stream: dict[str, list[str]] = {}

    async def handle(event) -> None:
        if event.id not in seen:
            seen.add(event.id)
            by_stream.setdefault(event.stream_id, []).append(event.id)

    bus = KafkaBus(bootstrap)
    await bus.start()
    try:
        await bus.subscribe(group, [topic], handle)
        await asyncio.wait_for(_until(lambda: len(seen) >= count), 60)
    finally:
        await bus.stop()
    return by_stream


class RefusingBus(InProcessBus):
    """An in-process bus whose first `refusals` publishes raise, as a broker outage would."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    async def publish(self, topic, events) -> None:
        if self.refusals:
            self.refusals -= 1
            raise ConnectionError("broker unreachable")
        await super().publish(topic, events)


async def test_a_relay_whose_publish_fails_retries_and_keeps_its_checkpoint(sqlite_url, unique):
    topic = f"mlplane.{unique}counters"
    log = open_log(sqlite_url, "", topic)
    checkpoints = adapters.read_models(sqlite_url)
    bus = RefusingBus(refusals=3)
    received: list[str] = []

    async def handle(event) -> None:
        received.append(event.id)

    await bus.subscribe(f"{unique}watcher", [topic], handle)
    await append_counters(log, 30, streams=3)
    relay = OutboxRelay(
        log.store,
        checkpoints,
        bus,
        log.registry,
        batch_size=10,
        poll_interval=0.01,
        wake=log.waker(),
    )
    checkpoints_seen: list[int] = []

    async def step() -> int:
        checkpoints_seen.append(await checkpoints.get_checkpoint(RELAY))
        return await relay.run_once()

    running = asyncio.create_task(relay.follower.run(step))
    try:
        await asyncio.wait_for(_until(lambda: len(received) == 30), 10)
    finally:
        relay.stop()
        await asyncio.wait_for(running, 5)
    assert checkpoints_seen[:4] == [0, 0, 0, 0]  # three refused attempts moved nothing
    assert received == [row.id for row in await log.store.read_all(1, 100)]
    assert await checkpoints.get_checkpoint(RELAY) == 30


async def _until(check) -> None:
    while not check():
        await asyncio.sleep(0.01)
