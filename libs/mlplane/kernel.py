"""The kernel every service runs on: event log, read models, bus, outbox relay, projections.

`Kernel.open(settings)` picks adapters from the settings' URLs; `start` launches the relay and
the projection runners as tasks; `stop` lets them finish their batch and closes everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import adapters, aggregates, telemetry
from .aggregates import Outcome
from .bus import Bus
from .commands import Command, CommandHandlers, Handler
from .eventlog import Context, EventLog
from .events import EventRegistry
from .events import registry as default_registry
from .history import EntityKind
from .outbox import OutboxRelay
from .projections import (
    Projection,
    ProjectionHealth,
    ProjectionRunner,
    ProjectionStopped,
    rebuild,
)
from .readmodels import ReadModelStore
from .settings import Settings

log = logging.getLogger("mlplane.kernel")


@dataclass
class Kernel:
    settings: Settings
    log: EventLog
    docs: ReadModelStore
    bus: Bus
    projections: dict[str, Projection] = field(default_factory=dict)
    entities: dict[str, EntityKind] = field(default_factory=dict)
    """Every kind of entity of the services here, by name (`mlplane.history`)."""
    commands: dict[type, Handler[Any]] = field(default_factory=dict)
    """Which aggregate each command acts on (`mlplane.commands`), from every service here."""
    extensions: dict[str, Any] = field(default_factory=dict)
    """Objects a service's start-up attaches for its routes to find (its worker, its stores)."""
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _followers: list = field(default_factory=list)
    health: ProjectionHealth = field(init=False)
    """Which projections an event stopped (`mlplane.projections.ProjectionStopped`)."""

    def __post_init__(self) -> None:
        self.health = ProjectionHealth(self.docs)

    @classmethod
    def open(cls, settings: Settings, registry: EventRegistry = default_registry) -> Kernel:
        telemetry.configure(settings.trace_exporter, service=f"mlplane-{settings.service}")
        store = adapters.event_store(settings.events_url, settings.prefix)
        keys = adapters.key_store(settings.keys_url, settings.prefix)
        return cls(
            settings=settings,
            log=EventLog(store, registry, keys),
            docs=adapters.read_models(settings.readmodels_url, settings.prefix),
            bus=adapters.bus(
                settings.bus_url, client_id=f"mlplane-{settings.service}", prefix=settings.prefix
            ),
        )

    def add_projections(self, projections: Sequence[Projection]) -> None:
        for projection in projections:
            self.projections[projection.name] = projection

    def add_entities(self, kinds: Sequence[EntityKind]) -> None:
        for kind in kinds:
            self.entities[kind.name] = kind

    def add_commands(self, handlers: CommandHandlers) -> None:
        for command, handler in handlers.items():
            if self.commands.get(command, handler) is not handler:
                raise ValueError(f"{command.__name__} is handled twice")
            self.commands[command] = handler

    async def execute(self, command: Command, ctx: Context) -> Outcome[Any]:
        """The command path of every write: load the entity the command acts on, decide,
        append with the version loaded (deciding again if another writer got in first), then
        bring the read models level so the caller's next read sees the write."""
        handler = self.commands[type(command)]
        outcome = await aggregates.execute(
            self.log, handler.aggregate, handler.entity(command), handler.decide, command, ctx
        )
        if outcome.events:
            await self.catch_up()
        return outcome

    async def start(self, *, relay: bool = True, projections: bool = True) -> None:
        await self.bus.start()
        # in-process appends wake the followers at once; polling only catches other processes
        poll = 0.5 if not self.settings.distributed else 0.25
        if relay:
            outbox = OutboxRelay(
                self.log.store,
                self.docs,
                self.bus,
                self.log.registry,
                poll_interval=poll,
                wake=self.log.waker(),
            )
            self._spawn("outbox-relay", outbox.run(), outbox)
        if projections:
            await self.health.load()
            options = {"poll_interval": poll, "max_backoff": 30.0}
            for projection in self.projections.values():
                runner = ProjectionRunner(projection, self.log, self.docs, options, self.health)
                self._spawn(f"projection:{projection.name}", runner.run(), runner)

    def spawn(self, name: str, coro, follower) -> None:
        """Run a long-lived task of a service (a worker) until `stop`, which calls
        `follower.stop()` and gives the task the same grace period as the followers."""
        self._spawn(name, coro, follower)

    def _spawn(self, name: str, coro, follower) -> None:
        self._followers.append(follower)
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def catch_up(self, *names: str) -> None:
        """Bring every projection (or those named) level with the log: read-your-writes for
        callers that need it.

        A projection stopped by an event it cannot apply is left to its runner: the write that
        asked has been stored, and its answer must not turn into an error for it."""
        for projection in self.projections.values():
            if names and projection.name not in names:
                continue
            if projection.name in self.health.faults:
                continue
            runner = ProjectionRunner(projection, self.log, self.docs, health=self.health)
            with contextlib.suppress(ProjectionStopped):
                await runner.run_once()

    async def doc(self, name: str, key: str, stream_id: str) -> dict[str, Any] | None:
        """Document `key` of projection `name`, with read-your-writes: the projection is caught
        up when the document is not there yet, and while an event stops the projection the
        document is folded from `stream_id`, the stream it comes from."""
        found = await self.docs.get(name, key)
        if found is None:
            await self.catch_up(name)
            found = await self.docs.get(name, key)
        if found is None and name in self.health.faults:
            projection, found = self.projections[name], None
            for env in await self.log.read_stream(stream_id):
                if env.type in projection.handles and projection.key(env) == key:
                    found = projection.evolve(found, env)
        return found

    async def forget(self, subject: str) -> None:
        """Crypto-shred a data subject, then rebuild every projection so no clear text stays."""
        await self.log.forget(subject)
        for projection in self.projections.values():
            try:
                await rebuild(projection, self.log, self.docs, drop_previous=True)
            except ProjectionStopped as stop:  # the others are still rebuilt; this one is shown
                await self.health.stopped(stop)

    async def stop(self) -> None:
        for follower in self._followers:
            follower.stop()
        self.log.notify()
        for task in self._tasks:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), timeout=5)
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.bus.stop()
        await self.log.store.close()
        await self.log.keys.close()
        await self.docs.close()
