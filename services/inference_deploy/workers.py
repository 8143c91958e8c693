"""The rollout worker: a process manager that turns what the fleet did into endpoint state.

It follows the model-serving topic: a version loaded for an endpoint's current revision adds
that server to the endpoint's targets (`EndpointRolledOut`); a failed load with nothing else
serving fails the endpoint, as does a checkpoint the registry could not register
(`ModelImportFailed`); an unloaded version leaves the targets that held it. Those decisions are
one pure `policy(event, state) -> commands`. It follows the endpoint topic to write each
rollout's log and to drive endpoints on `kubernetes://`, which the Kubernetes runtime runs as a
Deployment and a Service instead of placements on the fleet.

What it knows of servers is this context's own `deploy_servers` projection of the fleet's events.
"""

from __future__ import annotations

import logging
from typing import Any

from mlplane import aggregates
from mlplane.bus import topic_name
from mlplane.eventlog import Context
from mlplane.events import Event, StoredEvent
from mlplane.kernel import Kernel

from services.triton_manager import events as m

from . import commands as c
from . import events as e
from .handlers import ENDPOINTS, RUNNING, EndpointState
from .projections import ENDPOINTS as ENDPOINT_DOCS
from .projections import SERVERS

log = logging.getLogger("mlplane.deploy.rollout")

WORKER = "deploy.rollout"
HOLDER = "endpoint:"


def holders(event: Event) -> list[str]:
    """The endpoints a fleet outcome concerns (placements held by `endpoint:<id>`)."""
    return [h.removeprefix(HOLDER) for h in getattr(event, "holders", []) if h.startswith(HOLDER)]


def policy(event: Event, state: EndpointState) -> list[c.Command]:
    """What a fleet outcome changes of one endpoint."""
    if not state.live:
        return []
    served = state.spec.get("served_name")
    match event:
        case m.ModelVersionLoaded(served_name=name, server_id=server) if name == served:
            current = state.targets if state.serving == name else []
            if server in current and state.phase == RUNNING:
                return []
            return [
                c.RollOutEndpoint(
                    endpoint_id=state.id, served_name=name, targets=[*current, server]
                )
            ]
        case m.ModelVersionLoadFailed(served_name=name, error=error) if name == served:
            if state.serving == name and state.targets:
                return []  # other servers still serve this revision
            return [c.FailEndpoint(endpoint_id=state.id, reason=error)]
        case m.ModelVersionUnloaded(served_name=name, server_id=server):
            if state.serving != name or server not in state.targets:
                return []
            targets = [t for t in state.targets if t != server]
            return [c.RollOutEndpoint(endpoint_id=state.id, served_name=name, targets=targets)]
        case m.ModelImportFailed(model_id=model, error=error):
            if state.spec.get("model_id") != model:
                return []
            reason = f"the checkpoint could not be registered as a model: {error}"
            return [c.FailEndpoint(endpoint_id=state.id, reason=reason)]
    return []


def serve_from(state: EndpointState, servers: list[dict[str, Any]]) -> list[c.Command]:
    """A version some server already holds (a rollback to the one still loaded) produces no
    new ModelVersionLoaded: serve it from those servers now."""
    served = state.spec.get("served_name")
    if not state.live or not served or state.serving == served:
        return []
    holding = sorted(s["id"] for s in servers if s.get("ready") and served in s.get("loaded", []))
    if not holding:
        return []
    return [c.RollOutEndpoint(endpoint_id=state.id, served_name=served, targets=holding)]


