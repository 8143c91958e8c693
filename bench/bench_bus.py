"""bus: publish and consume+apply events/s through the Kafka adapter ÷ raw aiokafka.

Both sides do the same work with the same settings: publishing sends each event's stored JSON
text with its CloudEvents headers (the adapter in outbox-sized publishes of 500, raw aiokafka in
hand-built record batches), consuming folds every event into a dict and commits after each
fetch. The machine is shared, so each side runs `ROUNDS` times, alternating, and the best run
of each is compared.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from common import Result, Timer, event, rate, registry
from mlplane.bus.kafka import KafkaBus, encode_headers

ROUNDS = 3
OUTBOX_BATCH = 500
FETCH_MAX_WAIT_MS = 100
"""The adapter's consumer setting, given to the raw consumer too."""


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
                    key, value = row.stream_id.encode(), row.raw.encode()
                    headers = encode_headers(row)
                    if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                        pending.append(await producer.send_batch(batch, topic, partition=part))
                        batch = producer.create_batch()
                        batch.append(key=key, value=value, timestamp=None, headers=headers)
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
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    totals: dict[str, int] = {}
    seen = 0
    try:
        with Timer() as t:
            await consumer.start()
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


async def _publish(bus: KafkaBus, topic: str, rows: list) -> float:
    with Timer() as t:
        for start in range(0, len(rows), OUTBOX_BATCH):
            await bus.publish(topic, rows[start : start + OUTBOX_BATCH])
    return t.seconds


async def _consume(bootstrap: str, topic: str, total: int) -> float:
    """Subscribe a new group to `topic` and fold its `total` events; seconds until the last."""
    bus = KafkaBus(bootstrap)
    await bus.start()
    done = asyncio.Event()
    totals: dict[str, int] = {}
    seen = 0

    async def apply(ev) -> None:
        nonlocal seen
        totals[ev.data["model"]] = totals.get(ev.data["model"], 0) + ev.data["value"]
        seen += 1
        if seen >= total:
            done.set()

    try:
        with Timer() as t:
            await bus.subscribe(f"{topic}-g-{uuid.uuid4().hex[:6]}", [topic], apply)
            await asyncio.wait_for(done.wait(), 300)
    finally:
        await bus.stop()
    return t.seconds


async def kafka_bus(bootstrap: str, total: int) -> list[Result]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    ours = [f"{prefix}-ours-{r}" for r in range(ROUNDS)]
    raw = [f"{prefix}-raw-{r}" for r in range(ROUNDS)]
    rows = _rows(total)
    bus = KafkaBus(bootstrap)
    await bus.start()
    await bus.ensure_topics([f"{prefix}-warm", *ours, *raw])
    try:
        await bus.publish(f"{prefix}-warm", rows[:10])  # connect and warm up
        pub, raw_pub = [], []
        for r in range(ROUNDS):
            pub.append(await _publish(bus, ours[r], rows))
            raw_pub.append(await _raw_publish(bootstrap, raw[r], rows))
    finally:
        await bus.stop()
    con, raw_con = [], []
    for r in range(ROUNDS):
        con.append(await _consume(bootstrap, ours[r], total))
        raw_con.append(await _raw_consume(bootstrap, raw[r], total))
    return [
        Result(
            "bus.kafka.publish",
            rate(total, min(pub)) / rate(total, min(raw_pub)),
            0.8,
            True,
            {
                "events": total,
                "rounds": ROUNDS,
                "mlplane_events_per_s": round(rate(total, min(pub))),
                "raw_send_batch_events_per_s": round(rate(total, min(raw_pub))),
                "ratio_per_round": [round(r / p, 3) for p, r in zip(pub, raw_pub, strict=True)],
            },
            ours=rate(total, min(pub)),
            raw=rate(total, min(raw_pub)),
            unit="events/s",
        ),
        Result(
            "bus.kafka.consume_apply",
            rate(total, min(con)) / rate(total, min(raw_con)),
            0.5,
            True,
            {
                "events": total,
                "rounds": ROUNDS,
                "mlplane_events_per_s": round(rate(total, min(con))),
                "raw_getmany_events_per_s": round(rate(total, min(raw_con))),
                "ratio_per_round": [round(r / c, 3) for c, r in zip(con, raw_con, strict=True)],
            },
            ours=rate(total, min(con)),
            raw=rate(total, min(raw_con)),
            unit="events/s",
        ),
    ]
