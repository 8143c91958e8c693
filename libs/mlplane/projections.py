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

import gc
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from .errors import reason
from .eventlog import EventLog
from .events import Envelope, StoredEvent
from .follower import Follower
from .readmodels import Doc, ReadModelStore, Write
from .telemetry import tracer

logger = logging.getLogger("mlplane.projections")


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
    envelopes = await _decode(projection, log, relevant)
    keyed = []
    for env in envelopes:
        try:
            keyed.append((projection.key(env), env))
        except Exception as exc:
            raise ProjectionStopped.at(projection.name, env, exc) from exc
    keys = {k for k, _ in keyed if k is not None}
    current = await docs.get_many(physical, keys)
    applied = await docs.positions(physical, keys)
    state: dict[str, Doc | None] = {k: strip(current.get(k)) for k in keys}
    last: dict[str, int] = {}
    for key, env in keyed:
        if key is None or env.position <= applied.get(key, 0):
            continue
        try:
            state[key] = projection.evolve(state[key], env)
        except Exception as exc:
            raise ProjectionStopped.at(projection.name, env, exc) from exc
        last[key] = env.position
    await docs.put_many(physical, [Write(k, state[k], pos) for k, pos in last.items()])


async def _decode(
    projection: Projection, log: EventLog, rows: Sequence[StoredEvent]
) -> list[Envelope]:
    """The batch decoded; when that fails, the first row that cannot be is named."""
    try:
        return await log.decode_many(rows)
    except Exception:
        for row in rows:
            try:
                await log.decode(row)
            except Exception as exc:
                raise ProjectionStopped.at(projection.name, row, exc) from exc
        raise


class ProjectionStopped(Exception):
    """A projection cannot apply one event of the log: it stops just before it.

    Nothing else stops with it: other projections, the relay and every write go on, and the
    runner retries (a fixed upcaster or projection, or a key store that is back, resumes it).
    """

    def __init__(self, projection: str, fault: Doc) -> None:
        super().__init__(
            f"projection {projection} stopped at position {fault['position']} "
            f"({fault['type']} {fault['event_id']} on {fault['stream_id']}): {fault['error']}"
        )
        self.projection = projection
        self.fault = fault

    @classmethod
    def at(
        cls, projection: str, event: Envelope | StoredEvent, exc: Exception
    ) -> ProjectionStopped:
        return cls(
            projection,
            {
                "projection": projection,
                "position": event.position,
                "event_id": event.id,
                "type": event.type,
                "stream_id": event.stream_id,
                "error": reason(exc),
                "at": datetime.now(UTC).isoformat(),
            },
        )


FAULTS = "mlplane_projection_faults"
"""Read-model collection of the projections stopped by an event they cannot apply."""


class ProjectionHealth:
    """Which projections are stopped, and at what: kept in memory for `/readyz`, the write path
    and the metrics (`counts`: faults seen per projection), and in the read-model store
    (`FAULTS`) for `mlplane projections status` from any process."""

    def __init__(self, docs: ReadModelStore) -> None:
        self.docs = docs
        self.faults: dict[str, Doc] = {}
        self.counts: dict[str, int] = {}

    async def load(self) -> None:
        self.faults = {k: strip(v) for k, v in (await self.docs.all_docs(FAULTS)).items()}

    async def stopped(self, stop: ProjectionStopped) -> None:
        known = self.faults.get(stop.projection)
        if known is not None and known["position"] == stop.fault["position"]:
            return
        logger.error("%s", stop)
        self.faults[stop.projection] = stop.fault
        self.counts[stop.projection] = self.counts.get(stop.projection, 0) + 1
        await self.docs.put_many(FAULTS, [Write(stop.projection, stop.fault, time.time_ns())])

    async def running(self, projection: str) -> None:
        if self.faults.pop(projection, None) is None:
            return
        logger.info("projection %s moved past the event that stopped it", projection)
        await self.docs.put_many(FAULTS, [Write(projection, None, time.time_ns())])


