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
from mlplane.deps import (
    SPACE_PARAMETERS,
    AdminDep,
    ContextDep,
    KernelDep,
    PrincipalDep,
    admin_only,
    permitted,
)
from mlplane.errors import Invalid, NotFound
from mlplane.events import new_id
from mlplane.history import (
    AsOfParams,
    HistoryAfter,
    HistoryLimit,
    HistoryPage,
    document_at,
    entity_history,
)
from mlplane.http import PROBLEM_RESPONSES, ListPage, PageParams, list_page

from . import commands as c
from .bootstrap import MODEL_KIND, SERVER_KIND
from .handlers import ModelState, served_name, server_not_found
from .projections import DESIRED, OBSERVED
from .projections import MODELS as MODEL_DOCS
from .projections import SERVERS as SERVER_DOCS
from .repository import invalid
from .schemas import (
    Holding,
    InferenceModel,
    ModelDetail,
    ModelList,
    ModelPublic,
    ModelUpdate,
    ModelWritten,
    Placement,
    PlacementOutcome,
    Removed,
    ServerCreate,
    ServerDetail,
    ServerList,
    ServerModelConfig,
    ServerUpdate,
    ServerWritten,
    VersionList,
    VersionRemoved,
    VersionWritten,
    holding_of,
    model_public,
    server_public,
)
from .services import (
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
from .services import (
    create_model as create_registered,
)

__all__ = ["ModelUpdate", "Placement", "ServerCreate", "ServerUpdate"]

tritons = APIRouter(
    prefix="/api/tritons",
    tags=["tritons"],
    responses=PROBLEM_RESPONSES,
    dependencies=[Depends(admin_only)],
)
models = APIRouter(
    prefix="/api/models",
    tags=["models (registry)"],
    responses=PROBLEM_RESPONSES,
    dependencies=[SPACE_PARAMETERS],
)
inference_models = APIRouter(
    prefix="/api/v1/models",
    tags=["models"],
    responses=PROBLEM_RESPONSES,
    dependencies=[SPACE_PARAMETERS],
)

ADMIN_HOLDER = "admin"

# the space a registry write acts in, once the caller holds the permission there
Registering = Annotated[str, permitted("models:create")]
Changing = Annotated[str | None, registry_space("models:update")]
Deleting = Annotated[str | None, registry_space("models:delete")]


# ---------------------------------------------------------------- servers


async def server_doc(kernel, server_id: str) -> dict[str, Any]:
    doc = await kernel.doc(SERVER_DOCS, server_id, f"server:{server_id}")
    if doc is None:
        raise server_not_found(server_id)
    return doc


@tritons.get("")
async def list_tritons(kernel: KernelDep) -> ServerList:
    """List the inference servers, their health and loaded models."""
    found = await kernel.docs.query(SERVER_DOCS, {}, sort="created_at", limit=1000)
    return ServerList(tritons=[server_public(d) for d in found.data], count=found.count)


@tritons.post("", status_code=status.HTTP_201_CREATED)
async def create_triton(body: ServerCreate, kernel: KernelDep, ctx: ContextDep) -> ServerWritten:
    """Register an inference server (Triton or any Open Inference Protocol v2 server)."""
    server_id = new_id()
    command = c.RegisterServer(
        server_id=server_id,
        name=body.name or f"{body.host}:{body.port}",
        **body.model_dump(exclude={"name"}),
    )
    await write(kernel, command, ctx)
    _wake(kernel)
    return ServerWritten(**server_public(await server_doc(kernel, server_id)).model_dump())


@tritons.get("/{identity}")
async def get_triton(identity: str, kernel: KernelDep, at: AsOfParams) -> ServerDetail:
    """Get a server: its registration, desired and observed state, and the drift between them
    (as it is, or as it was: `as_of`, `version`)."""
    doc = await server_doc(kernel, identity) if at.now else None
    if doc is None:
        doc = await document_at(kernel.log, kernel.entities[SERVER_KIND], identity, at)
        public = server_public(doc)
        return ServerDetail(**public.model_dump(), desired={}, observed={}, data=public)
    public = server_public(doc)
    desired = await kernel.docs.get(DESIRED, identity) or {"placements": {}}
    observed = await kernel.docs.get(OBSERVED, identity) or {}
    return ServerDetail(
        **public.model_dump(),
        desired=desired["placements"],
        observed={k: v for k, v in observed.items() if k not in ("_state", "_key", "_pos")},
        data=public,
    )


@tritons.get("/{identity}/history")
async def triton_history(
    identity: str, kernel: KernelDep, limit: HistoryLimit = 20, after: HistoryAfter = 0
) -> HistoryPage:
    """A server's changes, oldest first: registration, health, placements, loads and unloads."""
    return await entity_history(
        kernel.log, kernel.entities[SERVER_KIND], identity, limit=limit, after=after
    )


@tritons.patch("/{identity}")
async def update_triton(
    identity: str, body: ServerUpdate, kernel: KernelDep, ctx: ContextDep
) -> ServerWritten:
    """Change a server's name, address, GPUs, repository or labels."""
    await server_doc(kernel, identity)
    await write(kernel, c.UpdateServer(server_id=identity, **body.model_dump()), ctx)
    _wake(kernel)
    return ServerWritten(**server_public(await server_doc(kernel, identity)).model_dump())


@tritons.delete("/{identity}")
async def delete_triton(identity: str, kernel: KernelDep, ctx: ContextDep) -> Removed:
    """Forget a server; endpoints served there are placed elsewhere."""
    await server_doc(kernel, identity)
    await write(kernel, c.DeleteServer(server_id=identity), ctx)
    _wake(kernel)
    return Removed(id=identity)


@tritons.post("/{identity}/reconcile")
async def reconcile_triton(identity: str, kernel: KernelDep) -> ServerWritten:
    """Read the server now and reconcile its drift: load what is missing, unload what is not held."""
    await server_doc(kernel, identity)
    worker = service(kernel).worker
    if worker is not None:
        await worker.step()
    await kernel.catch_up()
    return ServerWritten(**server_public(await server_doc(kernel, identity)).model_dump())


def _wake(kernel) -> None:
    worker = service(kernel).worker
    if worker is not None:
        worker.wake()


# ---------------------------------------------------------------- models


async def holding(kernel) -> Holding:
    """Served name → the servers reporting it loaded: one read of the servers projection (kept
    by the fleet worker), shared by every model of an answer."""
    servers = (await kernel.docs.query(SERVER_DOCS, {}, limit=10_000)).data
    return holding_of(servers)


async def answer(kernel, state: ModelState, cls: type[ModelPublic] = ModelWritten, **extra: Any):
    return cls(**model_public(state, await holding(kernel)).model_dump(), **extra)


@models.get("")
async def list_models(request: Request, kernel: KernelDep, principal: PrincipalDep) -> ModelList:
    """List the registered models (of the caller's space; every space for an administrator)."""
    space = optional_space(request, principal)
    found = await kernel.docs.query(
        MODEL_DOCS,
        {"space_id": space} if space else {},
        sort="created_at",
        descending=True,
        limit=1000,
    )
    held = await holding(kernel)
    return ModelList(models=[model_public(d, held) for d in found.data], count=found.count)


@models.post("", status_code=status.HTTP_201_CREATED)
async def create_model(
    request: Request, kernel: KernelDep, space: Registering, ctx: ContextDep
) -> ModelWritten:
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
    return await answer(kernel, state)


@models.get("/{identity}")
async def get_model(
    identity: str,
    request: Request,
    kernel: KernelDep,
    principal: PrincipalDep,
    at: AsOfParams,
    triton_id: str | None = None,
) -> ModelDetail:
    """Get a model, its versions and, per server holding it, what that server serves of it
    (as it is, or as it was: `as_of`, `version`)."""
    state = await model_in(kernel, identity, optional_space(request, principal))
    held = await holding(kernel)
    doc: ModelState | dict[str, Any] = state
    if not at.now:
        doc = await document_at(kernel.log, kernel.entities[MODEL_KIND], identity, at)
    public = model_public(doc, held)
    config: dict[str, ServerModelConfig] = {}
    for place in public.tritons:
        if triton_id not in (None, place.id):
            continue
        address = f"{place.ip}:{place.port}"
        record = state.versions.get(str(place.version), {}).get("config", {})
        seen = config.get(address)
        config[address] = ServerModelConfig(
            name=state.name,
            versions=sorted({*(seen.versions if seen else []), str(place.version)}, key=int),
            platform=record.get("platform") or record.get("backend", ""),
            inputs=record.get("inputs", []),
            outputs=record.get("outputs", []),
        )
    return ModelDetail(**public.model_dump(), config=config)


@models.get("/{identity}/history")
async def model_history(
    identity: str,
    request: Request,
    kernel: KernelDep,
    principal: PrincipalDep,
    limit: HistoryLimit = 20,
    after: HistoryAfter = 0,
) -> HistoryPage:
    """A model's changes, oldest first: registration, renames, versions added and deleted."""
    await model_in(kernel, identity, optional_space(request, principal))
    return await entity_history(
        kernel.log, kernel.entities[MODEL_KIND], identity, limit=limit, after=after
    )


@models.patch("/{identity}")
async def update_model(
    identity: str, request: Request, kernel: KernelDep, space: Changing, ctx: ContextDep
) -> VersionWritten | ModelWritten:
    """Rename or describe a model (JSON), or upload its next version (multipart `Files[]`)."""
    state = await model_in(kernel, identity, space)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await _new_version(request, kernel, ctx, state)
    try:
        body = ModelUpdate.model_validate(await request.json())
    except ValueError as exc:
        raise Invalid(
            f"send a JSON object with 'name' or 'description': {exc}"[:500], field="body"
        ) from None
    command = c.UpdateModel(model_id=identity, **body.model_dump())
    state = await write(kernel, command, ctx, state.space_id)
    return await answer(kernel, state)


@models.delete("/{identity}")
async def delete_model(
    identity: str, kernel: KernelDep, space: Deleting, ctx: ContextDep
) -> Removed:
    """Delete a model; its files stay in the artifact store for the versions' history."""
    state = await model_in(kernel, identity, space)
    await write(kernel, c.DeleteModel(model_id=identity), ctx, state.space_id)
    return Removed(id=identity)


@models.post("/{identity}/load")
async def load_model(
    identity: str,
    body: Placement,
    request: Request,
    kernel: KernelDep,
    principal: AdminDep,
    ctx: ContextDep,
) -> PlacementOutcome:
    """Load a version (default the latest) of the model on a server; the answer waits for it."""
    state = await model_in(kernel, identity, optional_space(request, principal))
    version = _version(state, body.version)
    await server_doc(kernel, body.triton_id)
    name = served_name(identity, version)
    command = c.RequestPlacement(
        server_id=body.triton_id,
        served_name=name,
        model_id=identity,
        version=version,
        space_id=state.space_id,
        holder=ADMIN_HOLDER,
    )
    await write(kernel, command, ctx)
    placement = await _settle(kernel, body.triton_id, name)
    if placement.get("status") == "failed":
        return PlacementOutcome(
            status="failed", error=placement.get("error"), served_name=name, version=version
        )
    done = "ok" if placement.get("status") == "loaded" else "pending"
    return PlacementOutcome(status=done, served_name=name, version=version)


@models.post("/{identity}/unload")
async def unload_model(
    identity: str,
    body: Placement,
    request: Request,
    kernel: KernelDep,
    principal: AdminDep,
    ctx: ContextDep,
) -> PlacementOutcome:
    """Release the administrator's load of a version; it is unloaded once no endpoint holds it."""
    state = await model_in(kernel, identity, optional_space(request, principal))
    version = _version(state, body.version)
    await server_doc(kernel, body.triton_id)
    name = served_name(identity, version)
    command = c.ReleasePlacement(server_id=body.triton_id, served_name=name, holder=ADMIN_HOLDER)
    await write(kernel, command, ctx)
    placement = await _settle(kernel, body.triton_id, name)
    return PlacementOutcome(
        status="ok", served_name=name, version=version, held_by=placement.get("holders", [])
    )


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
) -> VersionList:
    """List a model's versions."""
    state = await model_in(kernel, identity, optional_space(request, principal))
    return VersionList(versions=model_public(state, await holding(kernel)).versions)


