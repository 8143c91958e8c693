"""The fleet worker: a process manager that makes the servers hold what they should.

Each step (every `poll_s`, or at once when a placement or an endpoint changes on the bus):

1. **Converge demands**: every endpoint on `local://` should have its model version placed on
   `replicas` servers matching its selector; missing placements are requested (ready servers
   first, the least busy first), and once the endpoint has rolled out a version its placements of
   older versions are released, as are those of endpoints that are gone.
2. **Tend each server**: read its health and the models it reports ready, record what changed
   (`ServerHealthChanged`, `ServerModelsObserved`, `ServerDriftDetected`), then reconcile: load
   what is held but not loaded (which reloads what vanished after a crash), unload platform models
   that nobody holds, each outcome an event.

The managed local server is started on first use (its first placement), so a platform that
never serves a model never starts it. Step 1 is a pure policy, `placements(demands, servers,
registered) -> commands`; a demand whose model version is not registered yet (an endpoint
deployed from a checkpoint the import worker is still registering) waits for it.

The import worker follows the endpoint topic: `import_policy(event, registered)` says which
checkpoint an endpoint names that is not yet a model here, and it registers it
(`services.import_checkpoint`): `ModelCreated`, `ModelVersionAdded`, or `ModelImportFailed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlplane import aggregates
from mlplane.bus import topic_name
from mlplane.deps import in_space
from mlplane.errors import Conflict
from mlplane.eventlog import Context
from mlplane.events import Event, StoredEvent
from mlplane.kernel import Kernel

from services.inference_deploy import events as d

from . import commands as c
from . import events as e
from .events import checkpoint_model_id
from .handlers import FAILED, MODELS, SERVED_PREFIX, ServerState
from .mlserver import ManagedMLServer
from .projections import CHECKPOINTS, DEMANDS
from .projections import MODELS as MODEL_DOCS
from .projections import SERVERS as SERVER_DOCS
from .servers import ServerError, TritonServer, connect
from .settings import ServingSettings

log = logging.getLogger("mlplane.serving.fleet")

WORKER = "serving.fleet"
ENDPOINT_HOLDER = "endpoint:"
RETRY_FAILED_S = 15.0
WAKERS = {
    e.PlacementRequested.type_name,
    e.PlacementReleased.type_name,
    e.ServerRegistered.type_name,
    e.ModelVersionAdded.type_name,
    d.EndpointDeployed.type_name,
    d.EndpointReconfigured.type_name,
    d.EndpointRolledOut.type_name,
    d.EndpointRemoved.type_name,
}


def holder_of(endpoint_id: str) -> str:
    return f"{ENDPOINT_HOLDER}{endpoint_id}"


def matches(server: dict[str, Any], selector: dict[str, str]) -> bool:
    labels = {
        **server.get("labels", {}),
        "name": server["name"],
        "kind": server["kind"],
        "id": server["id"],
    }
    return all(labels.get(k) == v for k, v in selector.items())


def placements(
    demands: list[dict[str, Any]], servers: list[dict[str, Any]], registered: set[str]
) -> list[c.Command]:
    """The placements to request and release so the fleet holds what endpoints on `local://`
    demand: `replicas` servers matching the selector (ready ones first, the least busy first)
    for each demand whose version is `registered`; once an endpoint has rolled out a version,
    its placements of others are released, as are those of endpoints that are gone."""
    local = [x for x in demands if x.get("runtime", "local://") == "local://"]
    commands: list[c.Command] = []
    for demand in local:
        if demand["served_name"] in registered:
            commands += _place(demand, servers)
    wanted = {holder_of(x["endpoint_id"]): x for x in local}
    for server in servers:
        for name, placement in server["placements"].items():
            for holder in placement["holders"]:
                if not holder.startswith(ENDPOINT_HOLDER):
                    continue
                demand = wanted.get(holder)
                stale = demand is None or (
                    name != demand["served_name"]
                    and demand.get("rolled_out") == demand["served_name"]
                )
                if stale:
                    commands.append(
                        c.ReleasePlacement(server_id=server["id"], served_name=name, holder=holder)
                    )
    return commands


def _place(demand: dict[str, Any], servers: list[dict[str, Any]]) -> list[c.Command]:
    holder, name = holder_of(demand["endpoint_id"]), demand["served_name"]
    holding = [s for s in servers if holder in s["placements"].get(name, {}).get("holders", [])]
    missing = int(demand.get("replicas", 1)) - len(holding)
    if missing <= 0:
        return []
    held = {s["id"] for s in holding}
    candidates = [
        s
        for s in servers
        if s["id"] not in held
        and matches(s, demand.get("selector", {}))
        and (s["ready"] or s["managed"])
    ]
    candidates.sort(key=lambda s: (not s["ready"], len(s["placements"])))
    return [
        c.RequestPlacement(
            server_id=server["id"],
            served_name=name,
            model_id=demand["model_id"],
            version=demand["version"],
            space_id=demand.get("space_id", ""),
            holder=holder,
        )
        for server in candidates[:missing]
    ]


@dataclass(frozen=True)
class ImportCheckpoint:
    """The import worker's instruction: register checkpoint `checkpoint_id` as `model_id`."""

    checkpoint_id: str
    model_id: str


