"""Projections: pure folds of events into read-model documents, and the runner that applies them.

A projection says which event types it folds, which document an event belongs to (`key`), and
how a document evolves (`evolve`, pure: no I/O). The runner follows the event log in global
order, folds a batch in memory, and writes each touched document with the position of the last
event folded into it: an event at or below a document's stored position is skipped, so a
replay after a crash changes nothing.

Rebuild: fold the whole log into a fresh physical collection, catch up, then point the
projection's alias at it. Readers switch on their next query; the live runner continues from
the rebuilt collection's checkpoint. Verify: rebuild into a scratch collection and compare.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .eventlog import EventLog
from .events import Envelope, StoredEvent
from .follower import Follower
from .readmodels import Doc, ReadModelStore, Write
from .telemetry import tracer


class Projection:
    """Subclass with `name`, `handles` and `evolve` (and `key` when not the stream id)."""

    name: ClassVar[str]
    handles: ClassVar[frozenset[str]]

    def key(self, event: Envelope) -> str | None:
        return event.stream_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        raise NotImplementedError


def strip(doc: Doc | None) -> Doc | None:
    if doc is None:
        return None
    return {k: v for k, v in doc.items() if k not in ("_key", "_pos")}


async def fold_batch(
    projection: Projection,
    log: EventLog,
    docs: ReadModelStore,
    physical: str,
    batch: Sequence[StoredEvent],
) -> None:
    """Fold one batch of stored events into `physical`, skipping what is already applied."""
    relevant = [row for row in batch if row.type in projection.handles]
    if not relevant:
        return
    envelopes = await log.decode_many(relevant)
    keyed = [(projection.key(env), env) for env in envelopes]
    keys = {k for k, _ in keyed if k is not None}
    current = await docs.get_many(physical, keys)
    applied = await docs.positions(physical, keys)
    state: dict[str, Doc | None] = {k: strip(current.get(k)) for k in keys}
    last: dict[str, int] = {}
    for key, env in keyed:
        if key is None or env.position <= applied.get(key, 0):
            continue
        state[key] = projection.evolve(state[key], env)
        last[key] = env.position
    await docs.put_many(physical, [Write(k, state[k], pos) for k, pos in last.items()])


@dataclass
class ProjectionRunner:
    projection: Projection
    log: EventLog
    docs: ReadModelStore
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._physical = self.projection.name
        self.follower = Follower(
            self.projection.name, self.log.store, self.docs, self._apply,
            wake=self.log.waker(), **self.options,
        )

    async def _apply(self, batch: Sequence[StoredEvent]) -> None:
        physical = await self.docs.resolve(self.projection.name)
        if physical != self._physical:  # swapped by a rebuild: continue from its checkpoint
            self._physical = physical
            self.follower.name = physical
            raise Swapped
        with tracer().start_as_current_span(f"project {self.projection.name}"):
            await fold_batch(self.projection, self.log, self.docs, physical, batch)

    async def run_once(self) -> int:
        await self._sync_name()
        try:
            return await self.follower.run_once()
        except Swapped:
            return await self.follower.run_once()

    async def run(self) -> None:
        await self.follower.run(step=self.run_once)

    async def _sync_name(self) -> None:
        self._physical = await self.docs.resolve(self.projection.name)
        self.follower.name = self._physical

    def stop(self) -> None:
        self.follower.stop()


class Swapped(Exception):
    """The projection's alias moved to a rebuilt collection mid-batch."""


async def build_into(projection: Projection, log: EventLog, docs: ReadModelStore, physical: str) -> int:
    """Fold the whole log into `physical` (which should be empty); return events read."""
    follower = Follower(
        physical, log.store, docs,
        lambda batch: fold_batch(projection, log, docs, physical, batch),
        batch_size=10_000,
    )
    return await follower.run_once()


async def rebuild(projection: Projection, log: EventLog, docs: ReadModelStore) -> str:
    """Rebuild into a fresh collection and swap it in; return the new physical name."""
    old = await docs.resolve(projection.name)
    physical = f"{projection.name}__{time.time_ns()}"
    await build_into(projection, log, docs, physical)
    await docs.set_alias(projection.name, physical)
    await build_into(projection, log, docs, physical)  # what arrived during the swap
    # keep the previous copy until the next rebuild: readers may still hold its name
    for name in await docs.collections():
        ours = name == projection.name or name.startswith(f"{projection.name}__")
        if ours and name not in (physical, old):
            await docs.drop(name)
    return physical


@dataclass
class Difference:
    missing: list[str]  # in the rebuild, not live
    extra: list[str]  # live, not in the rebuild
    changed: list[str]

    @property
    def empty(self) -> bool:
        return not (self.missing or self.extra or self.changed)


async def verify(projection: Projection, log: EventLog, docs: ReadModelStore) -> Difference:
    """Rebuild into a scratch collection and compare it with the live one.

    Both are brought to the same position of the log first (the live runner may lag, and
    events may arrive while the scratch copy is built), so only real differences show.
    """
    live_name = await docs.resolve(projection.name)
    scratch = f"{projection.name}__verify_{time.time_ns()}"
    try:
        for _ in range(5):
            await build_into(projection, log, docs, scratch)
            # the live runner may lag: bring it level before comparing
            await ProjectionRunner(projection, log, docs).run_once()
            if await docs.get_checkpoint(scratch) == await docs.get_checkpoint(live_name):
                break
        live, rebuilt = await docs.all_docs(live_name), await docs.all_docs(scratch)
    finally:
        await docs.drop(scratch)
    return Difference(
        missing=sorted(rebuilt.keys() - live.keys()),
        extra=sorted(live.keys() - rebuilt.keys()),
        changed=sorted(k for k in live.keys() & rebuilt.keys() if live[k] != rebuilt[k]),
    )


def content_hash(docs: dict[str, Doc]) -> str:
    """A hash of a read model's content, independent of storage order."""
    digest = hashlib.sha256()
    for key in sorted(docs):
        digest.update(json.dumps(docs[key], sort_keys=True, default=str).encode())
    return digest.hexdigest()