@models.post("/{identity}/versions", status_code=status.HTTP_201_CREATED)
async def create_version(
    identity: str, request: Request, kernel: KernelDep, space: Changing, ctx: ContextDep
) -> VersionWritten:
    """Upload the model's next version (multipart `Files[]`)."""
    state = await model_in(kernel, identity, space)
    return await _new_version(request, kernel, ctx, state)


async def _new_version(request: Request, kernel, ctx, state: ModelState) -> VersionWritten:
    serving = service(kernel)
    with workspace() as tmp:
        uploads, _ = await receive_files(request, serving.settings, Path(tmp))
        state = await add_version(serving, ctx, state, uploads, Path(tmp))
    public = model_public(state, await holding(kernel))
    return VersionWritten(**public.model_dump(), version=public.latest_version)


@models.delete("/{identity}/versions")
async def delete_version(
    identity: str,
    kernel: KernelDep,
    space: Deleting,
    ctx: ContextDep,
    version: Annotated[int | None, Query(ge=1, le=2**53)] = None,
) -> VersionRemoved:
    """Delete a version (`?version=`, default the latest)."""
    state = await model_in(kernel, identity, space)
    chosen = _version(state, version)
    await write(kernel, c.DeleteVersion(model_id=identity, version=chosen), ctx, state.space_id)
    return VersionRemoved(version=str(chosen))


# ---------------------------------------------------------------- seed 003


@inference_models.get("")
async def list_inference_models(
    request: Request, kernel: KernelDep, principal: PrincipalDep, page: PageParams
) -> ListPage[InferenceModel]:
    """List the inference models of the caller's space (limit, after)."""
    space = space_of(request, principal)
    return await list_page(kernel.docs, MODEL_DOCS, InferenceModel, page, {"space_id": space})