def import_policy(event: Event, registered: bool) -> list[ImportCheckpoint]:
    """An endpoint deployed (or changed) to serve a checkpoint that is not a model here yet."""
    if not isinstance(event, (d.EndpointDeployed, d.EndpointReconfigured)):
        return []
    checkpoint, model = event.spec.get("checkpoint_id"), event.spec.get("model_id")
    if not checkpoint or model != checkpoint_model_id(checkpoint) or registered:
        return []
    return [ImportCheckpoint(checkpoint_id=checkpoint, model_id=model)]


class ImportWorker:
    """Registers the checkpoints endpoints name (see `import_policy`)."""

    def __init__(self, kernel: Kernel, serving: Any) -> None:
        self.kernel = kernel
        self.serving = serving
        self.ctx = Context(actor="system", source="mlplane/triton-manager")

    async def start(self) -> None:
        await self.kernel.bus.subscribe("serving-import", [topic_name(d.TOPIC)], self.on_event)

    async def on_event(self, stored: StoredEvent) -> None:
        if stored.type not in (d.EndpointDeployed.type_name, d.EndpointReconfigured.type_name):
            return
        env = await self.kernel.log.decode(stored)
        for step in import_policy(env.data, registered=False):
            state, _ = await aggregates.load(self.kernel.log, MODELS, step.model_id)
            if not import_policy(env.data, registered=bool(state.id)):
                continue
            await self.run(step)

    async def run(self, step: ImportCheckpoint) -> None:
        from .services import import_checkpoint

        doc = await self.kernel.docs.get(CHECKPOINTS, step.checkpoint_id)
        if doc is None:
            await self.kernel.catch_up(CHECKPOINTS)
            doc = await self.kernel.docs.get(CHECKPOINTS, step.checkpoint_id)
        if doc is None:  # the bus retries, then parks the event with this reason
            raise LookupError(f"checkpoint {step.checkpoint_id!r} is not known here yet")
        ctx = in_space(self.ctx, doc["space_id"])
        try:
            await import_checkpoint(self.serving, ctx, doc)
        except Conflict:
            return  # registered meanwhile by another delivery
        except Exception as exc:  # noqa: BLE001 - recorded as the import's outcome
            log.warning("checkpoint %s could not be registered: %s", step.checkpoint_id, exc)
            await self.kernel.execute(
                c.RecordImportFailed(
                    model_id=step.model_id,
                    checkpoint_id=step.checkpoint_id,
                    space_id=doc["space_id"],
                    error=str(exc)[:500],
                ),
                ctx,
            )


