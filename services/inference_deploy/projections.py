"""Read models of the inference-endpoint context, each a pure fold that can be dropped and rebuilt.

`deploy_endpoints` is the endpoint as the data plane routes it. `deploy_revisions` holds, per
endpoint, a snapshot of its configuration for every change (seed 004), each with the phase its
rollout reached; `deploy_revision_index` finds a revision's endpoint from the revision's id.
"""

from __future__ import annotations

from typing import Any

from mlplane.events import Envelope
from mlplane.projections import Projection

from . import events as e
from .handlers import EndpointState, evolve_endpoint, stamp

Doc = dict[str, Any]

ENDPOINTS = "deploy_endpoints"
REVISIONS = "deploy_revisions"
REVISION_INDEX = "deploy_revision_index"

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


def projections() -> list[Projection]:
    return [Endpoints(), Revisions(), RevisionIndex()]
