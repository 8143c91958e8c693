"""The ingest: inference logs from the bus into the log store (raw log and summary buckets).

Kafka mode reads `mlplane.inference` with its own aiokafka consumer group, a batch per
partition at a time: one store write per batch (the store applies it exactly once, keyed by the
partition's offsets), then the offset commit. The bus's per-event delivery path (a span and a
handler call per event) is built for commands, not for tens of thousands of logs a second.
A store failure is retried with backoff for as long as it lasts (nothing is committed, nothing
lost); a message that is not a valid log is parked on `mlplane.inference.dlq` with the reason.

In-process mode subscribes through the bus like any consumer: the embedded platform's volume
is a single process's.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.structs import TopicPartition
from mlplane.bus import Bus, RetryPolicy, dlq_topic, topic_name
from mlplane.bus.kafka import KafkaBus
from mlplane.events import StoredEvent, registry
from pydantic import ValidationError

from .aggregate import LogRecord
from .events import INFERENCE, InferenceLogged
from .store import LogStore
from .store.base import INPROC

log = logging.getLogger("mlplane.logs.ingest")

TOPIC = topic_name(INFERENCE)
TYPE = InferenceLogged.type_name
STORE_RETRY = RetryPolicy(first_delay=0.2, max_delay=10.0)


class BadLog(Exception):
    """A message on the inference topic that is not a valid inference log."""


def record_of(
    log_id: str,
    data: dict | bytes,
    type_version: int = InferenceLogged.type_version,
    offset: int = -1,
) -> LogRecord:
    """Validate an `InferenceLogged` payload (upcast if older) into the record the store keeps."""
    try:
        if type_version != InferenceLogged.type_version or not isinstance(data, bytes):
            raw = json.loads(data) if isinstance(data, bytes) else data
            event = InferenceLogged.model_validate(registry.upcast(TYPE, type_version, raw))
        else:
            event = InferenceLogged.model_validate_json(data)
    except (ValidationError, ValueError, KeyError) as exc:
        raise BadLog(f"not a valid {TYPE}: {exc}") from exc
    return LogRecord.of(log_id, event.__dict__, offset)


def decode(msg) -> LogRecord:
    headers = {k: v for k, v in msg.headers if k in ("ce_id", "ce_type", "ce_typeversion")}
    if headers.get("ce_type") != TYPE.encode() or not headers.get("ce_id"):
        raise BadLog(f"expected a {TYPE} CloudEvent, got type {headers.get('ce_type')!r}")
    version = int(headers.get("ce_typeversion", b"1"))
    return record_of(headers["ce_id"].decode(), msg.value, version, msg.offset)


class KafkaIngest(ConsumerRebalanceListener):
    def __init__(
        self,
        bootstrap: str,
        store: LogStore,
        *,
        topic: str = TOPIC,
        group: str = "mlplane-logs",
        batch: int = 5000,
        retry: RetryPolicy = STORE_RETRY,
        client_id: str = "mlplane-logs",
    ) -> None:
        self.bootstrap, self.store, self.topic, self.group = bootstrap, store, topic, group
        self.batch, self.retry, self.client_id = batch, retry, client_id
        self.consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()
        self.ingested = 0

    async def run(self) -> None:
        """Consume until `stop`; a lost broker is reconnected with backoff."""
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("inference-log ingest lost its consumer; reconnecting")
                await asyncio.sleep(self.retry.delay(min(failures, self.retry.max_attempts)))

    async def _session(self) -> None:
        await KafkaBus(self.bootstrap).ensure_topics([self.topic])
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            client_id=self.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.batch,
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=32 << 20,
        )
        await self.consumer.start()
        try:
            self.consumer.subscribe([self.topic], listener=self)
            while not self._stopping.is_set():
                await self._step()
        finally:
            await self.consumer.stop()
            if self._producer is not None:
                await self._producer.stop()

    async def _step(self) -> None:
        assert self.consumer is not None
        batches = await self.consumer.getmany(timeout_ms=200, max_records=self.batch)
        async with self._lock:
            for tp, msgs in batches.items():
                if msgs and not self._stopping.is_set():
                    await self._apply(tp, msgs)

    async def _apply(self, tp: TopicPartition, msgs: list) -> None:
        records, bad = [], []
        for msg in msgs:
            try:
                records.append(decode(msg))
            except BadLog as exc:
                bad.append((msg, str(exc)))
        source = f"{tp.topic}/{tp.partition}"
        attempt = 0
        while True:
            attempt += 1
            try:
                self.ingested += await self.store.ingest(source, records)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the store is retried as long as it fails
                log.warning("ingest of %s failed (attempt %d): %s", source, attempt, exc)
                if self._stopping.is_set():
                    self.consumer.seek(tp, msgs[0].offset)
                    return
                await asyncio.sleep(self.retry.delay(min(attempt, self.retry.max_attempts)))
        if bad:
            await self._park(tp, bad)
        await self._commit(tp, msgs[-1].offset + 1)

    async def _park(self, tp: TopicPartition, bad: Sequence[tuple[object, str]]) -> None:
        if self._producer is None:
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True
            )
            await self._producer.start()
        for msg, reason in bad:
            log.error("parking message %s of %s/%d: %s", msg.offset, tp.topic, tp.partition, reason)
            headers = [
                *msg.headers,
                ("ce_error", reason.encode()),
                ("ce_failedgroup", self.group.encode()),
            ]
            await self._producer.send_and_wait(
                dlq_topic(tp.topic), msg.value, key=msg.key, headers=headers
            )

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        try:
            await self.consumer.commit({tp: offset})
        except Exception as exc:  # noqa: BLE001 - the store holds the offsets that matter
            log.warning("group %s could not commit %s at %d: %s", self.group, tp, offset, exc)

    async def on_partitions_revoked(self, revoked) -> None:
        async with self._lock:  # the batch in hand is written and committed first
            pass

    async def on_partitions_assigned(self, assigned) -> None:
        """Resume each partition after the last offset the store applied, which may be past
        the last committed one (a crash between the store write and the commit)."""
        for tp in assigned:
            applied = await self.store.applied(f"{tp.topic}/{tp.partition}")
            if applied >= 0:
                self.consumer.seek(tp, applied + 1)

    def stop(self) -> None:
        self._stopping.set()


class InprocIngest:
    """The embedded platform's ingest: a bus subscription, one store write per log."""

    def __init__(
        self, bus: Bus, store: LogStore, *, topic: str = TOPIC, group: str = "mlplane-logs"
    ) -> None:
        self.bus, self.store, self.topic, self.group = bus, store, topic, group

    async def start(self) -> None:
        await self.bus.subscribe(self.group, [self.topic], self._handle)

    async def _handle(self, event: StoredEvent) -> None:
        if event.type == TYPE:
            await self.store.ingest(INPROC, [record_of(event.id, event.data, event.type_version)])


async def publish_logs(
    bus: Bus,
    logs: Sequence[InferenceLogged],
    *,
    topic: str = TOPIC,
    source: str = "mlplane/serving",
) -> list[str]:
    """Put inference logs on the bus (what the serving path calls); returns their ids.

    Each log is its own subject (`inference-log:<id>`), so logs spread over every partition.
    """
    rows = []
    for entry in logs:
        row = registry.to_stored(
            "", entry, source=source, space=entry.space, correlation_id=entry.correlation_id or None
        )
        rows.append(
            StoredEvent(
                row.id,
                f"inference-log:{row.id}",
                row.type,
                row.data,
                row.type_version,
                1,
                0,
                entry.time,
                row.meta,
            )
        )
    await bus.publish(topic, rows)
    return [row.id for row in rows]
