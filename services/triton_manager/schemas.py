"""API models of the registry and the fleet: what routes take (`…Create`, `…Update`, input
forbids unknown fields) and answer (`…Public`). Never events; the public shapes are built from
read-model documents (`server_public`, `model_public`).

Where seed 002's "Response" and "Response Now" differ, the answer carries both field sets
(`ip` and `host`, `create_at` and `created_at`).
"""

from __future__ import annotations

from typing import Annotated, Any

from mlplane.names import NameOrEmpty
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from .events import served_name


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ServerCreate(Input):
    name: NameOrEmpty = ""
    host: Annotated[
        str, Field(min_length=1, max_length=255, validation_alias=AliasChoices("host", "ip"))
    ]
    port: Annotated[int, Field(ge=1, le=65535)]
    gpus: Annotated[int, Field(ge=0, le=1024)] = 0
    kind: Annotated[str, Field(pattern="^(triton|mlserver)$")] = "triton"
    repository: Annotated[
        str, Field(max_length=1000, validation_alias=AliasChoices("repository", "path"))
    ] = ""
    labels: dict[str, str] = {}


class ServerUpdate(Input):
    name: NameOrEmpty | None = None
    host: Annotated[
        str | None, Field(min_length=1, max_length=255, validation_alias=AliasChoices("host", "ip"))
    ] = None
    port: Annotated[int | None, Field(ge=1, le=65535)] = None
    gpus: Annotated[int | None, Field(ge=0, le=1024)] = None
    repository: Annotated[
        str | None, Field(max_length=1000, validation_alias=AliasChoices("repository", "path"))
    ] = None
    labels: dict[str, str] | None = None


class Placement(Input):
    triton_id: Annotated[
        str, Field(min_length=1, validation_alias=AliasChoices("triton_id", "server_id"))
    ]
    version: Annotated[int | None, Field(ge=1)] = None


class ModelUpdate(Input):
    name: Annotated[
        str | None, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    ] = None
    description: Annotated[str | None, Field(max_length=4000)] = None


# ---------------------------------------------------------------- servers


class ServerPublic(BaseModel):
    id: str
    name: str
    host: str
    ip: str
    port: str
    gpus: int
    state: str
    """ready, live or unavailable, as the fleet worker last saw it."""
    create_at: str
    kind: str
    managed: bool
    labels: dict[str, str]
    path: str
    live: bool
    ready: bool
    error: str
    models: list[str]
    """The served names the server last reported ready."""
    drift: dict[str, list[str]]
    updated_at: str


class ServerWritten(ServerPublic):
    status: str = "ok"


class ServerDetail(ServerPublic):
    desired: dict[str, dict[str, Any]]
    observed: dict[str, Any]
    data: ServerPublic


class ServerList(BaseModel):
    tritons: list[ServerPublic]
    count: int


def server_public(doc: dict[str, Any]) -> ServerPublic:
    state = "ready" if doc["ready"] else ("live" if doc["live"] else "unavailable")
    return ServerPublic(
        id=doc["id"],
        name=doc["name"],
        host=doc["host"],
        ip=doc["host"],
        port=str(doc["port"]),
        gpus=doc["gpus"],
        state=state,
        create_at=doc["created_at"],
        kind=doc["kind"],
        managed=doc["managed"],
        labels=doc["labels"],
        path=doc["repository"],
        live=doc["live"],
        ready=doc["ready"],
        error=doc["error"],
        models=doc["loaded"],
        drift=doc["drift"],
        updated_at=doc["updated_at"],
    )


# ---------------------------------------------------------------- models


class ModelPlace(BaseModel):
    id: str
    ip: str
    port: str
    version: int


class ModelVersionPublic(BaseModel):
    version: str
    state: str
    """READY when some server reports it loaded, else UNAVAILABLE."""
    format: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    platform: str
    files: dict[str, str]
    size: int
    key: str
    checkpoint_id: str | None
    created_at: str
    inference_count: int | None = None
    execution_count: int | None = None
    last_inference: str | None = None


class ModelPublic(BaseModel):
    id: str
    name: str
    description: str
    space_id: str
    latest_version: str | None
    versions: list[ModelVersionPublic]
    tritons: list[ModelPlace]
    path: str
    state: str
    inference_count: int | None = None
    last_inference: str | None = None
    create_at: str
    created_at: str
    updated_at: str


class ModelWritten(ModelPublic):
    status: str = "ok"


class VersionWritten(ModelWritten):
    version: str | None


class ServerModelConfig(BaseModel):
    """What a server holding the model serves of it (from the registry's records)."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]


class ModelDetail(ModelPublic):
    config: dict[str, ServerModelConfig]
    """Per server (`host:port`) holding a version of the model."""


class ModelList(BaseModel):
    models: list[ModelPublic]
    count: int


class VersionList(BaseModel):
    versions: list[ModelVersionPublic]


class Removed(BaseModel):
    status: str = "ok"
    id: str


class VersionRemoved(BaseModel):
    status: str = "ok"
    version: str


class PlacementOutcome(BaseModel):
    status: str
    """ok (loaded), pending (still loading when the wait ended) or failed."""
    served_name: str
    version: int
    error: str | None = None
    held_by: list[str] | None = None


Holding = dict[str, list[dict[str, Any]]]


def holding_of(servers: list[dict[str, Any]]) -> Holding:
    """Served name → the servers (documents of the servers projection) reporting it loaded."""
    found: Holding = {}
    for server in servers:
        for name in server["loaded"]:
            found.setdefault(name, []).append(server)
    return found


def model_public(state: Any, held: Holding) -> ModelPublic:
    """A model (its state, or a document of the models projection) and where it is loaded."""
    doc = state if isinstance(state, dict) else state.to_doc()
    versions, places = [], []
    for key in sorted(doc["versions"], key=int):
        record, config = doc["versions"][key], doc["versions"][key]["config"]
        on = held.get(served_name(doc["id"], int(key)), [])
        places += [
            ModelPlace(id=s["id"], ip=s["host"], port=str(s["port"]), version=int(key)) for s in on
        ]
        versions.append(
            ModelVersionPublic(
                version=key,
                state="READY" if on else "UNAVAILABLE",
                format=record["format"],
                inputs=config.get("inputs", []),
                outputs=config.get("outputs", []),
                platform=config.get("platform") or config.get("backend", ""),
                files=record["files"],
                size=record["size"],
                key=record["key"],
                checkpoint_id=record.get("checkpoint_id"),
                created_at=record["created_at"],
            )
        )
    latest = max((int(v) for v in doc["versions"]), default=None)
    return ModelPublic(
        id=doc["id"],
        name=doc["name"],
        description=doc["description"],
        space_id=doc["space_id"],
        latest_version=str(latest) if latest else None,
        versions=versions,
        tritons=places,
        path=f"models/{doc['id']}",
        state="READY" if places else "UNAVAILABLE",
        create_at=doc["created_at"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
    )


class InferenceModel(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    description: str = ""
    space_id: str
    latest_version: int | None = None
    created_at: str
    updated_at: str