class FleetWorker:
    def __init__(
        self,
        kernel: Kernel,
        store: Any,
        settings: ServingSettings,
        local: ManagedMLServer | None = None,
        local_id: str = "",
    ) -> None:
        self.kernel = kernel
        self.store = store
        self.settings = settings
        self.local = local
        self.local_id = local_id
        self.ctx = Context(actor="system", source="mlplane/triton-manager")
        self.cache = (kernel.settings.home / "serving" / "cache").resolve()
        self._clients: dict[str, tuple[tuple, TritonServer]] = {}
        self._failed_at: dict[tuple[str, str], float] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._local_start: asyncio.Task | None = None
        self._step_lock = asyncio.Lock()

    # ------------------------------------------------------------ life cycle

    async def start(self) -> None:
        await self.kernel.bus.subscribe(
            "serving-fleet", [topic_name(e.TOPIC), topic_name(d.TOPIC)], self.on_event
        )
        self.kernel.extensions[WORKER] = self
        self.kernel.spawn("serving-fleet", self.run(), self)

    async def on_event(self, stored: StoredEvent) -> None:
        if stored.type in WAKERS:
            self.wake()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.step()
            except Exception:
                log.exception("fleet step failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_s)
            self._wake.clear()
        await self.shutdown()

    async def shutdown(self) -> None:
        for _, client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.close()
        self._clients.clear()
        if self._local_start is not None:
            self._local_start.cancel()
        if self.local is not None:
            await self.local.stop()

    # ------------------------------------------------------------ one step

    async def step(self) -> None:
        async with self._step_lock:
            await self.kernel.catch_up(SERVER_DOCS, DEMANDS, MODEL_DOCS)
            servers = await self._servers()
            if await self.converge(servers):
                await self.kernel.catch_up(SERVER_DOCS)
                servers = await self._servers()
            await asyncio.gather(*(self.tend(ServerState.model_validate(doc)) for doc in servers))

    async def _servers(self) -> list[dict[str, Any]]:
        return (await self.kernel.docs.query(SERVER_DOCS, {}, sort="created_at", limit=10_000)).data

    async def execute(self, command: c.Command) -> Any:
        return await self.kernel.execute(command, self.ctx)

    # ------------------------------------------------------------ demands → placements

    async def converge(self, servers: list[dict[str, Any]]) -> bool:
        demands = (await self.kernel.docs.query(DEMANDS, {}, limit=10_000)).data
        registered: set[str] = set()
        for model_id in {x["model_id"] for x in demands}:
            doc = await self.kernel.docs.get(MODEL_DOCS, model_id)
            registered |= {v["served_name"] for v in (doc or {}).get("versions", {}).values()}
        commands = placements(demands, servers, registered)
        for command in commands:
            await self.execute(command)
        return bool(commands)

    # ------------------------------------------------------------ one server

    def client(self, state: ServerState) -> TritonServer:
        identity = (state.kind, state.host, state.port, state.repository)
        found = self._clients.get(state.id)
        if found is None or found[0] != identity:
            self._clients[state.id] = (
                identity,
                connect(state.kind, state.host, state.port, state.repository),
            )
        return self._clients[state.id][1]

    async def tend(self, state: ServerState) -> None:
        if state.id == self.local_id and self.local is not None and self.local.process is None:
            if not state.held():
                await self.execute(
                    c.RecordHealth(
                        server_id=state.id,
                        live=False,
                        ready=False,
                        error="not started: it starts with its first model",
                    )
                )
                return
            await self._start_local()
        client = self.client(state)
        live, ready, error = await client.health()
        await self.execute(c.RecordHealth(server_id=state.id, live=live, ready=ready, error=error))
        if not ready:
            return
        try:
            loaded = await client.loaded()
        except ServerError as exc:
            await self.execute(
                c.RecordHealth(server_id=state.id, live=live, ready=False, error=str(exc))
            )
            return
        outcome = await self.execute(c.ObserveModels(server_id=state.id, loaded=loaded))
        await self.reconcile(outcome.state, client, loaded)

    async def _start_local(self) -> None:
        if self._local_start is None:
            self._local_start = asyncio.create_task(self.local.start(), name="mlserver-start")
        try:
            await asyncio.shield(self._local_start)
        except Exception as exc:  # noqa: BLE001 - reported as the server's health
            log.error("the local model server did not start: %s", exc)
            self._local_start = None
            await self.execute(
                c.RecordHealth(
                    server_id=self.local_id,
                    live=False,
                    ready=False,
                    error=f"did not start: {exc}"[:300],
                )
            )

    async def reconcile(self, state: ServerState, client: TritonServer, loaded: list[str]) -> None:
        seen = set(loaded)
        for name, placement in state.held().items():
            if name in seen:
                if placement["status"] != "loaded":
                    await self.execute(c.RecordLoaded(server_id=state.id, served_name=name))
                continue
            failed_at = self._failed_at.get((state.id, name), 0.0)
            if placement["status"] == FAILED and time.monotonic() - failed_at < RETRY_FAILED_S:
                continue
            await self._load(state, client, name, placement)
        for name in sorted(seen):
            if name.startswith(SERVED_PREFIX) and name not in state.held():
                await self._unload(state, client, name)
        for name, placement in state.placements.items():
            if not placement["holders"] and name not in seen:
                await self.execute(c.RecordUnloaded(server_id=state.id, served_name=name))

    async def _load(
        self, state: ServerState, client: TritonServer, name: str, placement: dict
    ) -> None:
        try:
            files, version = await self.fetch(placement["model_id"], placement["version"])
            await client.load(
                name, placement["version"], version["format"], version["config"], files
            )
        except (ServerError, LookupError, OSError) as exc:
            self._failed_at[(state.id, name)] = time.monotonic()
            await self.execute(
                c.RecordLoadFailed(server_id=state.id, served_name=name, error=str(exc)[:500])
            )
            return
        self._failed_at.pop((state.id, name), None)
        await self.execute(c.RecordLoaded(server_id=state.id, served_name=name))

    async def _unload(self, state: ServerState, client: TritonServer, name: str) -> None:
        try:
            await client.unload(name)
        except ServerError as exc:
            log.warning("unloading %s from %s failed: %s", name, state.id, exc)
            return
        await self.execute(c.RecordUnloaded(server_id=state.id, served_name=name))

    async def fetch(self, model_id: str, version: int) -> tuple[Path, dict[str, Any]]:
        """A version's files in the local cache (`config.pbtxt`, `<version>/…`), and its record."""
        model, _ = await aggregates.load(self.kernel.log, MODELS, model_id)
        record = model.versions.get(str(version))
        if not model.live or record is None:
            raise LookupError(f"model {model_id!r} has no version {version} any more")
        target = self.cache / model_id / f"v{version}"
        if not (target / "config.pbtxt").is_file():
            partial = target.with_name(target.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            await self.store.get_tree(record["key"], partial)
            partial.rename(target)
        return target, record
