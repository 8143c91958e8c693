"""Routes of seed 002's `/api/tritons` (the inference-server fleet, administrators only) and
`/api/models` (the model registry), and seed 003's `models` tag (`/api/v1/models`).

Where seed 002's "Response" and "Response Now" differ the answer carries both field sets. Models
belong to a space: a member acts in theirs (X-Space-ID, `space_id`, or their only space), an
administrator naming no space sees all of them; placing a model on a server (load, unload) is
an administrator's act. A member changes the registry only with its permission (`models:create`,
`models:update` to rename or add versions, `models:delete` for models and versions). Every check
is a dependency, so a caller without the right is refused before the body is read.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from mlplane.deps import AdminDep, ContextDep, KernelDep, PrincipalDep, admin_only, permitted
from mlplane.errors import Invalid, NotFound
from mlplane.events import new_id
from mlplane.http import PROBLEM_RESPONSES, ListPage, PageParams, list_page
from mlplane.names import NameOrEmpty
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from . import commands as c
from .handlers import MODELS, SERVERS, ModelState, served_name, server_not_found
from .projections import DESIRED, OBSERVED
from .projections import MODELS as MODEL_DOCS
from .projections import SERVERS as SERVER_DOCS
from .repository import invalid
from .servers import ServerError, connect
from .views import (
    add_version,
    model_in,
    optional_space,
    receive_files,
    registry_space,
    service,
    space_of,
    workspace,
    write,
)
from .views import (
    create_model as create_registered,
)

tritons = APIRouter(
    prefix="/api/tritons",
    tags=["tritons"],
    responses=PROBLEM_RESPONSES,
    dependencies=[Depends(admin_only)],
)
models = APIRouter(prefix="/api/models", tags=["models (registry)"], responses=PROBLEM_RESPONSES)
inference_models = APIRouter(prefix="/api/v1/models", tags=["models"], responses=PROBLEM_RESPONSES)

ADMIN_HOLDER = "admin"

# the space a registry write acts in, once the caller holds the permission there
Registering = Annotated[str, permitted("models:create")]
Changing = Annotated[str | None, registry_space("models:update")]
Deleting = Annotated[str | None, registry_space("models:delete")]


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


def server_public(doc: dict[str, Any]) -> dict[str, Any]:
    state = "ready" if doc["ready"] else ("live" if doc["live"] else "unavailable")
    return {
        "id": doc["id"],
        "name": doc["name"],
        "host": doc["host"],
        "ip": doc["host"],
        "port": str(doc["port"]),
        "gpus": doc["gpus"],
        "state": state,
        "create_at": doc["created_at"],
        "kind": doc["kind"],
        "managed": doc["managed"],
        "labels": doc["labels"],
        "path": doc["repository"],
        "live": doc["live"],
        "ready": doc["ready"],
        "error": doc["error"],
        "models": doc["loaded"],
        "drift": doc["drift"],
        "updated_at": doc["updated_at"],
    }


async def server_doc(kernel, server_id: str) -> dict[str, Any]:
    doc = await kernel.docs.get(SERVER_DOCS, server_id)
    if doc is None:
        await kernel.catch_up(SERVER_DOCS)
        doc = await kernel.docs.get(SERVER_DOCS, server_id)
    if doc is None:
        raise server_not_found(server_id)
    return doc


@tritons.get("")
async def list_tritons(kernel: KernelDep) -> dict[str, Any]:
    """List the inference servers, their health and loaded models."""
    found = await kernel.docs.query(SERVER_DOCS, {}, sort="created_at", limit=1000)
    return {"tritons": [server_public(d) for d in found.data], "count": found.count}


@tritons.post("", status_code=status.HTTP_201_CREATED)
async def create_triton(body: ServerCreate, kernel: KernelDep, ctx: ContextDep) -> dict[str, Any]:
    """Register an inference server (Triton or any Open Inference Protocol v2 server)."""
    server_id = new_id()
    command = c.RegisterServer(
        server_id=server_id,
        name=body.name or f"{body.host}:{body.port}",
        **body.model_dump(exclude={"name"}),
    )
    await write(kernel, SERVERS, server_id, command, ctx)
    _wake(kernel)
    return {**server_public(await server_doc(kernel, server_id)), "status": "ok"}


@tritons.get("/{identity}")
async def get_triton(identity: str, kernel: KernelDep) -> dict[str, Any]:
    """Get a server: its registration, desired and observed state, and the drift between them."""
    public = server_public(await server_doc(kernel, identity))
    desired = await kernel.docs.get(DESIRED, identity) or {"placements": {}}
    observed = await kernel.docs.get(OBSERVED, identity) or {}
    extra = {
        "desired": desired["placements"],
        "observed": {k: v for k, v in observed.items() if k not in ("_state", "_key", "_pos")},
    }
    return {**public, **extra, "data": public}


@tritons.patch("/{identity}")
async def update_triton(
    identity: str, body: ServerUpdate, kernel: KernelDep, ctx: ContextDep
) -> dict[str, Any]:
    """Change a server's name, address, GPUs, repository or labels."""
    await server_doc(kernel, identity)
    await write(
        kernel, SERVERS, identity, c.UpdateServer(server_id=identity, **body.model_dump()), ctx
    )
    _wake(kernel)
    return {**server_public(await server_doc(kernel, identity)), "status": "ok"}


