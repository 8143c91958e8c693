"""Outbox relay: publishes every appended event to the bus, at least once.

The event store is the outbox. The relay follows `read_all` from its checkpoint, publishes each
batch (grouped by topic, stream order kept) as one `publish_all` (on Kafka: every event queued
at once, then one wait for all acknowledgements) and only then records the position. A process
that dies between append and publish, or between sending and recording, publishes again on
restart: a consumer may see an event twice, never a stream out of order.
"""

from __future__ import annotations

from collections.abc import Sequence

from .bus import Bus, topic_name
from .events import EventRegistry, StoredEvent
from .eventstore import EventStore
from .follower import Follower
from .readmodels import ReadModelStore

RELAY = "outbox-relay"


class OutboxRelay:
    def __init__(
        self,
        store: EventStore,
        checkpoints: ReadModelStore,
        bus: Bus,
        registry: EventRegistry,
        **follower_options,
    ) -> None:
        self._bus = bus
        self._registry = registry
        self.follower = Follower(RELAY, store, checkpoints, self._publish, **follower_options)

    async def _publish(self, batch: Sequence[StoredEvent]) -> None:
        by_topic: dict[str, list[StoredEvent]] = {}
        for event in batch:
            topic = topic_name(self._registry.model(event.type).topic)
            by_topic.setdefault(topic, []).append(event)
        await self._bus.publish_all(by_topic)

    async def run_once(self) -> int:
        return await self.follower.run_once()

    async def run(self) -> None:
        await self.follower.run()

    def stop(self) -> None:
        self.follower.stop()