@dataclass
class ProjectionRunner:
    projection: Projection
    log: EventLog
    docs: ReadModelStore
    options: dict[str, Any] = field(default_factory=dict)
    health: ProjectionHealth | None = None

    def __post_init__(self) -> None:
        self._physical = self.projection.name
        self.follower = Follower(
            self.projection.name,
            self.log.store,
            self.docs,
            self._apply,
            wake=self.log.waker(),
            **self.options,
        )

    async def _apply(self, batch: Sequence[StoredEvent]) -> None:
        physical = await self.docs.resolve(self.projection.name)
        if physical != self._physical:  # swapped by a rebuild: continue from its checkpoint
            self._physical = physical
            self.follower.name = physical
            raise Swapped
        with tracer().start_as_current_span(f"project {self.projection.name}"):
            try:
                await fold_batch(self.projection, self.log, self.docs, physical, batch)
            except ProjectionStopped as stop:  # apply what precedes the event, then stop
                before = [row for row in batch if row.position < stop.fault["position"]]
                if before:
                    await fold_batch(self.projection, self.log, self.docs, physical, before)
                    await self.docs.set_checkpoint(physical, before[-1].position)
                raise

    async def run_once(self) -> int:
        await self._sync_name()
        try:
            try:
                handled = await self.follower.run_once()
            except Swapped:
                handled = await self.follower.run_once()
        except ProjectionStopped as stop:
            if self.health is not None:
                await self.health.stopped(stop)
            raise
        if self.health is not None:
            await self.health.running(self.projection.name)
        return handled

    async def run(self) -> None:
        await self.follower.run(step=self.run_once)

    async def _sync_name(self) -> None:
        self._physical = await self.docs.resolve(self.projection.name)
        self.follower.name = self._physical

    def stop(self) -> None:
        self.follower.stop()


class Swapped(Exception):
    """The projection's alias moved to a rebuilt collection mid-batch."""


Progress = Callable[[int], None]
"""Called with the position a rebuild has reached after each page."""


async def build_into(
    projection: Projection,
    log: EventLog,
    docs: ReadModelStore,
    physical: str,
    progress: Progress | None = None,
) -> int:
    """Fold the whole log into `physical` (which should be empty); return events read.

    The log is read in pages of 10,000 events, each decoded once and written in one batch.
    A replay makes many short-lived objects, each counting towards the cyclic garbage
    collector's next pass over everything alive; the collector is held back while a page is
    folded (its objects hold no cycles) and runs between pages.
    """

    async def page(batch: Sequence[StoredEvent]) -> None:
        await _without_gc_pauses(fold_batch(projection, log, docs, physical, batch))
        if progress is not None:
            progress(batch[-1].position)

    follower = Follower(physical, log.store, docs, page, batch_size=10_000)
    return await follower.run_once()


async def _without_gc_pauses(work: Awaitable[None]) -> None:
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], 100_000), *threshold[1:])
    try:
        await work
    finally:
        gc.set_threshold(*threshold)


async def rebuild(
    projection: Projection,
    log: EventLog,
    docs: ReadModelStore,
    *,
    drop_previous: bool = False,
    progress: Progress | None = None,
) -> str:
    """Rebuild into a fresh collection and swap it in; return the new physical name.

    The previous copy is kept until the next rebuild (readers may still hold its name), unless
    `drop_previous`: after a forget it holds the forgotten clear text."""
    old = await docs.resolve(projection.name)
    physical = f"{projection.name}__{time.time_ns()}"
    try:
        await build_into(projection, log, docs, physical, progress)
    except ProjectionStopped:
        await docs.drop(physical)  # the live copy stays as it was
        raise
    await docs.set_alias(projection.name, physical)
    await build_into(projection, log, docs, physical)  # what arrived during the swap
    keep = {physical} if drop_previous else {physical, old}
    for name in await docs.collections():
        ours = name == projection.name or name.startswith(f"{projection.name}__")
        if ours and name not in keep:
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
