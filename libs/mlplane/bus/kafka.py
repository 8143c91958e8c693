"""Kafka bus (aiokafka): idempotent producer with acks=all, CloudEvents in binary mode.

Message key = stream id (per-stream order within a partition), value = the event's JSON data,
attributes in `ce_*` headers plus a W3C `traceparent` header, so any CloudEvents consumer can
read the topics. A consumer commits a partition's offset only after its handler succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, IllegalStateError, TopicAlreadyExistsError
from aiokafka.structs import TopicPartition

from ..events import StoredEvent
from .base import Bus, Handler, RetryPolicy, publish_span, trace_runs

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
        drain_timeout: float = 10.0,
        producer_options: dict[str, Any] | None = None,
        consumer_options: dict[str, Any] | None = None,
    ) -> None:
        """`producer_options` and `consumer_options` pass through to aiokafka (for instance
        `request_timeout_ms`, or `group_instance_id` for static group membership)."""
        super().__init__(retry)
        self._bootstrap = bootstrap
        self._partitions = partitions
        self._client_id = client_id
        self._drain_timeout = drain_timeout
        self._producer_options = producer_options or {}
        self._consumer_options = consumer_options or {}
        self._producer: AIOKafkaProducer | None = None
        self._started = False
        self._subscriptions: list[_Subscription] = []
        self._known_topics: set[str] = set()

    async def start(self) -> None:
        self._started = True
        await self._ensure_producer()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                enable_idempotence=True,
                acks="all",
                linger_ms=2,
                max_batch_size=1 << 20,
                **self._producer_options,
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def stop(self) -> None:
        """Let each consumer finish the event in hand and commit, then disconnect."""
        for sub in self._subscriptions:
            sub.stopping.set()
        for sub in self._subscriptions:
            await sub.finish(self._drain_timeout)
        self._subscriptions.clear()
        await self._drop_producer()
        self._started = False

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create missing topics and wait until every partition has a leader.

        A consumer that subscribes to a topic whose partitions are not in the metadata yet is
        assigned nothing, and would only notice them at its next metadata refresh (minutes).
        """
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
            await _wait_for_leaders(admin, missing)
        finally:
            await admin.close()
        self._known_topics.update(missing)

    async def publish(self, topic: str, events: Sequence[StoredEvent]) -> None:
        """Send in order and wait for every acknowledgement (acks=all).

        On failure the producer is replaced, so the caller's retry starts from a clean
        idempotence state; events acknowledged before the failure are sent again (at least once).
        """
        if not self._started:
            raise RuntimeError("KafkaBus.publish before start()")
        await self.ensure_topics([topic])
        producer = await self._ensure_producer()
        try:
            futures = []
            for run in trace_runs(events):
                with publish_span(topic, run) as traced:
                    for ev in traced:
                        futures.append(
                            await producer.send(
                                topic,
                                ev.raw.encode(),
                                key=ev.stream_id.encode(),
                                headers=encode_headers(ev),
                            )
                        )
            await asyncio.gather(*futures)
        except Exception:
            await self._drop_producer()
            raise

    async def subscribe(self, group: str, topics: Sequence[str], handler: Handler) -> None:
        if not self._started:
            raise RuntimeError("KafkaBus.subscribe before start()")
        await self.ensure_topics(list(topics))
        sub = _Subscription(self, group, handler)
        sub.consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=group,
            client_id=f"{self._client_id}-{group}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=500,
            **self._consumer_options,
        )
        await sub.consumer.start()
        sub.consumer.subscribe(list(topics), listener=sub)
        sub.task = asyncio.create_task(sub.run(), name=f"kafka:{group}")
        self._subscriptions.append(sub)


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, topics: list[str], timeout: float = 30.0
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        described = await admin.describe_topics(topics)
        ready = all(
            t["error_code"] == 0
            and t["partitions"]
            and all(p["leader"] >= 0 for p in t["partitions"])
            for t in described
        )
        if ready:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topics {topics} have no leader after {timeout}s")
        await asyncio.sleep(0.1)


class _Subscription(ConsumerRebalanceListener):
    """One consumer group member: fetch, hand each event to the bus's delivery, commit.

    The offset committed for a partition is always one past the last event whose delivery
    finished (handled, or parked on the dead-letter topic), so a crash redelivers only what
    was not finished. Batches are handled under a lock the rebalance listener also takes:
    partitions are given up only after the batch in hand is committed.
    """

    def __init__(self, bus: KafkaBus, group: str, handler: Handler) -> None:
        self.bus = bus
        self.group = group
        self.handler = handler
        self.consumer: AIOKafkaConsumer
        self.task: asyncio.Task
        self.stopping = asyncio.Event()
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        while not self.stopping.is_set():
            try:
                batches = await self.consumer.getmany(timeout_ms=200, max_records=500)
                async with self._lock:
                    results = await asyncio.gather(
                        *(self._handle(tp, msgs) for tp, msgs in batches.items() if msgs),
                        return_exceptions=True,
                    )
                for result in results:
                    if isinstance(result, BaseException):
                        raise result
            except asyncio.CancelledError:
                raise
            except Exception:  # a consumer never dies of a failure; it retries
                log.exception("consumer group %s failed; retrying", self.group)
                await asyncio.sleep(self.bus.retry.first_delay * 10)

    async def _handle(self, tp: TopicPartition, msgs: list) -> None:
        done = None
        try:
            for msg in msgs:
                if self.stopping.is_set():
                    break
                event = decode_message(msg.headers, msg.value)
                await self.bus.deliver(self.group, tp.topic, event, self.handler)
                done = msg.offset + 1
        except BaseException:
            # refetch from the first unfinished event (the fetcher has moved past it)
            next_offset = done if done is not None else msgs[0].offset
            with contextlib.suppress(Exception):
                self.consumer.seek(tp, next_offset)
            raise
        finally:
            if done is not None:
                await self._commit(tp, done)

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        try:
            await self.consumer.commit({tp: offset})
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("group %s lost %s before committing %d: %s", self.group, tp, offset, exc)

    async def on_partitions_revoked(self, revoked) -> None:
        async with self._lock:  # the batch in hand is finished and committed first
            pass

    async def on_partitions_assigned(self, assigned) -> None:
        pass

    async def finish(self, timeout: float) -> None:
        """Wait up to `timeout` for the event in hand; then cancel (what finished is still
        committed, within a second `timeout`) and leave the group."""
        await asyncio.wait([self.task], timeout=timeout)
        if not self.task.done():
            self.task.cancel()
            await asyncio.wait([self.task], timeout=timeout)
        if self.task.done() and not self.task.cancelled() and self.task.exception():
            log.error("consumer group %s ended with %r", self.group, self.task.exception())
        await self.consumer.stop()
