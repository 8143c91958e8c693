"""One trace from the command to the consumer: command span, append, relay publish, handling.

The trace crosses the outbox (the event store keeps the append's `traceparent`) and the bus
(the producer span's `traceparent` travels with the message, as a Kafka header on Kafka).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from backbone_proc import counter_event, open_log
from mlplane import adapters, telemetry
from mlplane.bus.inproc import InProcessBus
from mlplane.bus.kafka import KafkaBus
from mlplane.eventlog import Context
from mlplane.events import StoredEvent
from mlplane.outbox import OutboxRelay
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture
def spans():
    """Tracing on, into memory, for this test only; off again afterwards."""
    exporter = InMemorySpanExporter()
    telemetry.configure(exporter, service="mlplane-test")
    yield exporter
    telemetry.reset()
    assert isinstance(telemetry.tracer(), trace.NoOpTracer)


@pytest.fixture(params=["inproc", pytest.param("kafka", marks=pytest.mark.kafka)])
async def bus(request):
    if request.param == "kafka":
        adapter = KafkaBus(request.getfixturevalue("kafka_bootstrap"), drain_timeout=2.0)
    else:
        adapter = InProcessBus()
    await adapter.start()
    yield adapter
    await adapter.stop()


async def until(check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def named(exporter: InMemorySpanExporter, prefix: str) -> list:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]


async def test_command_append_publish_and_handling_share_one_trace(spans, bus, sqlite_url, unique):
    topic = f"mlplane.{unique}counters"
    log = open_log(sqlite_url, "", topic)
    relay = OutboxRelay(log.store, adapters.read_models(sqlite_url), bus, log.registry)
    handled: list[StoredEvent] = []

    async def handle(event: StoredEvent) -> None:
        handled.append(event)

    await bus.subscribe(f"{unique}watcher", [topic], handle)
    with telemetry.tracer().start_as_current_span("command IncrementCounter") as command:
        await log.append("counter-1", [counter_event(log.registry, 3)], None, Context(actor="ada"))
    await relay.run_once()
    await until(lambda: len(handled) == 1 and named(spans, "handle"))

    [append] = named(spans, "append")
    [publish] = named(spans, f"publish {topic}")
    [handling] = named(spans, "handle CounterIncremented")
    trace_id = command.get_span_context().trace_id
    assert {append.context.trace_id, publish.context.trace_id, handling.context.trace_id} == {
        trace_id
    }
    assert append.parent.span_id == command.get_span_context().span_id
    assert publish.parent.span_id == append.context.span_id
    assert handling.parent.span_id == publish.context.span_id
    assert publish.kind == trace.SpanKind.PRODUCER and handling.kind == trace.SpanKind.CONSUMER
    assert handling.attributes["messaging.consumer.group.name"] == f"{unique}watcher"


async def test_work_done_in_reaction_to_an_event_continues_its_trace(spans, sqlite_url, unique):
    topic = f"mlplane.{unique}counters"
    log = open_log(sqlite_url, "", topic)
    bus = InProcessBus()
    relay = OutboxRelay(log.store, adapters.read_models(sqlite_url), bus, log.registry)

    async def react(event: StoredEvent) -> None:
        if event.stream_id == "counter-1":
            await log.append("counter-2", [counter_event(log.registry, 1)], None)

    await bus.subscribe(f"{unique}reactor", [topic], react)
    with telemetry.tracer().start_as_current_span("command IncrementCounter") as command:
        await log.append("counter-1", [counter_event(log.registry, 3)], None)
    await relay.run_once()

    [reaction] = await log.read_stream("counter-2")
    trace_id = f"{command.get_span_context().trace_id:032x}"
    assert reaction.traceparent.split("-")[1] == trace_id
    assert {s.context.trace_id for s in named(spans, "append")} == {
        command.get_span_context().trace_id
    }


async def test_without_tracing_events_keep_flowing_and_carry_no_trace(sqlite_url, unique):
    topic = f"mlplane.{unique}counters"
    log = open_log(sqlite_url, "", topic)
    bus = InProcessBus()
    relay = OutboxRelay(log.store, adapters.read_models(sqlite_url), bus, log.registry)
    handled: list[StoredEvent] = []

    async def handle(event: StoredEvent) -> None:
        handled.append(event)

    await bus.subscribe(f"{unique}watcher", [topic], handle)
    await log.append("counter-1", [counter_event(log.registry, 3)], None)
    await relay.run_once()

    assert isinstance(telemetry.tracer(), trace.NoOpTracer)
    assert [ev.meta.get("traceparent") for ev in handled] == [None]
