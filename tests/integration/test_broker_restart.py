"""Kafka goes away and comes back, three times, while events are appended, relayed and consumed.

The broker is stopped and started again with `deploy/local/services.sh restart-kafka` (the
same broker every Kafka test uses, so this test brings it back before it ends). Meanwhile a
writer keeps appending, the outbox relay keeps following the log and a consumer group keeps
subscribing. Once the broker is back, the set of appended events equals the set the group
received, each stream's events arrived in their order, and the only repeats are redeliveries.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from backbone_proc import CounterTotals, append_counters, open_log, read_topic
from mlplane import adapters
from mlplane.bus import RetryPolicy
from mlplane.bus.kafka import KafkaBus
from mlplane.events import StoredEvent
from mlplane.outbox import RELAY, OutboxRelay

pytestmark = pytest.mark.kafka

SERVICES = Path(__file__).resolve().parents[2] / "deploy" / "local" / "services.sh"
STREAMS = 20
RESTARTS = 3


async def restart_kafka() -> None:
    proc = await asyncio.create_subprocess_exec(
        "bash",
        str(SERVICES),
        "restart-kafka",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0, out.decode()[-2000:]


async def keep_appending(log, stop: asyncio.Event) -> int:
    """Append 10 events every 50 ms until told to stop; return how many were appended."""
    count = 0
    while not stop.is_set():
        await append_counters(log, count + 10, STREAMS, start=count)
        count += 10
        await asyncio.sleep(0.05)
    return count


async def poll(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.2)


async def test_every_event_is_delivered_after_the_broker_restarts(
    sqlite_url, kafka_bootstrap, unique
):
    topic = f"mlplane.{unique}counters"
    log = open_log(sqlite_url, "", topic)
    docs = adapters.read_models(sqlite_url)
    # a short produce timeout: a send whose partition loses its leader fails instead of
    # waiting; one whose leader stays known waits for the broker (both must end delivered)
    relay_bus = KafkaBus(
        kafka_bootstrap, client_id="relay", producer_options={"request_timeout_ms": 2000}
    )
    consumer_bus = KafkaBus(
        kafka_bootstrap, client_id="consumer", retry=RetryPolicy(max_attempts=3, first_delay=0.05)
    )
    await relay_bus.start()
    await consumer_bus.start()
    received: set[str] = set()
    arrivals: dict[str, list[int]] = {}

    async def handle(event: StoredEvent) -> None:
        received.add(event.id)
        arrivals.setdefault(event.stream_id, []).append(event.version)

    await consumer_bus.subscribe(f"{unique}{CounterTotals.name}", [topic], handle)
    relay = OutboxRelay(
        log.store,
        docs,
        relay_bus,
        log.registry,
        batch_size=200,
        poll_interval=0.2,
        wake=log.waker(),
    )
    relaying = asyncio.create_task(relay.run())
    stop_writing = asyncio.Event()
    writer = asyncio.create_task(keep_appending(log, stop_writing))
    try:
        await poll(lambda: _relayed_some(docs), 30, "relay publishing before the restart")
        for _ in range(RESTARTS):
            relayed = await docs.get_checkpoint(RELAY)
            await restart_kafka()
            # the relay moves on again before the next restart
            await poll(lambda at=relayed: _relayed_past(docs, at), 90, "relay after a restart")
        stop_writing.set()
        appended = await writer
        head = await log.store.head_position()
        await poll(lambda: _checkpoint(docs, head), 90, "relay catch-up after the restart")
        await poll(lambda: _has(received, appended), 90, "consumer catch-up after the restart")
    finally:
        stop_writing.set()
        relay.stop()
        log.notify()
        await asyncio.wait_for(asyncio.gather(relaying, writer, return_exceptions=True), 60)
        await consumer_bus.stop()
        await relay_bus.stop()

    stored = {row.id for row in await log.store.read_all(1, 1_000_000)}
    assert len(stored) == appended
    assert {eid for eid, _ in await read_topic(kafka_bootstrap, topic)} == stored
    assert received == stored
    for stream, versions in arrivals.items():
        assert _first_arrivals(versions) == sorted(set(versions)), f"{stream} out of order"


async def _relayed_some(docs) -> bool:
    return await docs.get_checkpoint(RELAY) > 0


async def _checkpoint(docs, head: int) -> bool:
    return await docs.get_checkpoint(RELAY) >= head


async def _has(received: set[str], count: int) -> bool:
    return len(received) >= count


async def _relayed_past(docs, position: int) -> bool:
    return await docs.get_checkpoint(RELAY) > position


def _first_arrivals(versions: list[int]) -> list[int]:
    """The versions in the order they first arrived: a redelivery may repeat an event, never
    put one before an earlier event of its stream."""
    seen: list[int] = []
    for version in versions:
        if version not in seen:
            seen.append(version)
    return seen
