"""The gateway as its own process against Kafka and a MongoDB-wire server (FerretDB), the way
docker-compose runs it: same scenario as embedded, plus its events reaching the Kafka topic.

The stores live under a collection prefix unique to this module, dropped afterwards; the
platform's Kafka topics carry the same prefix.
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
from launcher import Platform, join, new_space
from pymongo import MongoClient

pytestmark = [pytest.mark.kafka, pytest.mark.mongo]
CONTEXT_TOPIC = "mlplane.gateway"


@pytest.fixture(scope="module")
def distributed(
    tmp_path_factory: pytest.TempPathFactory, mongo_url: str, kafka_bootstrap: str
) -> Iterator[Platform]:
    prefix = f"e2e{int(time.time() * 1000) % 10**9}_"
    env = {
        "MLPLANE_EVENT_STORE_URL": mongo_url,
        "MLPLANE_BUS_URL": f"kafka://{kafka_bootstrap}",
        "MLPLANE_PREFIX": prefix,
    }
    platform = Platform(Path(tmp_path_factory.mktemp("gateway-home")), env, service="gateway")
    platform.start()
    yield platform
    platform.stop()
    _drop_collections(mongo_url, prefix)


def _drop_collections(url: str, prefix: str) -> None:
    client = MongoClient(url.rsplit("/", 1)[0], serverSelectionTimeoutMS=5000)
    db = client[url.rsplit("/", 1)[1] or "mlplane"]
    for name in db.list_collection_names():
        if name.startswith(prefix):
            db.drop_collection(name)
    client.close()


def test_tenancy_holds_and_survives_a_restart_on_kafka_and_mongodb(distributed: Platform):
    with distributed.admin() as admin:
        mine, theirs = new_space(admin, "mine"), new_space(admin, "theirs")
        bob = join(distributed, admin, mine, "bob@example.com")
    try:
        assert bob.get(f"/api/v1/spaces/{mine}").status_code == 200
        assert bob.get(f"/api/v1/spaces/{theirs}").status_code == 404
        distributed.restart()
        with distributed.admin() as admin:
            assert {mine, theirs} <= {s["id"] for s in admin.get("/api/v1/spaces").json()["data"]}
        assert [s["id"] for s in bob.get("/api/v1/spaces").json()["data"]] == [mine]
        assert bob.get(f"/api/v1/spaces/{theirs}").status_code == 404
    finally:
        bob.close()


async def test_a_space_created_over_http_is_published_on_kafka(
    distributed: Platform, kafka_bootstrap: str
):
    topic = distributed.env["MLPLANE_PREFIX"] + CONTEXT_TOPIC
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await _partitions(kafka_bootstrap, topic)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        with distributed.admin() as admin:
            space = await asyncio.to_thread(new_space, admin, "published")
        message = await _first(consumer, key=f"space:{space}".encode())
    finally:
        await consumer.stop()
    headers = {k: v.decode() for k, v in message.headers}
    assert headers["ce_type"] == "SpaceCreated" and headers["ce_space"] == space


async def _partitions(bootstrap: str, topic: str, timeout: float = 20.0) -> list[int]:
    """The topic's partitions, once the gateway's relay has created it (it publishes at start)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            [described] = await admin.describe_topics([topic])
            if described["partitions"]:
                return [p["partition"] for p in described["partitions"]]
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    raise AssertionError(f"topic {topic} never appeared")


async def _first(consumer: AIOKafkaConsumer, key: bytes, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=500)
        for message in (m for batch in batches.values() for m in batch):
            if message.key == key:
                return message
    raise AssertionError(f"no message keyed {key!r} within {timeout}s")
