"""In-process bus (asyncio): the embedded default.

`publish` returns once every subscribed group has handled the events, so a caller that
records its progress after publishing (the outbox relay) never loses an event to a crash.
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence

from ..events import StoredEvent
from ..telemetry import tracer
from .base import Bus, Handler, RetryPolicy


class InProcessBus(Bus):
    def __init__(self, retry: RetryPolicy = RetryPolicy()) -> None:
        super().__init__(retry)
        self._groups: dict[str, list[tuple[frozenset[str], Handler]]] = defaultdict(list)
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def publish(self, topic: str, events: Sequence[StoredEvent]) -> None:
        with tracer().start_as_current_span(f"publish {topic}"):
            await asyncio.gather(*(self._run(group, topic, events) for group in list(self._groups)))

    async def _run(self, group: str, topic: str, events: Sequence[StoredEvent]) -> None:
        handlers = [h for topics, h in self._groups[group] if topic in topics]
        if not handlers:
            return
        async with self._locks[group]:  # one group handles one event at a time: stream order holds
            for event in events:
                for handler in handlers:
                    await self.deliver(group, topic, event, handler)

    async def subscribe(self, group: str, topics: Sequence[str], handler: Handler) -> None:
        self._groups[group].append((frozenset(topics), handler))