class RolloutWorker:
    def __init__(self, kernel: Kernel, kube: Any = None) -> None:
        self.kernel = kernel
        self.kube = kube
        self.ctx = Context(actor="system", source="mlplane/inference-deploy")

    async def start(self) -> None:
        await self.kernel.bus.subscribe(
            "deploy-rollout", [topic_name(m.TOPIC), topic_name(e.TOPIC)], self.on_event
        )
        self.kernel.extensions[WORKER] = self
        if self.kube is not None:
            await self.kube.start(self)

    def stop(self) -> None:
        if self.kube is not None:
            self.kube.stop()

    async def on_event(self, stored: StoredEvent) -> None:
        handler = getattr(self, f"on_{stored.type}", None)
        if handler is not None:
            env = await self.kernel.log.decode(stored)
            await handler(env.data)

    async def state(self, endpoint_id: str) -> EndpointState:
        return (await aggregates.load(self.kernel.log, ENDPOINTS, endpoint_id))[0]

    async def execute(self, command: c.Command, space: str | None = None) -> EndpointState:
        ctx = Context(actor=self.ctx.actor, source=self.ctx.source, space=space)
        return (await self.kernel.execute(command, ctx)).state

    async def note(self, state: EndpointState, *lines: str) -> None:
        await self.kernel.log.append(
            f"endpointlog:{state.id}",
            [e.EndpointLogged(endpoint_id=state.id, build_id=state.revision_id, lines=list(lines))],
            None,
            Context(actor=self.ctx.actor, source=self.ctx.source, space=state.space_id),
        )

    # ------------------------------------------------------------ the fleet's outcomes

    async def _apply(self, event: Event, endpoints: list[str]) -> None:
        for endpoint in endpoints:
            state = await self.state(endpoint)
            for command in policy(event, state):
                await self.execute(command, state.space_id)
                if lines := _lines(event, state, command):
                    await self.note(state, *lines)

    async def on_ModelVersionLoaded(self, data: m.ModelVersionLoaded) -> None:
        await self._apply(data, holders(data))

    async def on_ModelVersionLoadFailed(self, data: m.ModelVersionLoadFailed) -> None:
        for endpoint in holders(data):
            state = await self.state(endpoint)
            if state.live and state.spec.get("served_name") == data.served_name:
                await self.note(
                    state,
                    f"revision {state.revision}: loading on server {data.server_id} "
                    f"failed: {data.error}",
                )
        await self._apply(data, holders(data))

    async def on_ModelVersionUnloaded(self, data: m.ModelVersionUnloaded) -> None:
        found = await self.kernel.docs.query(
            ENDPOINT_DOCS, {"serving": data.served_name}, limit=1000
        )
        await self._apply(data, [d["id"] for d in found.data])

    async def on_ModelImportFailed(self, data: m.ModelImportFailed) -> None:
        served = m.served_name(data.model_id, 1)
        found = await self.kernel.docs.query(ENDPOINT_DOCS, {"served_name": served}, limit=1000)
        await self._apply(data, [d["id"] for d in found.data])

    # ------------------------------------------------------------ the endpoints' own changes

    async def on_EndpointDeployed(self, data: e.EndpointDeployed) -> None:
        await self._rollout(data.endpoint_id)

    async def on_EndpointReconfigured(self, data: e.EndpointReconfigured) -> None:
        await self._rollout(data.endpoint_id)

    async def _rollout(self, endpoint: str) -> None:
        state = await self.state(endpoint)
        if not state.live:
            return
        spec = state.spec
        await self.note(
            state,
            f"revision {state.revision}: model {spec.get('model_name')} version "
            f"{spec['version']}, {spec.get('replicas', 1)} replica(s) on {spec.get('runtime')}",
        )
        if spec.get("runtime") == "kubernetes://":
            if self.kube is None:
                await self.execute(
                    c.FailEndpoint(endpoint_id=endpoint, reason="no Kubernetes runtime here"),
                    state.space_id,
                )
                return
            await self.kube.apply(state)
            return
        servers = (await self.kernel.docs.query(SERVERS, {}, limit=10_000)).data
        for command in serve_from(state, servers):
            await self.execute(command, state.space_id)
            await self.note(
                state,
                f"revision {state.revision}: {command.served_name} already loaded on "
                f"{', '.join(command.targets)}; serving",
            )

    async def on_EndpointRemoved(self, data: e.EndpointRemoved) -> None:
        state = await self.state(data.endpoint_id)
        await self.note(state, "removed")
        if self.kube is not None and state.spec.get("runtime") == "kubernetes://":
            await self.kube.delete(state)


def _lines(event: Event, state: EndpointState, command: c.Command) -> list[str]:
    if isinstance(command, c.RollOutEndpoint) and isinstance(event, m.ModelVersionLoaded):
        line = f"revision {state.revision}: {event.served_name} loaded on server {event.server_id}"
        return [f"{line}; serving"]
    if isinstance(command, c.FailEndpoint) and isinstance(event, m.ModelImportFailed):
        return [f"revision {state.revision}: {command.reason}"]
    if isinstance(event, m.ModelVersionUnloaded):
        return [f"{event.served_name} unloaded from server {event.server_id}"]
    return []
