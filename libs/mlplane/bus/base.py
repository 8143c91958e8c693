"""The bus port: publish stored events to topics, subscribe a consumer group to topics.

Delivery is at least once and in order per stream. A handler that raises is retried with
exponential backoff; after `max_attempts` the event is parked on `<topic>.dlq` with the reason
in its metadata (`error`, `failed_group`) and the consumer moves on.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from itertools import groupby

from opentelemetry.trace import NoOpTracer, SpanKind

from ..events import StoredEvent
from ..telemetry import current_traceparent, span_from, tracer

Handler = Callable[[StoredEvent], Awaitable[None]]
log = logging.getLogger("mlplane.bus")

TOPIC_PREFIX = "mlplane."


def topic_name(context: str) -> str:
    """Kafka topic of a bounded context: one topic per context, key = stream id."""
    return context if context.startswith(TOPIC_PREFIX) else TOPIC_PREFIX + context


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    first_delay: float = 0.05
    max_delay: float = 2.0

    def delay(self, attempt: int) -> float:
        return min(self.first_delay * 2 ** (attempt - 1), self.max_delay)


DEFAULT_RETRY = RetryPolicy()


def trace_runs(events: Sequence[StoredEvent]) -> list[list[StoredEvent]]:
    """Split `events` (order kept) into runs that share a traceparent, i.e. one append each."""
    return [list(run) for _, run in groupby(events, key=lambda ev: ev.meta.get("traceparent"))]


@contextmanager
def publish_span(topic: str, run: Sequence[StoredEvent]) -> Iterator[list[StoredEvent]]:
    """A producer span in the trace of `run` (events sharing a traceparent).

    Yields the events carrying the producer span's `traceparent`, so a consumer's span is its
    child: command, append, publish and handling read as one trace. Without tracing the
    events keep the traceparent they were appended with.
    """
    traceparent = run[0].meta.get("traceparent") if run else None
    with span_from(
        traceparent,
        f"publish {topic}",
        SpanKind.PRODUCER,
        **{"messaging.destination.name": topic, "messaging.operation.type": "send"},
    ):
        parent = current_traceparent() or traceparent
        if parent == traceparent:
            yield list(run)
        else:
            yield [ev.replace(meta={**ev.meta, "traceparent": parent}) for ev in run]


def handle_span(group: str, topic: str, event: StoredEvent) -> AbstractContextManager:
    """A consumer span in the trace `event` carries. For an untraced event with tracing off,
    none: the handler runs in the same context either way, and a no-op span costs more than a
    small handler."""
    traceparent = event.meta.get("traceparent")
    if traceparent is None and isinstance(tracer(), NoOpTracer):
        return nullcontext()
    return span_from(
        traceparent,
        f"handle {event.type}",
        SpanKind.CONSUMER,
        **{"messaging.consumer.group.name": group, "messaging.destination.name": topic},
    )


class Bus(abc.ABC):
    def __init__(self, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        self.retry = retry

    async def start(self) -> None:
        """Connect. Publishing or subscribing before `start` is an error."""

    async def stop(self) -> None:
        """Finish in-flight deliveries, commit, disconnect."""

    @abc.abstractmethod
    async def publish(self, topic: str, events: Sequence[StoredEvent]) -> None:
        """Publish events in order; return once the bus has accepted them durably."""

    async def publish_all(self, batches: Mapping[str, Sequence[StoredEvent]]) -> None:
        """Publish several topics' events (one outbox batch), each topic's in order; return
        once the bus has accepted all of them. An adapter may send them together."""
        for topic, events in batches.items():
            await self.publish(topic, events)

    @abc.abstractmethod
    async def subscribe(self, group: str, topics: Sequence[str], handler: Handler) -> None:
        """Deliver every event of `topics` to `handler`, once per consumer group."""

    async def deliver(self, group: str, topic: str, event: StoredEvent, handler: Handler) -> None:
        """Run the handler with retries; park the event on the dead-letter topic if it keeps failing."""
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                with handle_span(group, topic, event):
                    await handler(event)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is retried, then parked
                reason = f"{type(exc).__name__}: {exc}"
                if attempt == self.retry.max_attempts:
                    log.error(
                        "dead-lettering %s %s for %s: %s", event.type, event.id, group, reason
                    )
                    parked = event.replace(
                        meta={**event.meta, "error": reason, "failed_group": group}
                    )
                    await self.publish(dlq_topic(topic), [parked])
                    return
                log.warning(
                    "handler %s failed on %s (attempt %d): %s", group, event.id, attempt, reason
                )
                await asyncio.sleep(self.retry.delay(attempt))
