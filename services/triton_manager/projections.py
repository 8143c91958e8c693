"""Read models of the model-serving context, each a pure fold that can be dropped and rebuilt.

Desired state (placements someone holds) and observed state (health and what each server
reported loaded) are separate projections of the servers' streams; the servers projection has
the registration and the drift between the two. Demands are what endpoints ask of the fleet —
a model version, how many replicas, on which servers — folded from the endpoint context's
events, so the fleet converges on them without reading another service's tables; checkpoints
are the training context's, folded from its events, so a checkpoint an endpoint names can be
registered as a model here.
"""

from __future__ import annotations

from typing import Any

from mlplane.events import Envelope
from mlplane.projections import Projection

from services.inference_deploy import events as d
from services.training import events as t

from . import events as e
from .handlers import ModelState, ServerState, evolve_model, evolve_server

Doc = dict[str, Any]

MODELS = "serving_models"
SERVERS = "serving_servers"
DESIRED = "serving_desired"
OBSERVED = "serving_observed"
DEMANDS = "serving_demands"
CHECKPOINTS = "serving_checkpoints"

SERVER_EVENTS = (
    e.ServerRegistered,
    e.ServerUpdated,
    e.ServerDeleted,
    e.ServerHealthChanged,
    e.ServerModelsObserved,
    e.PlacementRequested,
    e.PlacementReleased,
    e.ModelVersionLoaded,
    e.ModelVersionLoadFailed,
    e.ModelVersionUnloaded,
    e.ServerDriftDetected,
)


def _types(*classes: type) -> frozenset[str]:
    return frozenset(cls.type_name for cls in classes)


class Models(Projection):
    name = MODELS
    handles = _types(
        e.ModelCreated, e.ModelUpdated, e.ModelDeleted, e.ModelVersionAdded, e.ModelVersionDeleted
    )

    def key(self, event: Envelope) -> str:
        return event.data.model_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        state = evolve_model(ModelState.model_validate(doc) if doc else ModelState(), event)
        if state.deleted:
            return None
        return {**state.to_doc(), "latest_version": state.latest_version}


class _ServerFold(Projection):
    handles = _types(*SERVER_EVENTS)

    def key(self, event: Envelope) -> str:
        return event.data.server_id

    def state(self, doc: Doc | None, event: Envelope) -> ServerState:
        return evolve_server(
            ServerState.model_validate(doc["_state"]) if doc else ServerState(), event
        )


class Servers(Projection):
    name = SERVERS
    handles = _types(*SERVER_EVENTS)

    def key(self, event: Envelope) -> str:
        return event.data.server_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        state = evolve_server(ServerState.model_validate(doc) if doc else ServerState(), event)
        return None if state.deleted else state.to_doc()


class Desired(_ServerFold):
    """Per server: the model versions that should be loaded there and who holds them."""

    name = DESIRED

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        state = self.state(doc, event)
        if state.deleted:
            return None
        return {"_state": state.to_doc(), "server_id": state.id, "placements": state.held()}


class Observed(_ServerFold):
    """Per server: what it last answered — health and the models it reported ready."""

    name = OBSERVED

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        state = self.state(doc, event)
        if state.deleted:
            return None
        return {
            "_state": state.to_doc(),
            "server_id": state.id,
            "live": state.live,
            "ready": state.ready,
            "error": state.error,
            "loaded": state.loaded,
            "observed_at": state.observed_at,
            "health_changed_at": state.health_changed_at,
        }


class Demands(Projection):
    """Per endpoint: the model version it wants served, on how many servers, chosen how."""

    name = DEMANDS
    handles = _types(
        d.EndpointDeployed, d.EndpointReconfigured, d.EndpointRolledOut, d.EndpointRemoved
    )

    def key(self, event: Envelope) -> str:
        return event.data.endpoint_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        data = event.data
        if isinstance(data, d.EndpointRemoved):
            return None
        if isinstance(data, d.EndpointRolledOut):
            return {**doc, "rolled_out": data.served_name} if doc else None
        spec = data.spec
        base = doc or {"endpoint_id": data.endpoint_id, "rolled_out": ""}
        if isinstance(data, d.EndpointDeployed):
            base = {**base, "space_id": data.space_id, "rolled_out": ""}
        return {
            **base,
            "revision_id": data.revision_id,
            "served_name": spec["served_name"],
            "model_id": spec["model_id"],
            "version": spec["version"],
            "replicas": spec.get("replicas", 1),
            "selector": spec.get("selector", {}),
            "runtime": spec.get("runtime", "local://"),
        }


class Checkpoints(Projection):
    """Per training checkpoint: where its files are, so it can be registered as a model."""

    name = CHECKPOINTS
    handles = _types(t.CheckpointCreated)

    def key(self, event: Envelope) -> str:
        return event.data.checkpoint_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        data = event.data
        return {
            "checkpoint_id": data.checkpoint_id,
            "space_id": data.space_id,
            "name": data.name,
            "format": data.format,
            "key": data.key,
        }


def projections() -> list[Projection]:
    return [Models(), Servers(), Desired(), Observed(), Demands(), Checkpoints()]
