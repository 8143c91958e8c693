"""In-process bus (asyncio): the embedded default.

`publish` returns once every subscribed group has handled the events, so a caller that
records its progress after publishing (the outbox relay) never loses an event to a crash.
Nothing is retained: a group sees what is published after it subscribed.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import defaultdict
from collections.abc import Sequence

from ..events import StoredEvent
from .base import DEFAULT_RETRY, Bus, Handler, RetryPolicy, publish_span, trace_runs

_holding: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "mlplane_inproc_groups", default=frozenset()
)
"""Groups whose lock the current task holds: a handler (or a dead-lettering) that publishes to
a topic its own group follows is delivered inline instead of waiting on itself."""


class InProcessBus(Bus):
    def __init__(self, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        super().__init__(retry)
        self._groups: dict[str, list[tuple[frozenset[str], Handler]]] = defaultdict(list)
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def publish(self, topic: str, events: Sequence[StoredEvent]) -> None:
        for run in trace_runs(events):
            with publish_span(topic, run) as traced:
                await asyncio.gather(
                    *(self._run(group, topic, traced) for group in list(self._groups))
                )

    async def _run(self, group: str, topic: str, events: Sequence[StoredEvent]) -> None:
        handlers = [h for topics, h in self._groups[group] if topic in topics]
        if not handlers:
            return
        if group in _holding.get():
            await self._deliver_all(group, topic, events, handlers)
            return
        async with self._locks[group]:  # one group handles one event at a time: stream order holds
            token = _holding.set(_holding.get() | {group})
            try:
                await self._deliver_all(group, topic, events, handlers)
            finally:
                _holding.reset(token)

    async def _deliver_all(
        self, group: str, topic: str, events: Sequence[StoredEvent], handlers: list[Handler]
    ) -> None:
        for event in events:
            for handler in handlers:
                await self.deliver(group, topic, event, handler)

    async def subscribe(self, group: str, topics: Sequence[str], handler: Handler) -> None:
        self._groups[group].append((frozenset(topics), handler))
