"""Two platforms on one Kafka broker and one MongoDB database, told apart only by
`MLPLANE_PREFIX`: neither sees the other's spaces, and each one's events travel only on its own
topics (`<prefix>mlplane.gateway`), never on the other's nor on the unprefixed one.

Each platform is `mlplane up --service gateway`, as in test_distributed.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from launcher import Platform, drop_collections, new_space

pytestmark = [pytest.mark.kafka, pytest.mark.mongo]
CONTEXT_TOPIC = "mlplane.gateway"


@pytest.fixture(scope="module")
def platforms(
    tmp_path_factory: pytest.TempPathFactory, mongo_url: str, kafka_bootstrap: str
) -> Iterator[tuple[Platform, Platform]]:
    stamp = int(time.time() * 1000) % 10**9
    started: list[Platform] = []
    try:
        for name in ("blue", "green"):
            env = {
                "MLPLANE_EVENT_STORE_URL": mongo_url,
                "MLPLANE_BUS_URL": f"kafka://{kafka_bootstrap}",
                "MLPLANE_PREFIX": f"{name}{stamp}_",
            }
            platform = Platform(Path(tmp_path_factory.mktemp(name)), env, service="gateway")
            platform.start()
            started.append(platform)
        yield started[0], started[1]
    finally:
        for platform in started:
            platform.stop()
        for platform in started:
            drop_collections(mongo_url, prefix(platform))


def prefix(platform: Platform) -> str:
    return platform.env["MLPLANE_PREFIX"]


def test_a_space_created_on_one_platform_is_never_seen_on_the_other(platforms):
    blue, green = platforms
    with blue.admin() as blue_admin, green.admin() as green_admin:
        blue_space = new_space(blue_admin, "blue-team")
        green_space = new_space(green_admin, "green-team")
        blue_ids = {s["id"] for s in blue_admin.get("/api/v1/spaces").json()["data"]}
        green_ids = {s["id"] for s in green_admin.get("/api/v1/spaces").json()["data"]}
        assert blue_space in blue_ids and green_space not in blue_ids
        assert green_space in green_ids and blue_space not in green_ids
        assert blue_admin.get(f"/api/v1/spaces/{green_space}").status_code == 404
        assert green_admin.get(f"/api/v1/spaces/{blue_space}").status_code == 404


async def test_each_platforms_events_travel_only_on_its_own_topic(platforms, kafka_bootstrap):
    blue, green = platforms
    topics = {p: prefix(p) + CONTEXT_TOPIC for p in platforms}
    consumer = await _at_the_end(kafka_bootstrap, [*topics.values(), CONTEXT_TOPIC])
    try:
        with blue.admin() as blue_admin, green.admin() as green_admin:
            keys = {
                blue: f"space:{await asyncio.to_thread(new_space, blue_admin, 'blue-only')}",
                green: f"space:{await asyncio.to_thread(new_space, green_admin, 'green-only')}",
            }
        seen = await _topics_of_keys(consumer, set(keys.values()))
    finally:
        await consumer.stop()
    assert seen == {keys[blue]: {topics[blue]}, keys[green]: {topics[green]}}


async def _at_the_end(bootstrap: str, topics: list[str]) -> AIOKafkaConsumer:
    """A consumer of every partition of those of `topics` that exist, positioned at their end.
    The platforms' topics exist once they are up: each relay publishes at start."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            described = {t["topic"]: t for t in await admin.describe_topics(topics)}
            if all(described.get(t, {}).get("partitions") for t in topics[:-1]):
                break
            assert time.monotonic() < deadline, (
                f"the platforms' topics {topics[:-1]} never appeared"
            )
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    partitions = [
        TopicPartition(name, p["partition"])
        for name, t in described.items()
        for p in t.get("partitions") or []
    ]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    return consumer


async def _topics_of_keys(
    consumer: AIOKafkaConsumer, keys: set[str], timeout: float = 20.0, linger: float = 2.0
) -> dict[str, set[str]]:
    """For each of `keys`, the topics a message with that key arrived on: read until every key
    was seen, and `linger` seconds more for a copy that would arrive elsewhere."""
    seen: dict[str, set[str]] = {}
    deadline = time.monotonic() + timeout
    until = None
    while until is None or time.monotonic() < until:
        if until is None:
            assert time.monotonic() < deadline, f"only {sorted(seen)} of {sorted(keys)} arrived"
        for batch in (await consumer.getmany(timeout_ms=200)).values():
            for message in batch:
                key = (message.key or b"").decode()
                if key in keys:
                    seen.setdefault(key, set()).add(message.topic)
        if until is None and set(seen) == keys:
            until = time.monotonic() + linger
    return seen
