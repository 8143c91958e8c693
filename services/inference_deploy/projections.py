"""Read models of the inference-endpoint context, each a pure fold that can be dropped and rebuilt.

`deploy_endpoints` is the endpoint as the data plane routes it. `deploy_revisions` holds, per
endpoint, a snapshot of its configuration for every change (seed 004), each with the phase its
rollout reached; `deploy_revision_index` finds a revision's endpoint from the revision's id.

What this context knows of the others it learns from their events, folded here: the registry's
models and versions (`deploy_models`, from the model-serving context), the servers and what
they hold (`deploy_servers`), and the training context's checkpoints (`deploy_checkpoints`).
A space's cluster (for `kubernetes://`) carries a token, so it is folded from the training
context's events when needed (`evolve_cluster`) and never stored here.
"""

from __future__ import annotations

from typing import Any

from mlplane.aggregates import stamp
from mlplane.events import Envelope
from mlplane.projections import Projection

from services.training import events as t
from services.triton_manager import events as m

from . import events as e
from .handlers import EndpointState, evolve_endpoint

Doc = dict[str, Any]

ENDPOINTS = "deploy_endpoints"
REVISIONS = "deploy_revisions"
REVISION_INDEX = "deploy_revision_index"
MODELS = "deploy_models"
SERVERS = "deploy_servers"
CHECKPOINTS = "deploy_checkpoints"

LIFECYCLE = (
    e.EndpointDeployed,
    e.EndpointReconfigured,
    e.EndpointRolledOut,
    e.EndpointFailed,
    e.EndpointRemoved,
)


def _types(*classes: type) -> frozenset[str]:
    return frozenset(cls.type_name for cls in classes)


class Endpoints(Projection):
    name = ENDPOINTS
    handles = _types(*LIFECYCLE)

    def key(self, event: Envelope) -> str:
        return event.data.endpoint_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        state = evolve_endpoint(
            EndpointState.model_validate(doc["_state"]) if doc else EndpointState(), event
        )
        if not state.live:
            return {
                "_state": state.model_dump(mode="json"),
                "removed": True,
                "id": state.id,
                "space_id": state.space_id,
                "name": state.name,
            }
        return {"_state": state.model_dump(mode="json"), **state.to_doc(), "removed": False}


class Revisions(Projection):
    name = REVISIONS
    handles = _types(*LIFECYCLE)

    def key(self, event: Envelope) -> str:
        return event.data.endpoint_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        data, at = event.data, stamp(event)
        doc = doc or {"endpoint_id": data.endpoint_id, "revisions": []}
        revisions = list(doc["revisions"])
        if isinstance(data, (e.EndpointDeployed, e.EndpointReconfigured)):
            if revisions and revisions[-1]["phase"] in ("Pending", "Running", "Failed"):
                revisions[-1] = {**revisions[-1], "phase": "Replaced", "phaseUpdatedAt": at}
            space = data.space_id if isinstance(data, e.EndpointDeployed) else doc["space_id"]
            name = data.name if isinstance(data, e.EndpointDeployed) else doc["name"]
            doc = {**doc, "space_id": space, "name": name}
            revisions.append(snapshot(data, space, name, at))
        elif revisions and isinstance(data, e.EndpointRolledOut):
            running = bool(data.targets or data.url)
            revisions[-1] = {
                **revisions[-1],
                "phase": "Running" if running else "Pending",
                "phaseMessage": "",
                "phaseUpdatedAt": at,
                "runningPods": len(data.targets) or (1 if data.url else 0),
                "currentNodePools": data.targets,
            }
        elif revisions and isinstance(data, e.EndpointFailed):
            revisions[-1] = {
                **revisions[-1],
                "phase": "Failed",
                "phaseMessage": data.reason,
                "phaseUpdatedAt": at,
            }
        elif isinstance(data, e.EndpointRemoved):
            revisions = [
                r
                if r.get("deletedAt")
                else {**r, "deletedAt": at, "phase": "Deleted", "phaseUpdatedAt": at}
                for r in revisions
            ]
        return {**doc, "revisions": revisions}


def snapshot(
    data: e.EndpointDeployed | e.EndpointReconfigured, space: str, name: str, at: str
) -> Doc:
    spec = data.spec
    runtime = spec.get("runtime", "local://")
    selector = spec.get("selector", {})
    return {
        "type": "inference-revision",
        "name": name,
        "id": data.revision_id,
        "workloadId": data.endpoint_id,
        "revision": data.revision,
        "tenantId": 0,
        "clusterId": runtime,
        "projectId": space,
        "departmentId": space,
        "createdAt": at,
        "deletedAt": None,
        "requestedNodePools": [f"{k}={v}" for k, v in sorted(selector.items())],
        "currentNodePools": [],
        "runningPods": 0,
        "requestedPods": spec.get("replicas", 1),
        "images": [spec.get("image") or ("mlserver" if runtime == "local://" else "tritonserver")],
        "command": "",
        "arguments": "",
        "phase": "Pending",
        "phaseMessage": "",
        "phaseUpdatedAt": at,
        "spec": spec,
        "rollbackOf": getattr(data, "rollback_of", None),
    }


