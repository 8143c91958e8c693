"""bus: publish and consume+apply events/s through the Kafka adapter ÷ raw aiokafka."""

from __future__ import annotations

import asyncio
import json
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from common import Result, Timer, event, rate, registry
from mlplane.bus.kafka import KafkaBus, encode_headers


def _rows(total: int) -> list:
    return [
        registry.to_stored(f"s-{i % 64}", event(i), source="mlplane").at(i // 64 + 1, i + 1)
        for i in range(total)
    ]


async def _raw_publish(bootstrap: str, topic: str, rows: list) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        max_batch_size=1 << 20,
    )
    await producer.start()
    partitions = sorted(await producer.partitions_for(topic))
    try:
        with Timer() as t:
            pending = []
            for part in partitions:
                batch = producer.create_batch()
                for row in rows:
                    if hash(row.stream_id) % len(partitions) != part:
                        continue
                    value = json.dumps(row.data, separators=(",", ":")).encode()
                    if (
                        batch.append(
                            key=row.stream_id.encode(),
                            value=value,
                            timestamp=None,
                            headers=encode_headers(row),
                        )
                        is None
                    ):
                        pending.append(await producer.send_batch(batch, topic, partition=part))
                        batch = producer.create_batch()
                        batch.append(
                            key=row.stream_id.encode(),
                            value=value,
                            timestamp=None,
                            headers=encode_headers(row),
                        )
                pending.append(await producer.send_batch(batch, topic, partition=part))
            await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return t.seconds


async def _raw_consume(bootstrap: str, topic: str, total: int) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{uuid.uuid4().hex}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    totals: dict[str, int] = {}
    seen = 0
    try:
        with Timer() as t:
            while seen < total:
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                for tp, msgs in batches.items():
                    for msg in msgs:
                        data = json.loads(msg.value)
                        totals[data["model"]] = totals.get(data["model"], 0) + data["value"]
                    seen += len(msgs)
                    await consumer.commit({tp: msgs[-1].offset + 1})
    finally:
        await consumer.stop()
    return t.seconds


async def kafka_bus(bootstrap: str, total: int) -> list[Result]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    ours_topic, raw_topic = f"{prefix}-ours", f"{prefix}-raw"
    rows = _rows(total)
    bus = KafkaBus(bootstrap)
    await bus.start()
    await bus.ensure_topics([ours_topic, raw_topic])
    try:
        await bus.publish(ours_topic, rows[:10])  # connect and warm up
        with Timer() as pub:
            for start in range(0, total, 500):
                await bus.publish(ours_topic, rows[start : start + 500])
        raw_pub = await _raw_publish(bootstrap, raw_topic, rows)

        done = asyncio.Event()
        totals: dict[str, int] = {}
        seen = 0

        async def apply(ev) -> None:
            nonlocal seen
            totals[ev.data["model"]] = totals.get(ev.data["model"], 0) + ev.data["value"]
            seen += 1
            if seen >= total + 10:
                done.set()

        with Timer() as con:
            await bus.subscribe(f"{prefix}-g", [ours_topic], apply)
            await asyncio.wait_for(done.wait(), 300)
        raw_con = await _raw_consume(bootstrap, raw_topic, total)
    finally:
        await bus.stop()
    return [
        Result(
            "bus.kafka.publish",
            rate(total, pub.seconds) / rate(total, raw_pub),
            0.8,
            True,
            {
                "events": total,
                "mlplane_events_per_s": round(rate(total, pub.seconds)),
                "raw_send_batch_events_per_s": round(rate(total, raw_pub)),
            },
        ),
        Result(
            "bus.kafka.consume_apply",
            rate(total + 10, con.seconds) / rate(total, raw_con),
            0.5,
            True,
            {
                "events": total,
                "mlplane_events_per_s": round(rate(total + 10, con.seconds)),
                "raw_getmany_events_per_s": round(rate(total, raw_con)),
            },
        ),
    ]