@tritons.delete("/{identity}")
async def delete_triton(identity: str, kernel: KernelDep, ctx: ContextDep) -> dict[str, str]:
    """Forget a server; endpoints served there are placed elsewhere."""
    await server_doc(kernel, identity)
    await write(kernel, SERVERS, identity, c.DeleteServer(server_id=identity), ctx)
    _wake(kernel)
    return {"status": "ok", "id": identity}


@tritons.post("/{identity}/reconcile")
async def reconcile_triton(identity: str, kernel: KernelDep) -> dict[str, Any]:
    """Read the server now and reconcile its drift: load what is missing, unload what is not held."""
    await server_doc(kernel, identity)
    worker = service(kernel).worker
    if worker is not None:
        await worker.step()
    await kernel.catch_up()
    return {**server_public(await server_doc(kernel, identity)), "status": "ok"}


def _wake(kernel) -> None:
    worker = service(kernel).worker
    if worker is not None:
        worker.wake()


# ---------------------------------------------------------------- models


async def model_public(kernel, state: ModelState | dict[str, Any]) -> dict[str, Any]:
    doc = state.to_doc() if isinstance(state, ModelState) else state
    servers = (await kernel.docs.query(SERVER_DOCS, {}, limit=1000)).data
    versions = []
    places: list[dict[str, Any]] = []
    for key in sorted(doc["versions"], key=int):
        record = doc["versions"][key]
        served = served_name(doc["id"], int(key))
        on = [s for s in servers if served in s["loaded"]]
        places += [
            {"id": s["id"], "ip": s["host"], "port": str(s["port"]), "version": int(key)}
            for s in on
        ]
        versions.append(
            {
                "version": key,
                "state": "READY" if on else "UNAVAILABLE",
                "format": record["format"],
                "inputs": record["config"].get("inputs", []),
                "outputs": record["config"].get("outputs", []),
                "platform": record["config"].get("platform") or record["config"].get("backend", ""),
                "files": record["files"],
                "size": record["size"],
                "key": record["key"],
                "checkpoint_id": record.get("checkpoint_id"),
                "created_at": record["created_at"],
                "inference_count": None,
                "execution_count": None,
                "last_inference": None,
            }
        )
    latest = max((int(v) for v in doc["versions"]), default=None)
    return {
        "id": doc["id"],
        "name": doc["name"],
        "description": doc["description"],
        "space_id": doc["space_id"],
        "latest_version": str(latest) if latest else None,
        "versions": versions,
        "tritons": places,
        "path": f"models/{doc['id']}",
        "state": "READY" if places else "UNAVAILABLE",
        "inference_count": None,
        "last_inference": None,
        "create_at": doc["created_at"],
        "created_at": doc["created_at"],
        "updated_at": doc["updated_at"],
    }


@models.get("")
async def list_models(
    request: Request, kernel: KernelDep, principal: PrincipalDep
) -> dict[str, Any]:
    """List the registered models (of the caller's space; every space for an administrator)."""
    space = optional_space(request, principal)
    found = await kernel.docs.query(
        MODEL_DOCS,
        {"space_id": space} if space else {},
        sort="created_at",
        descending=True,
        limit=1000,
    )
    return {"models": [await model_public(kernel, d) for d in found.data], "count": found.count}


