"""Kafka bus (aiokafka): idempotent producer with acks=all, CloudEvents in binary mode.

Message key = stream id (per-stream order within a partition), value = the event's JSON data,
attributes in `ce_*` headers plus a W3C `traceparent` header, so any CloudEvents consumer can
read the topics.

Publishing goes at the broker's pace: a publish (or an outbox batch over several topics) is
encoded once into one record batch per partition, all of them are queued at once and their
acknowledgements awaited together. The producer keeps one request in flight per partition and is
idempotent, so a partition's order survives its retries. A consumer handles what one fetch
brought and commits the offsets of every partition in it at once, only after the handler
finished those events.

`prefix` (`MLPLANE_PREFIX`) names the topics and consumer groups on the broker: the topic
`mlplane.training` of a bus with prefix `acme_` is `acme_mlplane.training`, its group
`training-runner` is `acme_training-runner`. Callers name topics and groups without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, IllegalStateError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition

from ..events import StoredEvent
from .base import DEFAULT_RETRY, Bus, Handler, RetryPolicy, publish_span, trace_runs

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
_META = {f"ce_{v}": k for k, v in _EXT.items()} | {"traceparent": "traceparent"}
"""header -> meta key"""


def encode_headers(ev: StoredEvent) -> list[tuple[str, bytes]]:
    meta = ev.meta
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", ev.id.encode()),
        ("ce_type", ev.type.encode()),
        ("ce_subject", ev.stream_id.encode()),
        ("ce_time", ev.time.isoformat().encode()),
        ("ce_typeversion", str(ev.type_version).encode()),
        ("ce_streamversion", str(ev.version).encode()),
        ("ce_position", str(ev.position).encode()),
        ("content-type", b"application/json"),
        ("ce_source", str(meta.get("source", "mlplane")).encode()),
    ]
    for key, value in meta.items():
        if key == "traceparent":
            headers.append(("traceparent", value.encode()))
        elif key in _EXT and key != "source":
            headers.append((f"ce_{_EXT[key]}", str(value).encode()))
    return headers


def decode_message(headers: Sequence[tuple[str, bytes]], value: bytes) -> StoredEvent:
    h: dict[str, str] = {}
    meta: dict[str, str] = {}
    for key, raw in headers:
        h[key] = text = raw.decode()
        if key in _META:
            meta[_META[key]] = text
    return StoredEvent(
        id=h["ce_id"],
        stream_id=h["ce_subject"],
        type=h["ce_type"],
        raw=value.decode(),
        type_version=int(h.get("ce_typeversion", "1")),
        version=int(h.get("ce_streamversion", "0")),
        position=int(h.get("ce_position", "0")),
        time=datetime.fromisoformat(h["ce_time"]),
        meta=meta,
    )


_LEGAL_PREFIX = re.compile(r"[A-Za-z0-9._-]*")
"""What a Kafka topic name may hold; the prefix is part of every topic's name."""


def wire_name(prefix: str, name: str) -> str:
    """`name` (a topic or a consumer group) as the deployment with `prefix` names it on the
    broker: `acme_` + `mlplane.training`. An empty prefix leaves every name as it is."""
    if not _LEGAL_PREFIX.fullmatch(prefix):
        raise ValueError(
            f"prefix {prefix!r} cannot start a Kafka topic name: use letters, digits, . _ -"
        )
    return prefix + name


