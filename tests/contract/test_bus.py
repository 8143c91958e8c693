"""The bus port's contract, run against every adapter: in-process and Kafka (aiokafka).

Each test publishes to topics carrying its own prefix and subscribes groups of its own, so
tests share the broker but never each other's messages.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2
from mlplane.bus import Bus, RetryPolicy, dlq_topic
from mlplane.bus.inproc import InProcessBus
from mlplane.bus.kafka import KafkaBus
from mlplane.events import StoredEvent

FAST_RETRY = RetryPolicy(max_attempts=3, first_delay=0.01, max_delay=0.05)
WAIT = 30.0


async def eventually(check: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll until `check()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.05)


def event(stream: str, version: int, position: int, **meta: str) -> StoredEvent:
    return StoredEvent(
        id=f"{stream}-{version}",
        stream_id=stream,
        type="CounterIncremented",
        data={"stream": stream, "n": version},
        version=version,
        position=position,
        meta=dict(meta),
    )


def interleaved(streams: int, per_stream: int) -> list[StoredEvent]:
    """`streams` streams of `per_stream` events each, in round-robin global order."""
    out = []
    for version in range(1, per_stream + 1):
        for s in range(streams):
            out.append(event(f"counter-{s}", version, len(out) + 1))
    return out


class Recorder:
    """A handler that records what it was given."""

    def __init__(self) -> None:
        self.events: list[StoredEvent] = []

    async def __call__(self, ev: StoredEvent) -> None:
        self.events.append(ev)

    @property
    def ids(self) -> list[str]:
        return [ev.id for ev in self.events]


def kafka_bus(bootstrap: str, **options) -> KafkaBus:
    options.setdefault("drain_timeout", 5.0)
    return KafkaBus(bootstrap, retry=FAST_RETRY, **options)


@pytest.fixture(params=["inproc", "kafka"])
async def bus(request) -> Bus:
    if request.param == "kafka":
        adapter: Bus = kafka_bus(request.getfixturevalue("kafka_bootstrap"))
    else:
        adapter = InProcessBus(retry=FAST_RETRY)
    await adapter.start()
    yield adapter
    await adapter.stop()


@pytest.fixture
def topic(unique: str) -> str:
    return f"mlplane.{unique}counters"


async def test_a_subscribed_group_receives_every_published_event(bus, topic, unique):
    got = Recorder()
    await bus.subscribe(f"{unique}projector", [topic], got)
    events = interleaved(streams=3, per_stream=10)

    await bus.publish(topic, events)

    await eventually(lambda: len(got.events) >= len(events))
    assert sorted(got.ids) == sorted(ev.id for ev in events)
    assert got.events[0].data == {"stream": got.events[0].stream_id, "n": 1}


async def test_each_group_receives_every_event(bus, topic, unique):
    first, second = Recorder(), Recorder()
    await bus.subscribe(f"{unique}projector", [topic], first)
    await bus.subscribe(f"{unique}notifier", [topic], second)
    events = interleaved(streams=2, per_stream=10)

    await bus.publish(topic, events)

    await eventually(lambda: len(first.events) >= 20 and len(second.events) >= 20)
    assert sorted(first.ids) == sorted(second.ids) == sorted(ev.id for ev in events)


async def test_a_group_receives_only_the_topics_it_subscribed_to(bus, topic, unique):
    got = Recorder()
    other = f"{topic}_other"
    await bus.subscribe(f"{unique}projector", [topic], got)

    await bus.publish(other, [event("elsewhere", 1, 1)])
    await bus.publish(topic, [event("here", 1, 2)])

    await eventually(lambda: len(got.events) >= 1)
    await asyncio.sleep(0.2)
    assert got.ids == ["here-1"]


async def test_events_of_each_stream_arrive_in_stream_order(bus, topic, unique):
    got = Recorder()
    await bus.subscribe(f"{unique}projector", [topic], got)
    events = interleaved(streams=12, per_stream=40)

    for start in range(0, len(events), 37):  # several publishes, each with many streams
        await bus.publish(topic, events[start : start + 37])

    await eventually(lambda: len(got.events) >= len(events))
    by_stream: dict[str, list[int]] = {}
    for ev in got.events:
        by_stream.setdefault(ev.stream_id, []).append(ev.version)
    assert len(by_stream) == 12
    assert all(versions == list(range(1, 41)) for versions in by_stream.values())


async def test_a_handler_that_fails_twice_then_succeeds_gets_the_event(bus, topic, unique):
    attempts: dict[str, int] = {}
    handled = Recorder()
    parked = Recorder()

    async def flaky(ev: StoredEvent) -> None:
        attempts[ev.id] = attempts.get(ev.id, 0) + 1
        if ev.id == "counter-1" and attempts[ev.id] <= 2:
            raise ConnectionError("projection store unavailable")
        await handled(ev)

    group = f"{unique}projector"
    await bus.subscribe(group, [topic], flaky)
    await bus.subscribe(f"{unique}dlq-watch", [dlq_topic(topic)], parked)

    await bus.publish(topic, [event("counter", 1, 1), event("counter", 2, 2)])

    await eventually(lambda: len(handled.events) >= 2)
    assert handled.ids == ["counter-1", "counter-2"]
    assert attempts == {"counter-1": 3, "counter-2": 1}
    # a marker on the dead-letter topic, same key: anything parked before it arrives first
    await bus.publish(dlq_topic(topic), [event("counter", 99, 99)])
    await eventually(lambda: len(parked.events) >= 1)
    assert parked.ids == ["counter-99"]


async def test_a_handler_that_always_fails_parks_the_event_on_the_dead_letter_topic(
    bus, topic, unique
):
    handled = Recorder()
    parked = Recorder()
    calls: list[str] = []

    async def rejects_poison(ev: StoredEvent) -> None:
        calls.append(ev.id)
        if ev.data["n"] == 1:
            raise ValueError("cannot fold a counter that starts at one")
        await handled(ev)

    group = f"{unique}projector"
    await bus.subscribe(group, [topic], rejects_poison)
    await bus.subscribe(f"{unique}dlq-watch", [dlq_topic(topic)], parked)

    await bus.publish(topic, [event("counter", 1, 1), event("counter", 2, 2)])

    await eventually(lambda: len(handled.events) >= 1 and len(parked.events) >= 1)
    assert calls.count("counter-1") == FAST_RETRY.max_attempts
    assert handled.ids == ["counter-2"]
    [dead] = parked.events
    assert dead.id == "counter-1" and dead.stream_id == "counter"
    assert dead.meta["failed_group"] == group
    assert dead.meta["error"] == "ValueError: cannot fold a counter that starts at one"
    assert dead.data == {"stream": "counter", "n": 1}


async def test_a_handler_may_publish_to_a_topic_its_own_group_follows(bus, topic, unique):
    got = Recorder()

    async def reacts(ev: StoredEvent) -> None:
        await got(ev)
        if ev.version == 1:
            await asyncio.wait_for(bus.publish(topic, [event(ev.stream_id, 2, 2)]), WAIT)

    await bus.subscribe(f"{unique}reactor", [topic], reacts)

    await bus.publish(topic, [event("counter", 1, 1)])

    await eventually(lambda: len(got.events) >= 2)
    assert got.ids == ["counter-1", "counter-2"]


async def test_publish_all_delivers_every_topic_with_each_stream_in_order(bus, topic, unique):
    got = Recorder()
    other = f"{topic}_other"
    await bus.subscribe(f"{unique}projector", [topic, other], got)
    here, there = interleaved(streams=4, per_stream=25), interleaved(streams=3, per_stream=25)
    there = [ev.replace(stream_id=f"x-{ev.stream_id}", id=f"x-{ev.id}") for ev in there]

    await bus.publish_all({topic: here, other: there})

    await eventually(lambda: len(got.events) >= len(here) + len(there))
    by_stream: dict[str, list[int]] = {}
    for ev in got.events:
        by_stream.setdefault(ev.stream_id, []).append(ev.version)
    assert sorted(got.ids) == sorted(ev.id for ev in here + there)
    assert len(by_stream) == 7
    assert all(versions == list(range(1, 26)) for versions in by_stream.values())


# ------------------------------------------------------------------ Kafka only


@pytest.mark.kafka
async def test_kafka_messages_are_cloudevents_in_binary_mode(kafka_bootstrap, topic):
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    sent = event("training-42", 3, 17, traceparent=traceparent, space="acme", actor="ada")
    bus = kafka_bus(kafka_bootstrap)
    await bus.start()
    try:
        await bus.publish(topic, [sent])
    finally:
        await bus.stop()

    raw = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await raw.start()
    try:
        msg = await asyncio.wait_for(raw.getone(), WAIT)
    finally:
        await raw.stop()
    headers = {k: v.decode() for k, v in msg.headers}
    assert msg.key == b"training-42"
    assert json.loads(msg.value) == sent.data
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_id"] == sent.id
    assert headers["ce_type"] == "CounterIncremented"
    assert headers["ce_subject"] == "training-42"
    assert headers["ce_source"] == "mlplane"
    assert headers["ce_streamversion"] == "3"
    assert headers["ce_position"] == "17"
    assert headers["ce_space"] == "acme" and headers["ce_actor"] == "ada"
    assert headers["content-type"] == "application/json"
    assert headers["traceparent"] == traceparent


@pytest.mark.kafka
async def test_kafka_redelivers_what_a_stopped_consumer_had_not_finished(
    kafka_bootstrap, topic, unique
):
    group = f"{unique}projector"
    events = [event("counter", v, v) for v in range(1, 31)]  # one stream: one partition
    finished = Recorder()

    async def hangs_on_the_tenth(ev: StoredEvent) -> None:
        if ev.version == 10:
            await asyncio.Event().wait()  # never returns: the consumer dies holding it
        await finished(ev)

    first = kafka_bus(kafka_bootstrap, drain_timeout=0.5)
    await first.start()
    await first.subscribe(group, [topic], hangs_on_the_tenth)
    await first.publish(topic, events)
    await eventually(lambda: len(finished.events) >= 9)
    await first.stop()

    again = Recorder()
    second = kafka_bus(kafka_bootstrap)
    await second.start()
    try:
        await second.subscribe(group, [topic], again)
        await eventually(lambda: len(again.events) >= 21)
        await asyncio.sleep(0.3)
    finally:
        await second.stop()
    assert finished.ids == [ev.id for ev in events[:9]]
    assert again.ids == [ev.id for ev in events[9:]]


@pytest.mark.kafka
async def test_kafka_stop_finishes_the_event_in_hand_and_commits_it(kafka_bootstrap, topic, unique):
    group = f"{unique}projector"
    events = [event("counter", v, v) for v in range(1, 41)]
    started, finished = Recorder(), Recorder()

    async def slow(ev: StoredEvent) -> None:
        await started(ev)
        await asyncio.sleep(0.05)
        await finished(ev)

    first = kafka_bus(kafka_bootstrap)
    await first.start()
    await first.subscribe(group, [topic], slow)
    await first.publish(topic, events)
    await eventually(lambda: len(finished.events) >= 5)
    await first.stop()
    assert started.ids == finished.ids  # nothing was cut off mid-handling

    rest = Recorder()
    second = kafka_bus(kafka_bootstrap)
    await second.start()
    try:
        await second.subscribe(group, [topic], rest)
        await eventually(lambda: len(finished.events) + len(rest.events) >= len(events))
        await asyncio.sleep(0.3)
    finally:
        await second.stop()
    assert finished.ids + rest.ids == [ev.id for ev in events]  # no loss, no repeat


@pytest.mark.kafka
async def test_kafka_consumer_keeps_going_when_dead_lettering_fails_for_a_while(
    kafka_bootstrap, topic, unique
):
    handled = Recorder()
    parked = Recorder()
    bus = kafka_bus(kafka_bootstrap)
    real_publish = bus.publish
    refusals = []

    async def publish_refusing_dlq_twice(to: str, evs) -> None:
        if to.endswith(".dlq") and len(refusals) < 2:
            refusals.append(to)
            raise ConnectionError("dead-letter topic unreachable")
        await real_publish(to, evs)

    async def rejects_first(ev: StoredEvent) -> None:
        if ev.version == 1:
            raise ValueError("poison")
        await handled(ev)

    bus.publish = publish_refusing_dlq_twice  # type: ignore[method-assign]
    await bus.start()
    try:
        await bus.subscribe(f"{unique}projector", [topic], rejects_first)
        await bus.subscribe(f"{unique}dlq-watch", [dlq_topic(topic)], parked)
        await real_publish(topic, [event("counter", 1, 1), event("counter", 2, 2)])
        await eventually(lambda: len(handled.events) >= 1 and len(parked.events) >= 1)
    finally:
        await bus.stop()
    assert len(refusals) == 2
    assert parked.ids == ["counter-1"]
    assert handled.ids == ["counter-2"]


async def read_raw(bootstrap: str, topic: str, count: int) -> list:
    """The first `count` messages of `topic`, read with plain aiokafka from the beginning."""
    raw = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await raw.start()
    messages: list = []
    try:
        while len(messages) < count:
            for batch in (await asyncio.wait_for(raw.getmany(timeout_ms=500), WAIT)).values():
                messages.extend(batch)
    finally:
        await raw.stop()
    return messages


@pytest.mark.kafka
async def test_kafka_puts_each_stream_on_the_partition_any_kafka_client_would(
    kafka_bootstrap, topic
):
    events = interleaved(streams=40, per_stream=3)
    bus = kafka_bus(kafka_bootstrap)
    await bus.start()
    try:
        await bus.publish(topic, events)
    finally:
        await bus.stop()

    messages = await read_raw(kafka_bootstrap, topic, len(events))
    # murmur2 of the key, positive, modulo the partitions: the Java client's rule, and aiokafka's
    assert all(m.partition == (murmur2(m.key) & 0x7FFFFFFF) % 4 for m in messages)
    assert len({m.partition for m in messages}) == 4


@pytest.mark.kafka
async def test_kafka_consumer_commits_each_fetch_once_after_handling_it(
    kafka_bootstrap, topic, unique
):
    events = interleaved(streams=8, per_stream=100)
    got = Recorder()
    committed: dict[int, int] = {}  # partition -> offset, as of the last commit
    commits = fetches = 0
    bus = kafka_bus(kafka_bootstrap)
    await bus.start()
    try:
        await bus.publish(topic, events)
        await bus.subscribe(f"{unique}projector", [topic], got)
        consumer = bus._subscriptions[0].consumer
        commit, getmany = consumer.commit, consumer.getmany

        async def counting(*args, **kwargs):
            nonlocal fetches
            fetched = await getmany(*args, **kwargs)
            fetches += any(fetched.values())
            return fetched

        async def recording(offsets) -> None:
            nonlocal commits
            commits += 1
            committed.update({tp.partition: offset for tp, offset in offsets.items()})
            # a fresh topic starts at offset 0: what is committed was handled before
            assert sum(committed.values()) <= len(got.events)
            await commit(offsets)

        consumer.commit, consumer.getmany = recording, counting
        await eventually(lambda: sum(committed.values()) >= len(events))
    finally:
        await bus.stop()
    assert sorted(got.ids) == sorted(ev.id for ev in events)
    assert commits == fetches < len(events) // 100  # one per fetch: not per event, nor partition


@pytest.mark.kafka
async def test_kafka_names_topics_and_groups_on_the_broker_under_its_prefix(
    kafka_bootstrap, unique
):
    got = Recorder()
    bus = kafka_bus(kafka_bootstrap, prefix=f"{unique}acme_")
    await bus.start()
    try:
        await bus.subscribe("projector", ["mlplane.counters"], got)
        await bus.publish("mlplane.counters", [event("counter", 1, 1)])
        await eventually(lambda: len(got.events) >= 1)
        groups, topics = await _broker_names(kafka_bootstrap)
    finally:
        await bus.stop()
    assert f"{unique}acme_mlplane.counters" in topics
    assert f"{unique}acme_projector" in groups
    [message] = await read_raw(kafka_bootstrap, f"{unique}acme_mlplane.counters", 1)
    assert message.key == b"counter"


@pytest.mark.kafka
async def test_kafka_buses_with_different_prefixes_share_a_broker_and_never_meet(
    kafka_bootstrap, unique
):
    """Two deployments use the same topic and group names; neither sees the other's events,
    and neither takes partitions from the other's consumers."""
    first, second = Recorder(), Recorder()
    buses = [kafka_bus(kafka_bootstrap, prefix=f"{unique}{name}_") for name in ("one", "two")]
    for bus in buses:
        await bus.start()
    try:
        await buses[0].subscribe("projector", ["mlplane.counters"], first)
        await buses[1].subscribe("projector", ["mlplane.counters"], second)
        await buses[0].publish("mlplane.counters", interleaved(streams=8, per_stream=5))
        await buses[1].publish("mlplane.counters", [event("theirs", 1, 1)])
        await eventually(lambda: len(first.events) >= 40 and len(second.events) >= 1)
        await asyncio.sleep(0.3)
    finally:
        for bus in buses:
            await bus.stop()
    assert len(first.events) == 40 and "theirs-1" not in first.ids
    assert second.ids == ["theirs-1"]


def test_kafka_refuses_a_prefix_that_cannot_name_a_topic():
    with pytest.raises(ValueError, match="cannot start a Kafka topic name"):
        KafkaBus("127.0.0.1:9092", prefix="acme/prod:")


async def _broker_names(bootstrap: str) -> tuple[set[str], set[str]]:
    """The consumer groups and the topics the broker knows."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        groups = {group[0] for group in await admin.list_consumer_groups()}
        return groups, set(await admin.list_topics())
    finally:
        await admin.close()