@models.post("", status_code=status.HTTP_201_CREATED)
async def create_model(
    request: Request, kernel: KernelDep, space: Registering, ctx: ContextDep
) -> dict[str, Any]:
    """Register a model from its files (multipart: `name`, `description`, `files[]`)."""
    serving = service(kernel)
    with workspace() as tmp:
        uploads, fields = await receive_files(request, serving.settings, Path(tmp))
        name = fields.get("name", "").strip()
        if not name:
            raise invalid("a model needs a 'name' form field", "name")
        if len(name) > 100 or not all(ch.isalnum() or ch in "_.-" for ch in name):
            raise invalid("a model name is 1-100 letters, digits, '_', '.' or '-'", "name")
        state = await create_registered(
            serving, ctx, space, name, fields.get("description", ""), uploads, Path(tmp)
        )
    return {**await model_public(kernel, state), "status": "ok"}


@models.get("/{identity}")
async def get_model(
    identity: str,
    request: Request,
    kernel: KernelDep,
    principal: PrincipalDep,
    triton_id: str | None = None,
) -> dict[str, Any]:
    """Get a model, its versions and, per server holding it, the server's own metadata."""
    state = await model_in(kernel, identity, optional_space(request, principal))
    public = await model_public(kernel, state)
    config: dict[str, Any] = {}
    servers = {p["id"] for p in public["tritons"] if triton_id in (None, p["id"])}
    for server_id in sorted(servers):
        doc = await kernel.docs.get(SERVER_DOCS, server_id)
        if doc is None:
            continue
        client = connect(doc["kind"], doc["host"], doc["port"], doc["repository"])
        try:
            metas = [
                await client.metadata(served_name(identity, int(v)))
                for v in state.versions
                if served_name(identity, int(v)) in doc["loaded"]
            ]
        except ServerError as exc:
            metas = [{"error": str(exc)}]
        finally:
            await client.close()
        config[f"{doc['host']}:{doc['port']}"] = {
            "name": state.name,
            "versions": sorted({v for m in metas for v in m.get("versions", [])}),
            "platform": next((m.get("platform") for m in metas if m.get("platform")), ""),
            "inputs": metas[-1].get("inputs", []) if metas else [],
            "outputs": metas[-1].get("outputs", []) if metas else [],
        }
    return {**public, "config": config}


@models.patch("/{identity}")
async def update_model(
    identity: str, request: Request, kernel: KernelDep, space: Changing, ctx: ContextDep
) -> dict[str, Any]:
    """Rename or describe a model (JSON), or upload its next version (multipart `Files[]`)."""
    state = await model_in(kernel, identity, space)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await _new_version(identity, request, kernel, ctx, state)
    try:
        body = ModelUpdate.model_validate(await request.json())
    except ValueError as exc:
        raise Invalid(
            f"send a JSON object with 'name' or 'description': {exc}"[:500], field="body"
        ) from None
    state = await write(
        kernel,
        MODELS,
        identity,
        c.UpdateModel(model_id=identity, **body.model_dump()),
        ctx,
        state.space_id,
    )
    return {**await model_public(kernel, state), "status": "ok"}


@models.delete("/{identity}")
async def delete_model(
    identity: str, kernel: KernelDep, space: Deleting, ctx: ContextDep
) -> dict[str, str]:
    """Delete a model; its files stay in the artifact store for the versions' history."""
    state = await model_in(kernel, identity, space)
    await write(kernel, MODELS, identity, c.DeleteModel(model_id=identity), ctx, state.space_id)
    return {"status": "ok", "id": identity}


@models.post("/{identity}/load")
async def load_model(
    identity: str,
    body: Placement,
    request: Request,
    kernel: KernelDep,
    principal: AdminDep,
    ctx: ContextDep,
) -> dict[str, Any]:
    """Load a version (default the latest) of the model on a server; the answer waits for it."""
    state = await model_in(kernel, identity, optional_space(request, principal))
    version = _version(state, body.version)
    await server_doc(kernel, body.triton_id)
    name = served_name(identity, version)
    await write(
        kernel,
        SERVERS,
        body.triton_id,
        c.RequestPlacement(
            server_id=body.triton_id,
            served_name=name,
            model_id=identity,
            version=version,
            space_id=state.space_id,
            holder=ADMIN_HOLDER,
        ),
        ctx,
    )
    placement = await _settle(kernel, body.triton_id, name)
    if placement.get("status") == "failed":
        return {
            "status": "failed",
            "error": placement.get("error"),
            "served_name": name,
            "version": version,
        }
    return {
        "status": "ok" if placement.get("status") == "loaded" else "pending",
        "served_name": name,
        "version": version,
    }


