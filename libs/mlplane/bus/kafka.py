"""Kafka bus (aiokafka): idempotent producer with acks=all, CloudEvents in binary mode.

Message key = stream id (per-stream order within a partition), value = the event's JSON data,
attributes in `ce_*` headers plus a W3C `traceparent` header, so any CloudEvents consumer can
read the topics. A consumer commits a partition's offset only after its handler succeeded.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import TopicPartition

from ..events import StoredEvent
from ..telemetry import tracer
from .base import Bus, Handler, RetryPolicy

log = logging.getLogger("mlplane.bus.kafka")

# meta key <-> CloudEvents extension name (lowercase alphanumerics only)
_EXT = {
    "source": "source",
    "space": "space",
    "actor": "actor",
    "correlation_id": "correlationid",
    "causation_id": "causationid",
    "error": "error",
    "failed_group": "failedgroup",
}
_META = {v: k for k, v in _EXT.items()}


def encode_headers(ev: StoredEvent) -> list[tuple[str, bytes]]:
    headers = {
        "ce_specversion": "1.0",
        "ce_id": ev.id,
        "ce_type": ev.type,
        "ce_subject": ev.stream_id,
        "ce_time": ev.time.isoformat(),
        "ce_typeversion": str(ev.type_version),
        "ce_streamversion": str(ev.version),
        "ce_position": str(ev.position),
        "content-type": "application/json",
    }
    headers.setdefault("ce_source", "mlplane")
    for key, value in ev.meta.items():
        if key == "traceparent":
            headers["traceparent"] = value
        elif key in _EXT:
            headers[f"ce_{_EXT[key]}"] = str(value)
    return [(k, v.encode()) for k, v in headers.items()]


def decode_message(headers: Sequence[tuple[str, bytes]], value: bytes) -> StoredEvent:
    h = {k: v.decode() for k, v in headers}
    meta = {_META[k[3:]]: v for k, v in h.items() if k.startswith("ce_") and k[3:] in _META}
    if "traceparent" in h:
        meta["traceparent"] = h["traceparent"]
    return StoredEvent(
        id=h["ce_id"],
        stream_id=h["ce_subject"],
        type=h["ce_type"],
        data=json.loads(value),
        type_version=int(h.get("ce_typeversion", "1")),
        version=int(h.get("ce_streamversion", "0")),
        position=int(h.get("ce_position", "0")),
        time=datetime.fromisoformat(h["ce_time"]),
        meta=meta,
    )


class KafkaBus(Bus):
    def __init__(
        self,
        bootstrap: str,
        *,
        partitions: int = 4,
        retry: RetryPolicy = RetryPolicy(),
        client_id: str = "mlplane",
    ) -> None:
        super().__init__(retry)
        self._bootstrap = bootstrap
        self._partitions = partitions
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._consumers: list[tuple[AIOKafkaConsumer, asyncio.Task]] = []
        self._known_topics: set[str] = set()

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            max_batch_size=1 << 20,
        )
        await self._producer.start()

    async def stop(self) -> None:
        for consumer, task in self._consumers:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await consumer.stop()
        self._consumers.clear()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        missing = [t for t in topics if t not in self._known_topics]
        if not missing:
            return
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            new = [
                NewTopic(t, num_partitions=self._partitions, replication_factor=1)
                for t in missing
                if t not in existing
            ]
            if new:
                try:
                    await admin.create_topics(new)
                except TopicAlreadyExistsError:
                    pass
        finally:
            await admin.close()
        self._known_topics.update(missing)

    async def publish(self, topic: str, events: Sequence[StoredEvent]) -> None:
        if self._producer is None:
            raise RuntimeError("KafkaBus.publish before start()")
        await self.ensure_topics([topic])
        with tracer().start_as_current_span(f"publish {topic}"):
            futures = [
                await self._producer.send(
                    topic,
                    json.dumps(ev.data, separators=(",", ":")).encode(),
                    key=ev.stream_id.encode(),
                    headers=encode_headers(ev),
                )
                for ev in events
            ]
            await asyncio.gather(*futures)

    async def subscribe(self, group: str, topics: Sequence[str], handler: Handler) -> None:
        await self.ensure_topics(list(topics))
        consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=self._bootstrap,
            group_id=group,
            client_id=f"{self._client_id}-{group}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=500,
        )
        await consumer.start()
        task = asyncio.create_task(self._consume(group, consumer, handler), name=f"kafka:{group}")
        self._consumers.append((consumer, task))

    async def _consume(self, group: str, consumer: AIOKafkaConsumer, handler: Handler) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            await asyncio.gather(
                *(self._handle_partition(group, consumer, tp, msgs, handler) for tp, msgs in batches.items())
            )

    async def _handle_partition(
        self, group: str, consumer: AIOKafkaConsumer, tp: TopicPartition, msgs: list, handler: Handler
    ) -> None:
        for msg in msgs:
            event = decode_message(msg.headers, msg.value)
            await self.deliver(group, tp.topic, event, handler)
        await consumer.commit({tp: msgs[-1].offset + 1})
