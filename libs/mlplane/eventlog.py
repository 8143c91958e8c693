"""The event log services talk to: typed events in, envelopes out.

It wraps an `EventStore` with the event registry (types, versions, upcasters), personal-data
encryption (crypto-shredding through a `KeyStore`), tracing, and a wake-up signal for the
followers of the log (outbox relay, projection runners) living in the same process.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from . import keystore as ks
from .events import Envelope, Event, EventRegistry, StoredEvent
from .eventstore import EventStore
from .keystore import KeyStore
from .telemetry import current_traceparent, tracer

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Context:
    """Who and what caused a write: copied into every event's metadata."""

    space: str | None = None
    actor: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    source: str = "mlplane"

    def caused_by(self, env: Envelope) -> Context:
        """The context of work done in reaction to `env`."""
        return replace(
            self,
            space=env.space,
            correlation_id=env.correlation_id or env.id,
            causation_id=env.id,
        )


class EventLog:
    def __init__(self, store: EventStore, registry: EventRegistry, keys: KeyStore) -> None:
        self.store = store
        self.registry = registry
        self.keys = keys
        self._signals: weakref.WeakSet[asyncio.Event] = weakref.WeakSet()  # one per waker

    async def append(
        self,
        stream_id: str,
        events: Sequence[Event],
        expected_version: int | None,
        ctx: Context = Context(),
        event_ids: Sequence[str] | None = None,
    ) -> list[Envelope]:
        """Append typed events to a stream; raise ConcurrencyError if it moved on."""
        with tracer().start_as_current_span(f"append {stream_id.split(':', 1)[0]}"):
            meta = {
                "source": ctx.source,
                "space": ctx.space,
                "actor": ctx.actor,
                "correlation_id": ctx.correlation_id,
                "causation_id": ctx.causation_id,
                "traceparent": current_traceparent(),
            }
            ids = list(event_ids) if event_ids else [None] * len(events)
            rows = [
                self.registry.to_stored(stream_id, ev, event_id=eid, **meta)
                for ev, eid in zip(events, ids, strict=True)
            ]
            if any(ev.personal for ev in events):
                rows = [await self._seal(row, ev) for row, ev in zip(rows, events, strict=True)]
            stored = await self.store.append(stream_id, rows, expected_version)
        self.notify()
        return [self.registry.envelope(row, ev) for row, ev in zip(stored, events, strict=True)]

    def notify(self) -> None:
        """Wake every follower of this log."""
        for signal in self._signals:
            signal.set()

    def waker(self) -> Callable[[float], Awaitable[None]]:
        """A wait for the next append, of one follower's own: a notification that arrives while
        the follower is busy is kept for its next wait, not taken by another follower. The
        signal lives as long as the returned function."""
        signal = asyncio.Event()
        self._signals.add(signal)

        async def wait(timeout: float) -> None:
            try:
                await asyncio.wait_for(signal.wait(), timeout)
            except TimeoutError:
                pass
            signal.clear()

        return wait

    async def read_stream(
        self, stream_id: str, from_version: int = 1, to_version: int | None = None
    ) -> list[Envelope]:
        rows = await self.store.read_stream(stream_id, from_version, to_version)
        return await self.decode_many(rows)

    async def read_all(self, from_position: int = 1, limit: int = 1000) -> list[Envelope]:
        return await self.decode_many(await self.store.read_all(from_position, limit))

    async def state_at(
        self,
        stream_id: str,
        evolve: Callable[[S, Envelope], S],
        initial: S,
        *,
        at_time: datetime | None = None,
        at_version: int | None = None,
    ) -> tuple[S, int]:
        """Time travel: the fold of a stream's events up to a version or a moment.

        Returns the state and the version it reflects (0: the stream did not exist yet).
        """
        state, version = initial, 0
        for env in await self.read_stream(stream_id, to_version=at_version):
            if at_time is not None and env.time > at_time:
                break
            state, version = evolve(state, env), env.version
        return state, version

    async def forget(self, subject: str) -> None:
        """Crypto-shred a data subject: its personal fields read as erased from now on."""
        await self.keys.forget(subject)

    async def _seal(self, row: StoredEvent, event: Event) -> StoredEvent:
        if not event.personal:
            return row
        subject = getattr(event, event.subject_field) if event.subject_field else row.stream_id
        data = dict(row.data)
        for name in event.personal:
            if data.get(name) is not None:
                key = await self.keys.create(str(subject))
                data[name] = ks.encrypt(key, str(subject), data[name])
        return row.replace(data=data)

    async def open(self, row: StoredEvent) -> StoredEvent:
        """Decrypt the personal fields of a stored event; erased where the key is gone."""
        model = self.registry.model(row.type)
        if not model.personal:
            return row
        data: dict[str, Any] = dict(row.data)
        for name in model.personal:
            value = data.get(name)
            if ks.is_encrypted(value):
                key = await self.keys.get(ks.subject_of(value))
                data[name] = ks.decrypt(key, value) if key else None
        return row.replace(data=data)

    async def decode(self, row: StoredEvent) -> Envelope:
        """The typed envelope of a stored event, upcast to the current version, in clear.

        Personal fields are opened before upcasting (so an upcaster sees values) and once more
        after it (a personal field an upcaster renamed still arrives sealed).
        """
        if not self.registry.model(row.type).personal:
            return self.registry.decode(row)
        row = await self.open(row)
        current = self.registry.model(row.type).type_version
        if row.type_version < current:
            data = self.registry.upcast(row.type, row.type_version, row.data)
            row = await self.open(row.replace(data=data, type_version=current))
        return self.registry.decode(row)

    async def decode_many(self, rows: Sequence[StoredEvent]) -> list[Envelope]:
        """`decode` of each row; only rows of types with personal fields wait for the key store."""
        registry = self.registry
        return [
            await self.decode(row) if registry.model(row.type).personal else registry.decode(row)
            for row in rows
        ]
