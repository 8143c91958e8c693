"""The rollout worker: a process manager that turns what the fleet did into endpoint state.

It follows the model-serving topic: a version loaded for an endpoint's current revision adds
that server to the endpoint's targets (`EndpointRolledOut`); a failed load with nothing else
serving fails the endpoint; an unloaded version leaves the targets that held it. It follows the
endpoint topic to write each rollout's log and to drive endpoints on `kubernetes://`, which the
Kubernetes runtime runs as a Deployment and a Service instead of placements on the fleet.
"""

from __future__ import annotations

import logging
from typing import Any

from mlplane import aggregates
from mlplane.bus import topic_name
from mlplane.eventlog import Context
from mlplane.events import StoredEvent
from mlplane.kernel import Kernel

from services.triton_manager import events as m
from services.triton_manager.projections import OBSERVED

from . import commands as c
from . import events as e
from .handlers import ENDPOINTS, EndpointState, decide
from .projections import ENDPOINTS as ENDPOINT_DOCS

log = logging.getLogger("mlplane.deploy.rollout")

WORKER = "deploy.rollout"
HOLDER = "endpoint:"


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
            await handler(env.data, env)

    async def state(self, endpoint_id: str) -> EndpointState:
        return (await aggregates.load(self.kernel.log, ENDPOINTS, endpoint_id))[0]

    async def execute(self, command: c.Command, space: str | None = None) -> EndpointState:
        outcome = await aggregates.execute(
            self.kernel.log,
            ENDPOINTS,
            command.endpoint_id,
            decide,
            command,
            Context(actor=self.ctx.actor, source=self.ctx.source, space=space),
        )
        return outcome.state

    async def note(self, state: EndpointState, *lines: str) -> None:
        await self.kernel.log.append(
            f"endpointlog:{state.id}",
            [e.EndpointLogged(endpoint_id=state.id, build_id=state.revision_id, lines=list(lines))],
            None,
            Context(actor=self.ctx.actor, source=self.ctx.source, space=state.space_id),
        )

    # ------------------------------------------------------------ the fleet's outcomes

    def _endpoints(self, holders: list[str]) -> list[str]:
        return [h.removeprefix(HOLDER) for h in holders if h.startswith(HOLDER)]

    async def on_ModelVersionLoaded(self, data: m.ModelVersionLoaded, env) -> None:
        for endpoint in self._endpoints(data.holders):
            state = await self.state(endpoint)
            if not state.live or state.spec.get("served_name") != data.served_name:
                continue
            current = state.targets if state.serving == data.served_name else []
            if data.server_id in current and state.phase == "running":
                continue
            await self.execute(
                c.RollOutEndpoint(
                    endpoint_id=endpoint,
                    served_name=data.served_name,
                    targets=[*current, data.server_id],
                ),
                state.space_id,
            )
            await self.note(
                state,
                f"revision {state.revision}: {data.served_name} loaded on server "
                f"{data.server_id}; serving",
            )

    async def on_ModelVersionLoadFailed(self, data: m.ModelVersionLoadFailed, env) -> None:
        for endpoint in self._endpoints(data.holders):
            state = await self.state(endpoint)
            if not state.live or state.spec.get("served_name") != data.served_name:
                continue
            await self.note(
                state,
                f"revision {state.revision}: loading on server {data.server_id} "
                f"failed: {data.error}",
            )
            if state.serving != data.served_name or not state.targets:
                await self.execute(
                    c.FailEndpoint(endpoint_id=endpoint, reason=data.error), state.space_id
                )

    async def on_ModelVersionUnloaded(self, data: m.ModelVersionUnloaded, env) -> None:
        found = await self.kernel.docs.query(
            ENDPOINT_DOCS, {"serving": data.served_name}, limit=1000
        )
        for doc in found.data:
            if data.server_id not in doc.get("targets", []):
                continue
            state = await self.state(doc["id"])
            targets = [t for t in state.targets if t != data.server_id]
            await self.execute(
                c.RollOutEndpoint(endpoint_id=state.id, served_name=state.serving, targets=targets),
                state.space_id,
            )

    # ------------------------------------------------------------ the endpoints' own changes

    async def on_EndpointDeployed(self, data: e.EndpointDeployed, env) -> None:
        await self._rollout(data.endpoint_id)

    async def on_EndpointReconfigured(self, data: e.EndpointReconfigured, env) -> None:
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
        await self._serve_if_loaded(state)

    async def _serve_if_loaded(self, state: EndpointState) -> None:
        """A version some server already holds (a rollback to the one still loaded) produces no new
        ModelVersionLoaded: serve it from those servers now."""
        served = state.spec.get("served_name")
        if not served or state.serving == served:
            return
        observed = await self.kernel.docs.query(OBSERVED, {"live": True}, limit=1000)
        holding = sorted(
            d["server_id"]
            for d in observed.data
            if d.get("ready") and served in d.get("loaded", [])
        )
        if holding:
            await self.execute(
                c.RollOutEndpoint(endpoint_id=state.id, served_name=served, targets=holding),
                state.space_id,
            )
            await self.note(
                state,
                f"revision {state.revision}: {served} already loaded on "
                f"{', '.join(holding)}; serving",
            )

    async def on_EndpointRemoved(self, data: e.EndpointRemoved, env) -> None:
        state = await self.state(data.endpoint_id)
        await self.note(state, "removed")
        if self.kube is not None and state.spec.get("runtime") == "kubernetes://":
            await self.kube.delete(state)