class KafkaBus(Bus):
    def __init__(
        self,
        bootstrap: str,
        *,
        prefix: str = "",
        partitions: int = 4,
        retry: RetryPolicy = DEFAULT_RETRY,
        client_id: str = "mlplane",
        drain_timeout: float = 10.0,
        producer_options: dict[str, Any] | None = None,
        consumer_options: dict[str, Any] | None = None,
    ) -> None:
        """`prefix` names this deployment's topics and groups on the broker (see the module).
        `producer_options` and `consumer_options` pass through to aiokafka (for instance
        `request_timeout_ms`, or `group_instance_id` for static group membership)."""
        super().__init__(retry)
        self.prefix = wire_name(prefix, "")  # a prefix that cannot name a topic stops here
        self._bootstrap = bootstrap
        self._partitions = partitions
        self._client_id = client_id
        self._drain_timeout = drain_timeout
        self._producer_options = {"max_batch_size": 1 << 20, **(producer_options or {})}
        self._partitioner = self._producer_options.get("partitioner") or DefaultPartitioner()
        self._consumer_options = {
            "auto_offset_reset": "earliest",
            "max_poll_records": 500,
            # the broker holds a fetch for partitions with nothing new up to this long, and a
            # partition left out of it (its records were still in hand) waits as long: Kafka's
            # default, 500 ms, is the latency a burst's last events would see
            "fetch_max_wait_ms": 100,
            **(consumer_options or {}),
        }
        self._producer: AIOKafkaProducer | None = None
        self._started = False
        self._subscriptions: list[_Subscription] = []
        self._known_topics: set[str] = set()

    def wire_name(self, name: str) -> str:
        """A topic's or a group's name on the broker: `name` under this bus's prefix."""
        return self.prefix + name

    async def start(self) -> None:
        self._started = True
        await self._ensure_producer()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                enable_idempotence=True,  # a partition's order survives the producer's retries
                acks="all",
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
        """Create missing topics (named as `publish` names them) and wait until every
        partition has a leader.

        A consumer that subscribes to a topic whose partitions are not in the metadata yet is
        assigned nothing, and would only notice them at its next metadata refresh (minutes).
        """
        await self._ensure_wire_topics([self.wire_name(t) for t in topics])

    async def _ensure_wire_topics(self, topics: Sequence[str]) -> None:
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
        """Send in order and wait for every acknowledgement (acks=all)."""
        await self.publish_all({topic: events})

    async def publish_all(self, batches: Mapping[str, Sequence[StoredEvent]]) -> None:
        """Queue every topic's events at once, then wait for all acknowledgements (acks=all).

        On failure the producer is replaced, so the caller's retry starts from a clean
        idempotence state; events acknowledged before the failure are sent again (at least once).
        """
        if not self._started:
            raise RuntimeError("KafkaBus.publish before start()")
        wire = {self.wire_name(topic): events for topic, events in batches.items()}
        await self._ensure_wire_topics(list(wire))
        try:
            await asyncio.gather(*await self.send(wire))
        except Exception:
            await self._drop_producer()
            raise

    async def send(self, batches: Mapping[str, Sequence[StoredEvent]]) -> list[asyncio.Future]:
        """Queue events on the producer (topics named as on the broker), each encoded once into
        the record batch of its key's partition, and return the acknowledgements to await.

        The partition is the producer's partitioner's (murmur2 of the key, as Java clients
        compute it), so every producer of a stream's events puts them on one partition.
        """
        producer = await self._ensure_producer()
        acks: list[asyncio.Future] = []
        for topic, events in batches.items():
            partitions = sorted(await producer.partitions_for(topic))
            by_key: dict[str, int] = {}
            open_batches: dict[int, Any] = {}
            for run in trace_runs(events):
                with publish_span(topic, run) as traced:
                    for ev in traced:
                        key = ev.stream_id.encode()
                        partition = by_key.get(ev.stream_id)
                        if partition is None:
                            partition = self._partitioner(key, partitions, partitions)
                            by_key[ev.stream_id] = partition
                        batch = open_batches.get(partition)
                        if batch is None:
                            batch = open_batches[partition] = producer.create_batch()
                        value, headers = ev.raw.encode(), encode_headers(ev)
                        if batch.append(key=key, value=value, timestamp=None, headers=headers):
                            continue
                        acks.append(await self._queue(producer, batch, topic, partition))
                        batch = open_batches[partition] = producer.create_batch()
                        batch.append(key=key, value=value, timestamp=None, headers=headers)
            for partition, batch in open_batches.items():
                acks.append(await self._queue(producer, batch, topic, partition))
        return acks

    @staticmethod
    async def _queue(producer: AIOKafkaProducer, batch: Any, topic: str, partition: int):
        """Hand a full batch to the producer: closed, it goes at once instead of lingering."""
        batch.close()
        return await producer.send_batch(batch, topic, partition=partition)

    async def subscribe(self, group: str, topics: Sequence[str], handler: Handler) -> None:
        if not self._started:
            raise RuntimeError("KafkaBus.subscribe before start()")
        wire_topics = {self.wire_name(t): t for t in topics}
        await self._ensure_wire_topics(list(wire_topics))
        sub = _Subscription(self, group, wire_topics, handler)
        sub.consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self.wire_name(group),
            client_id=f"{self._client_id}-{group}",
            enable_auto_commit=False,  # offsets are committed after their events are handled
            **self._consumer_options,
        )
        await sub.consumer.start()
        sub.consumer.subscribe(list(wire_topics), listener=sub)
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

    The partitions of one fetch are handled side by side, each in its order; then one commit
    stores, for every partition, one past the last event whose delivery finished (handled, or
    parked on the dead-letter topic), so a crash redelivers only what was not finished. A fetch
    is handled under a lock the rebalance listener also takes: partitions are given up only
    after the fetch in hand is committed.
    """

    def __init__(self, bus: KafkaBus, group: str, topics: dict[str, str], handler: Handler) -> None:
        self.bus = bus
        self.group = group
        self.topics = topics
        """Each topic's name on the broker -> its name as the subscriber gave it."""
        self.handler = handler
        self.consumer: AIOKafkaConsumer
        self.task: asyncio.Task
        self.stopping = asyncio.Event()
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        while not self.stopping.is_set():
            try:
                fetched = await self.consumer.getmany(timeout_ms=200, max_records=500)
                async with self._lock:
                    await self._handle_fetch({tp: msgs for tp, msgs in fetched.items() if msgs})
            except asyncio.CancelledError:
                raise
            except Exception:  # a consumer never dies of a failure; it retries
                log.exception("consumer group %s failed; retrying", self.group)
                await asyncio.sleep(self.bus.retry.first_delay * 10)

    async def _handle_fetch(self, fetched: dict[TopicPartition, list]) -> None:
        """Deliver every partition's events, then commit what finished in one request (also
        when cancelled or failed part-way); re-raise the first failure after that."""
        done: dict[TopicPartition, int] = {}
        try:
            results = await asyncio.gather(
                *(self._handle(tp, msgs, done) for tp, msgs in fetched.items()),
                return_exceptions=True,
            )
        finally:
            if done:
                await self._commit(done)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _handle(
        self, tp: TopicPartition, msgs: list, done: dict[TopicPartition, int]
    ) -> None:
        topic = self.topics.get(tp.topic, tp.topic)
        try:
            for msg in msgs:
                if self.stopping.is_set():
                    break
                event = decode_message(msg.headers, msg.value)
                await self.bus.deliver(self.group, topic, event, self.handler)
                done[tp] = msg.offset + 1
        except BaseException:
            # refetch from the first unfinished event (the fetcher has moved past it)
            with contextlib.suppress(Exception):
                self.consumer.seek(tp, done.get(tp, msgs[0].offset))
            raise

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning(
                "group %s lost partitions before committing %s: %s", self.group, offsets, exc
            )

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
