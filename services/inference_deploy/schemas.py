"""API models of endpoints and revisions: what routes take (input forbids unknown fields) and
answer (`…Public`). Never events; the public shapes are built from read-model documents."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

Name = Annotated[
    str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
]


class EndpointUpdate(BaseModel):
    """A change of an endpoint's configuration (PATCH), and the options of a deployment."""

    model_config = ConfigDict(extra="forbid")

    replicas: Annotated[int | None, Field(ge=1, le=64)] = None
    selector: dict[str, str] | None = None
    resources: dict[str, Any] | None = None
    runtime: Annotated[str | None, Field(pattern="^(local|kubernetes)://$")] = None
    version: Annotated[int | None, Field(ge=1)] = None


class EndpointCreate(EndpointUpdate):
    name: Name | None = None


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    revision: Annotated[
        str, Field(min_length=1, max_length=64, description="A revision id or number")
    ]


class EndpointPublic(BaseModel):
    id: str
    name: str
    space_id: str
    status: str
    phase: str
    """pending (not serving its current revision yet), running, failed or removed."""
    reason: str
    revision: int
    revision_id: str
    model_id: str
    model_name: str | None
    version: int
    checkpoint_id: str | None
    replicas: int
    selector: dict[str, str]
    resources: dict[str, Any]
    runtime: str
    targets: list[str]
    url: str
    infer_path: str
    owner: str
    created_at: str
    updated_at: str


def endpoint_public(doc: dict[str, Any]) -> EndpointPublic:
    spec = doc["spec"]
    return EndpointPublic(
        id=doc["id"],
        name=doc["name"],
        space_id=doc["space_id"],
        status=doc["phase"],
        phase=doc["phase"],
        reason=doc["reason"],
        revision=doc["revision"],
        revision_id=doc["revision_id"],
        model_id=spec["model_id"],
        model_name=spec.get("model_name"),
        version=spec["version"],
        checkpoint_id=spec.get("checkpoint_id"),
        replicas=spec.get("replicas", 1),
        selector=spec.get("selector", {}),
        resources=spec.get("resources", {}),
        runtime=spec.get("runtime", "local://"),
        targets=doc["targets"],
        url=doc["url"],
        infer_path=f"/v2/models/{doc['name']}/infer",
        owner=doc["owner"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
    )


class EndpointList(BaseModel):
    count: int
    data: list[EndpointPublic]
    endpoints: list[EndpointPublic]
    has_more: bool


class EndpointRemoved(BaseModel):
    status: str = "ok"
    id: str
    name: str


class LogLine(BaseModel):
    time: str
    build_id: str
    text: str


class EndpointLogs(BaseModel):
    endpoint: str
    logs: str
    lines: list[LogLine]


class BuildLogs(BaseModel):
    job_id: str
    logs: str
    lines: list[LogLine]


class ModelVersionRef(BaseModel):
    model_id: str
    name: str
    version: int
    format: str | None = None
    files: dict[str, str] = {}
    source: str | None = None
    created_at: str | None = None


class ServerRef(BaseModel):
    id: str
    name: str
    host: str
    port: int
    kind: str


class GraphNode(BaseModel):
    id: str
    """`<kind>:<id>`, the key scheme of every provenance graph (the training context's too)."""
    kind: str
    type: str
    name: str | None = None


class GraphEdge(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from", serialization_alias="from")
    to: str
    kind: str
    type: str


class Graph(BaseModel):
    nodes: list[GraphNode]
    edges: list[GraphEdge]


class ProvenancePublic(BaseModel):
    endpoint: EndpointPublic
    model_version: ModelVersionRef
    checkpoint: dict[str, Any] | None
    training: dict[str, Any] | None
    bundle: dict[str, Any] | None
    environment: dict[str, Any] | None
    servers: list[ServerRef]
    graph: Graph


class RevisionPublic(BaseModel):
    """Seed 004's inference revision: a snapshot of the workload's configuration."""

    model_config = ConfigDict(extra="allow")

    type: str
    name: str
    id: str
    workloadId: str
    revision: int
    projectId: str
    createdAt: str
    deletedAt: str | None
    phase: str
    phaseMessage: str
    phaseUpdatedAt: str
    spec: dict[str, Any]
    rollbackOf: str | None = None


class RevisionList(BaseModel):
    count: int
    data: list[RevisionPublic]
    revisions: list[RevisionPublic]
    has_more: bool


class RevisionCount(BaseModel):
    count: int