class RevisionIndex(Projection):
    name = REVISION_INDEX
    handles = _types(e.EndpointDeployed, e.EndpointReconfigured)

    def key(self, event: Envelope) -> str:
        return event.data.revision_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc:
        return {
            "revision_id": event.data.revision_id,
            "endpoint_id": event.data.endpoint_id,
            "space_id": event.space or getattr(event.data, "space_id", ""),
        }


class Models(Projection):
    """Per registered model: its space, name and versions (what a deployment names)."""

    name = MODELS
    handles = _types(
        m.ModelCreated, m.ModelUpdated, m.ModelDeleted, m.ModelVersionAdded, m.ModelVersionDeleted
    )

    def key(self, event: Envelope) -> str:
        return event.data.model_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        data, at = event.data, stamp(event)
        match data:
            case m.ModelCreated():
                return {
                    "id": data.model_id,
                    "space_id": data.space_id,
                    "name": data.name,
                    "versions": {},
                }
            case m.ModelDeleted():
                return None
        if doc is None:
            return None
        match data:
            case m.ModelUpdated(name=name) if name:
                return {**doc, "name": name}
            case m.ModelVersionAdded():
                record = {
                    **data.model_dump(mode="json", exclude={"model_id"}),
                    "served_name": m.served_name(data.model_id, data.version),
                    "created_at": at,
                }
                return {**doc, "versions": {**doc["versions"], str(data.version): record}}
            case m.ModelVersionDeleted(version=version):
                versions = {k: v for k, v in doc["versions"].items() if k != str(version)}
                return {**doc, "versions": versions}
        return doc


class Servers(Projection):
    """Per inference server: its address and the served names it holds (what an endpoint's
    provenance names and a rollout serves from)."""

    name = SERVERS
    handles = _types(
        m.ServerRegistered,
        m.ServerUpdated,
        m.ServerDeleted,
        m.ServerHealthChanged,
        m.ServerModelsObserved,
        m.ModelVersionLoaded,
        m.ModelVersionUnloaded,
    )

    def key(self, event: Envelope) -> str:
        return event.data.server_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        data = event.data
        match data:
            case m.ServerRegistered():
                fields = data.model_dump(include={"name", "host", "port", "kind"})
                return {"id": data.server_id, **fields, "ready": False, "loaded": []}
            case m.ServerDeleted():
                return None
        if doc is None:
            return None
        match data:
            case m.ServerUpdated():
                fields = data.model_dump(include={"name", "host", "port"}, exclude_none=True)
                return {**doc, **fields}
            case m.ServerHealthChanged(ready=ready):
                return {**doc, "ready": ready}
            case m.ServerModelsObserved(loaded=loaded):
                return {**doc, "loaded": sorted(loaded)}
            case m.ModelVersionLoaded(served_name=served):
                return {**doc, "loaded": sorted({*doc["loaded"], served})}
            case m.ModelVersionUnloaded(served_name=served):
                return {**doc, "loaded": [n for n in doc["loaded"] if n != served]}
        return doc


class Checkpoints(Projection):
    """Per training checkpoint: its space, name and format (an endpoint may be deployed from it)."""

    name = CHECKPOINTS
    handles = _types(t.CheckpointCreated)

    def key(self, event: Envelope) -> str:
        return event.data.checkpoint_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        return checkpoint_origin(event.data, stamp(event))


BUNDLE_FIELDS = ("bundle_id", "code_hash", "data_hash", "parameters_hash", "bundle_hash")


def checkpoint_origin(data: t.CheckpointCreated, at: str) -> Doc:
    """Where a checkpoint came from, as an endpoint's provenance names it."""
    origin = data.provenance
    bundle = {k: origin.get(k, "") for k in (*BUNDLE_FIELDS, "entrypoint")}
    return {
        "checkpoint_id": data.checkpoint_id,
        "space_id": data.space_id,
        "name": data.name,
        "format": data.format,
        "checkpoint": data.checkpoint_node(at),
        "training": {
            "id": data.training_id,
            "name": origin.get("training_name", ""),
            "source": origin.get("source", ""),
            "owner": origin.get("owner", ""),
            "architecture": origin.get("architecture", ""),
            "parameters": origin.get("parameters", {}),
            "started_at": origin.get("started_at"),
        },
        "bundle": bundle if bundle["bundle_id"] else None,
        "environment": {
            "runtime": origin.get("runtime", ""),
            "runner": origin.get("runner", ""),
            **origin.get("environment", {}),
        },
    }


CLUSTER_EVENTS = (t.ClusterRegistered, t.ClusterUpdated, t.ClusterDeleted)


def evolve_cluster(cluster: Doc | None, event: Envelope) -> Doc | None:
    """A space's cluster as the Kubernetes runtime needs it (address, token, TLS rule)."""
    data = event.data
    match data:
        case t.ClusterRegistered():
            return data.model_dump(
                include={"manager_url", "ingress_url", "token", "allow_insecure_http"}
            )
        case t.ClusterUpdated() if cluster is not None:
            changes = data.model_dump(
                include={"manager_url", "ingress_url", "token", "allow_insecure_http"},
                exclude_none=True,
            )
            return {**cluster, **changes}
        case t.ClusterDeleted():
            return None
    return cluster


def projections() -> list[Projection]:
    return [Endpoints(), Revisions(), RevisionIndex(), Models(), Servers(), Checkpoints()]