@models.post("/{identity}/unload")
async def unload_model(
    identity: str,
    body: Placement,
    request: Request,
    kernel: KernelDep,
    principal: AdminDep,
    ctx: ContextDep,
) -> dict[str, Any]:
    """Release the administrator's load of a version; it is unloaded once no endpoint holds it."""
    state = await model_in(kernel, identity, optional_space(request, principal))
    version = _version(state, body.version)
    await server_doc(kernel, body.triton_id)
    name = served_name(identity, version)
    await write(
        kernel,
        SERVERS,
        body.triton_id,
        c.ReleasePlacement(server_id=body.triton_id, served_name=name, holder=ADMIN_HOLDER),
        ctx,
    )
    placement = await _settle(kernel, body.triton_id, name)
    return {
        "status": "ok",
        "served_name": name,
        "version": version,
        "held_by": placement.get("holders", []),
    }


def _version(state: ModelState, version: int | None) -> int:
    chosen = version or state.latest_version
    if chosen is None or str(chosen) not in state.versions:
        raise NotFound(f"model {state.id!r} has no version {chosen}")
    return chosen


async def _settle(kernel, server_id: str, name: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """Step the fleet until the placement is loaded, failed or gone (or the time is up)."""
    worker = service(kernel).worker
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        if worker is not None:
            await worker.step()
        await kernel.catch_up(SERVER_DOCS)
        doc = await kernel.docs.get(SERVER_DOCS, server_id) or {"placements": {}, "loaded": []}
        placement = doc["placements"].get(name, {})
        held = bool(placement.get("holders"))
        if (held and placement.get("status") in ("loaded", "failed")) or (
            not held and name not in doc["loaded"]
        ):
            return placement
        if worker is None or asyncio.get_running_loop().time() > deadline:
            return placement
        await asyncio.sleep(0.1)


@models.get("/{identity}/versions")
async def list_versions(
    identity: str, request: Request, kernel: KernelDep, principal: PrincipalDep
) -> dict[str, Any]:
    """List a model's versions."""
    state = await model_in(kernel, identity, optional_space(request, principal))
    return {"versions": (await model_public(kernel, state))["versions"]}


@models.post("/{identity}/versions", status_code=status.HTTP_201_CREATED)
async def create_version(
    identity: str, request: Request, kernel: KernelDep, space: Changing, ctx: ContextDep
) -> dict[str, Any]:
    """Upload the model's next version (multipart `Files[]`)."""
    state = await model_in(kernel, identity, space)
    return await _new_version(identity, request, kernel, ctx, state)


async def _new_version(
    identity: str, request: Request, kernel, ctx, state: ModelState
) -> dict[str, Any]:
    serving = service(kernel)
    with workspace() as tmp:
        uploads, _ = await receive_files(request, serving.settings, Path(tmp))
        state = await add_version(serving, ctx, state, uploads, Path(tmp))
    public = await model_public(kernel, state)
    return {**public, "status": "ok", "version": public["latest_version"]}


@models.delete("/{identity}/versions")
async def delete_version(
    identity: str,
    kernel: KernelDep,
    space: Deleting,
    ctx: ContextDep,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """Delete a version (`?version=`, default the latest)."""
    state = await model_in(kernel, identity, space)
    chosen = _version(state, version)
    await write(
        kernel,
        MODELS,
        identity,
        c.DeleteVersion(model_id=identity, version=chosen),
        ctx,
        state.space_id,
    )
    return {"status": "ok", "version": str(chosen)}


# ---------------------------------------------------------------- seed 003


class InferenceModel(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    description: str = ""
    space_id: str
    latest_version: int | None = None
    created_at: str
    updated_at: str


@inference_models.get("")
async def list_inference_models(
    request: Request, kernel: KernelDep, principal: PrincipalDep, page: PageParams
) -> ListPage[InferenceModel]:
    """List the inference models of the caller's space (limit, after)."""
    space = space_of(request, principal)
    return await list_page(kernel.docs, MODEL_DOCS, InferenceModel, page, {"space_id": space})
