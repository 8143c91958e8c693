"""The ingest: inference logs from the bus into the log store (raw log and summary buckets).

Kafka mode reads `mlplane.inference` with its own aiokafka consumer group (both named under the
deployment's `MLPLANE_PREFIX`, as the bus names them). Each fetch (up to
`batch` logs over every partition it holds) is one store write (the store applies it exactly
once, keyed by each partition's offsets), then one offset commit. Fetching and decoding the next
batch overlaps with storing the last one, two batches ahead at most; on SQLite the writes run in
a process of their own (`WriterProcess`), so both sides get a core. The bus's per-event path (a
span and a handler call per event) is built for commands, not for tens of thousands of logs a
second. A store failure is retried with backoff for as long as it lasts (nothing is committed,
nothing is lost); a message that is not a valid log is parked on `mlplane.inference.dlq` with
the reason.

In-process mode subscribes through the bus like any consumer: the embedded platform's volume
is a single process's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.structs import TopicPartition
from mlplane.bus import Bus, RetryPolicy, dlq_topic, topic_name
from mlplane.bus.kafka import KafkaBus, wire_name
from mlplane.events import StoredEvent, new_id, registry
from pydantic import ValidationError

from .aggregate import LogRecord
from .events import INFERENCE, InferenceLogged
from .store import LogStore
from .store.base import INPROC

log = logging.getLogger("mlplane.logs.ingest")

TOPIC = topic_name(INFERENCE)
TYPE = InferenceLogged.type_name
TYPE_HEADER = TYPE.encode()
STORE_RETRY = RetryPolicy(first_delay=0.2, max_delay=10.0)
PIPELINE = 2
"""Batches fetched ahead of the one being stored."""
DRAIN_S = 10.0


@dataclass
class Batch:
    """What one fetch brought: the logs of each partition, what was not a log, and the offset
    each partition is committed at once it is stored."""

    records: dict[TopicPartition, list[LogRecord]] = field(default_factory=dict)
    bad: list[tuple[TopicPartition, object, str]] = field(default_factory=list)
    next: dict[TopicPartition, int] = field(default_factory=dict)


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
    headers = dict(msg.headers)
    if headers.get("ce_type") != TYPE_HEADER or not headers.get("ce_id"):
        raise BadLog(f"expected a {TYPE} CloudEvent, got type {headers.get('ce_type')!r}")
    version = int(headers.get("ce_typeversion", b"1"))
    return record_of(headers["ce_id"].decode(), msg.value, version, msg.offset)


def policy(fetched: Mapping[TopicPartition, Sequence[Any]]) -> Batch:
    """The ingest's decision over one fetch, pure: each message is a log to store or, when it is
    not a valid one, a message to park with its reason; each partition is committed past its
    last message either way, so a bad message never stops the partition."""
    batch = Batch()
    for tp, msgs in fetched.items():
        if msgs:
            records = batch.records.setdefault(tp, [])
            for msg in msgs:
                try:
                    records.append(decode(msg))
                except BadLog as exc:
                    batch.bad.append((tp, msg, str(exc)))
            batch.next[tp] = msgs[-1].offset + 1
    return batch


class KafkaIngest(ConsumerRebalanceListener):
    def __init__(
        self,
        bootstrap: str,
        store: LogStore,
        *,
        topic: str = TOPIC,
        group: str = "mlplane-logs",
        prefix: str = "",
        batch: int = 20_000,
        session_timeout_ms: int = 10_000,
        retry: RetryPolicy = STORE_RETRY,
        client_id: str = "mlplane-logs",
    ) -> None:
        """`topic` and `group` are named as on the bus; `prefix` (`MLPLANE_PREFIX`) puts them
        under the deployment's names on the broker, as `KafkaBus` does."""
        self.bootstrap, self.store = bootstrap, store
        self.topic, self.group = wire_name(prefix, topic), wire_name(prefix, group)
        self.batch, self.retry, self.client_id = batch, retry, client_id
        self.session_timeout_ms = session_timeout_ms
        self.consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._stopping = asyncio.Event()
        self._pending: asyncio.Queue[Batch] = asyncio.Queue(PIPELINE)
        self.ingested = 0

    async def run(self) -> None:
        """Consume until `stop`; a lost broker is reconnected with backoff."""
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._session()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise
                # cancelled inside the client (a connection torn down under it), not by our owner
                log.warning("inference-log ingest: the Kafka client was cancelled; reconnecting")
            except Exception:
                log.exception("inference-log ingest lost its consumer; reconnecting")
            else:
                continue
            failures += 1
            with contextlib.suppress(TimeoutError):
                delay = self.retry.delay(min(failures, self.retry.max_attempts))
                await asyncio.wait_for(self._stopping.wait(), delay)

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
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.session_timeout_ms // 3,
            fetch_max_bytes=32 << 20,
        )
        await self.consumer.start()
        writer = asyncio.create_task(self._write_loop(), name="logs-ingest-writer")
        try:
            self.consumer.subscribe([self.topic], listener=self)
            while not self._stopping.is_set():
                await self._fetch()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pending.join(), DRAIN_S)
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            self._pending = asyncio.Queue(PIPELINE)
            await self.consumer.stop()
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None

    async def _fetch(self) -> None:
        """Fetch and decode; the writer stores the previous batch meanwhile."""
        assert self.consumer is not None
        fetched = await self.consumer.getmany(timeout_ms=200, max_records=self.batch)
        batch = policy(fetched)
        if batch.next:
            await self._pending.put(batch)

    async def _write_loop(self) -> None:
        while True:
            batch = await self._pending.get()
            try:
                await self._write(batch)
            finally:
                self._pending.task_done()

    async def _write(self, batch: Batch) -> None:
        """Store the batch in one write, park what is not a log (each retried as long as it
        fails), and commit each partition's offset past it."""
        parts = {f"{tp.topic}/{tp.partition}": records for tp, records in batch.records.items()}
        self.ingested += await self._until_done(
            f"ingest of {', '.join(parts)}", lambda: self.store.ingest_many(parts)
        )
        if batch.bad:
            await self._until_done("parking bad logs", lambda: self._park(batch.bad))
        await self._commit(batch.next)

    async def _until_done(self, what: str, step):
        attempt = 0
        while True:
            attempt += 1
            try:
                return await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried for as long as it fails
                log.warning("%s failed (attempt %d): %s", what, attempt, exc)
                await asyncio.sleep(self.retry.delay(min(attempt, self.retry.max_attempts)))

    async def _park(self, bad: Sequence[tuple[TopicPartition, object, str]]) -> None:
        """Put what is not a log on the dead-letter topic, with the reason."""
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True
            )
            await producer.start()
            self._producer = producer
        try:
            for tp, msg, reason in bad:
                log.error(
                    "parking message %s of %s/%d: %s", msg.offset, tp.topic, tp.partition, reason
                )
                headers = [
                    *msg.headers,
                    ("ce_error", reason.encode()),
                    ("ce_failedgroup", self.group.encode()),
                ]
                await self._producer.send_and_wait(
                    dlq_topic(tp.topic), msg.value, key=msg.key, headers=headers
                )
        except Exception:
            producer, self._producer = self._producer, None
            with contextlib.suppress(Exception):
                await producer.stop()
            raise

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - the store holds the offsets that matter
            log.warning("group %s could not commit %s: %s", self.group, offsets, exc)

    async def on_partitions_revoked(self, revoked) -> None:
        await self._pending.join()  # what was fetched is written and committed first

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


def log_rows(logs: Sequence[InferenceLogged], source: str = "mlplane/serving") -> list[StoredEvent]:
    """Inference logs as bus messages: each its own subject (`inference-log:<id>`), so logs
    spread over every partition, with the inference's time as the event's."""
    rows = []
    for entry in logs:
        log_id = new_id()
        meta = {
            "source": source,
            "space": entry.space,
            "correlation_id": entry.correlation_id or None,
        }
        row = registry.to_stored(f"inference-log:{log_id}", entry, event_id=log_id, **meta)
        rows.append(
            StoredEvent(
                row.id,
                row.stream_id,
                row.type,
                row.data,
                row.type_version,
                1,
                0,
                entry.time,
                row.meta,
            )
        )
    return rows


async def publish_logs(
    bus: Bus,
    logs: Sequence[InferenceLogged],
    *,
    topic: str = TOPIC,
    source: str = "mlplane/serving",
) -> list[str]:
    """Put inference logs on the bus (what the serving path does); returns their ids."""
    rows = log_rows(logs, source)
    await bus.publish(topic, rows)
    return [row.id for row in rows]
