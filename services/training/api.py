"""Routes of seed 003's `trainings` and `checkpoints` tags, and bundles, under /api/v1; and
what the training routes share: the acting space, scoped reads, the public shape of a training,
and reads of an entity as it was (`as_of`, `version`) and of its history.

A call acts in the space named by its X-Space-ID header (or `space_id` parameter, or the
caller's only space); an id from another space answers 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from mlplane.auth import Principal
from mlplane.deps import (
    SPACE_PARAMETERS,
    ContextDep,
    KernelDep,
    PrincipalDep,
    acting_space,
    in_space,
    named_space,
    permitted,
)
from mlplane.errors import NotFound
from mlplane.history import (
    AsOf,
    AsOfParams,
    HistoryAfter,
    HistoryLimit,
    HistoryPage,
    document_at,
    entity_history,
)
from mlplane.http import PROBLEM_RESPONSES, ListPage, PageParams, list_page
from mlplane.kernel import Kernel

from . import commands as c
from . import schemas as m
from .handlers import TRAININGS, job_not_found
from .projections import BUNDLES as BUNDLE_DOCS
from .projections import CHECKPOINTS
from .projections import DATA_MODELS as DATA_MODEL_DOCS
from .projections import TRAININGS as TRAINING_DOCS
from .services import create_training, stop_training, training_service

TRAINING, BUNDLE, DATA_MODEL, CONNECTOR, CLUSTER = (
    "training",
    "bundle",
    "data-model",
    "connector",
    "cluster",
)
"""The names of the kinds of entity the training service keeps (`bootstrap._entities`)."""

trainings = APIRouter(
    prefix="/api/v1/trainings",
    tags=["trainings"],
    responses=PROBLEM_RESPONSES,
    dependencies=[SPACE_PARAMETERS],
)
checkpoints = APIRouter(
    prefix="/api/v1/checkpoints",
    tags=["checkpoints"],
    responses=PROBLEM_RESPONSES,
    dependencies=[SPACE_PARAMETERS],
)
bundles = APIRouter(
    prefix="/api/v1/bundles",
    tags=["trainings"],
    responses=PROBLEM_RESPONSES,
    dependencies=[SPACE_PARAMETERS],
)


# ---------------------------------------------------------------- shared by the routes


def space_of(request: Request, principal: Principal, permission: str | None = None) -> str:
    """The space a call acts in (see `mlplane.deps.acting_space`)."""
    return acting_space(principal, named_space(request), permission)


def not_found(kind: str, entity_id: str) -> NotFound:
    return NotFound(f"{kind} {entity_id!r} not found")


async def scoped(kernel: Kernel, collection: str, kind: str, entity_id: str, space: str) -> dict:
    """Document `entity_id` of `collection`, if it is of `space` (else 404)."""
    doc = await kernel.docs.get(collection, entity_id)
    if doc is None or doc["space_id"] != space:
        raise not_found(kind, entity_id)
    return doc


async def in_history(kernel: Kernel, kind: str, entity_id: str, space: str) -> None:
    """404 unless the entity's stream began in `space`: a deleted entity's past stays readable
    by its space's members, and by no one else."""
    first = await kernel.log.read_stream(kernel.entities[kind].stream(entity_id), 1, 1)
    owner = first and (getattr(first[0].data, "space_id", None) or first[0].space)
    if owner != space:
        raise not_found(kind.replace("-", " "), entity_id)


async def doc_at(kernel: Kernel, kind: str, entity_id: str, space: str, at: AsOf) -> dict:
    """The entity's public document as of `at`, after the same scoping as a read of it now."""
    await in_history(kernel, kind, entity_id, space)
    return await document_at(kernel.log, kernel.entities[kind], entity_id, at)


async def history(
    kernel: Kernel, kind: str, entity_id: str, space: str, limit: int, after: int
) -> HistoryPage:
    await in_history(kernel, kind, entity_id, space)
    return await entity_history(
        kernel.log, kernel.entities[kind], entity_id, limit=limit, after=after
    )


async def training_doc(kernel: Kernel, space_id: str, training_id: str) -> dict:
    doc = await kernel.doc(TRAINING_DOCS, training_id, TRAININGS.stream(training_id))
    if doc is None or doc["space_id"] != space_id:
        raise job_not_found(training_id)
    return doc


async def public_training(kernel: Kernel, doc: dict) -> m.TrainingPublic:
    found = await kernel.docs.get_many(CHECKPOINTS, doc.get("checkpoints", []))
    checkpoints = [
        m.CheckpointPublic.model_validate(found[cid])
        for cid in doc.get("checkpoints", [])
        if cid in found
    ]
    bundle = m.BundleRef.model_validate(doc) if doc.get("bundle_id") else None
    metrics = [m.Metric(name=k, value=v) for k, v in sorted(doc.get("metrics", {}).items())]
    return m.TrainingPublic.model_validate(
        {
            **doc,
            "job_id": doc["id"],
            "bundle": bundle,
            "checkpoints": checkpoints,
            "metrics": metrics,
        }
    )


# ---------------------------------------------------------------- trainings


@trainings.get("")
async def list_trainings(
    request: Request,
    kernel: KernelDep,
    principal: PrincipalDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=100)] = 10,
    status_: Annotated[str | None, Query(alias="status")] = None,
) -> ListPage[m.TrainingPublic]:
    """List training jobs, newest first (page, pageSize)."""
    space = space_of(request, principal, "trainings:list")
    filters = {"space_id": space, **({"status": status_} if status_ else {})}

    async def query(after: str | None):
        return await kernel.docs.query(
            TRAINING_DOCS, filters, sort="created_at", descending=True, limit=page_size, after=after
        )

    found = await query(None)
    for _ in range(page - 1):
        if not found.has_more:
            return ListPage[m.TrainingPublic](count=found.count, data=[], has_more=False)
        found = await query(found.next_cursor)
    data = [await public_training(kernel, doc) for doc in found.data]
    return ListPage[m.TrainingPublic](count=found.count, data=data, has_more=found.has_more)


@trainings.post("", status_code=status.HTTP_201_CREATED)
async def create(
    body: m.TrainingCreate,
    space: Annotated[str, permitted("trainings:create")],
    response: Response,
    kernel: KernelDep,
    principal: PrincipalDep,
    ctx: ContextDep,
) -> m.TrainingPublic:
    """Create a training of a built-in architecture; it is queued and starts when a slot frees."""
    if body.data_model_id:
        await scoped(kernel, DATA_MODEL_DOCS, "data model", body.data_model_id, space)
    resources = body.resources.model_dump() if body.resources else {}
    training_id = await create_training(
        training_service(kernel),
        ctx,
        space,
        name=body.name,
        source="architecture",
        architecture=body.architecture,
        configuration=body.configuration,
        connectors=[x.model_dump() for x in body.connectors],
        data_model_id=body.data_model_id,
        gpu_count=body.gpu_count,
        benchmark_ids=body.benchmark_ids,
        runtime=body.runtime,
        resources=resources,
        owner=principal.user_id,
    )
    response.headers["Location"] = f"/api/v1/trainings/{training_id}"
    return await public_training(kernel, await training_doc(kernel, space, training_id))


@trainings.get("/{id}")
async def get(
    id: str, request: Request, kernel: KernelDep, principal: PrincipalDep, at: AsOfParams
) -> m.TrainingPublic:
    """Get a training job by id, as it is or as it was (`as_of`, `version`)."""
    space = space_of(request, principal, "trainings:get")
    if at.now:
        return await public_training(kernel, await training_doc(kernel, space, id))
    return await public_training(kernel, await doc_at(kernel, TRAINING, id, space, at))


@trainings.get("/{id}/history")
async def training_history(
    id: str,
    request: Request,
    kernel: KernelDep,
    principal: PrincipalDep,
    limit: HistoryLimit = 20,
    after: HistoryAfter = 0,
) -> HistoryPage:
    """A training's changes, oldest first: version, time, actor, event and the fields it changed."""
    space = space_of(request, principal, "trainings:get")
    return await history(kernel, TRAINING, id, space, limit, after)


@trainings.patch("/{id}")
async def update(
    id: str,
    body: m.TrainingUpdate,
    request: Request,
    kernel: KernelDep,
    principal: PrincipalDep,
    ctx: ContextDep,
) -> m.TrainingPublic:
    """Rename a training, or change its recipe while it is still queued."""
    space = space_of(request, principal, "trainings:update")
    await training_doc(kernel, space, id)
    connectors = [body.connector.model_dump()] if body.connector else None
    command = c.UpdateTraining(
        training_id=id,
        name=body.name,
        architecture=body.architecture,
        configuration=body.configuration,
        connectors=connectors,
        benchmark_ids=body.benchmark_ids,
    )
    await kernel.execute(command, in_space(ctx, space))
    return await public_training(kernel, await training_doc(kernel, space, id))


@trainings.delete("/{id}")
async def delete(
    id: str, request: Request, kernel: KernelDep, principal: PrincipalDep, ctx: ContextDep
) -> m.Ref:
    """Delete a training job (a building or running one is killed first); its checkpoints stay."""
    space = space_of(request, principal, "trainings:delete")
    await training_doc(kernel, space, id)
    await stop_training(training_service(kernel), c.DeleteTraining(training_id=id), ctx, space)
    return m.Ref(id=id)


# ---------------------------------------------------------------- checkpoints


@checkpoints.get("")
async def list_checkpoints(
    request: Request,
    kernel: KernelDep,
    principal: PrincipalDep,
    page: PageParams,
    training_id: Annotated[
        str | None, Query(description="Only this training's checkpoints")
    ] = None,
) -> ListPage[m.CheckpointPublic]:
    """List checkpoints, newest first (limit, after)."""
    space = space_of(request, principal, "trainings:list")
    return await list_page(
        kernel.docs,
        CHECKPOINTS,
        m.CheckpointPublic,
        page,
        {"space_id": space, "training_id": training_id},
    )


@checkpoints.get("/{id}")
async def get_checkpoint(
    id: str, request: Request, kernel: KernelDep, principal: PrincipalDep
) -> m.CheckpointPublic:
    """Get a checkpoint by id."""
    space = space_of(request, principal, "trainings:get")
    return m.CheckpointPublic.model_validate(
        await scoped(kernel, CHECKPOINTS, "checkpoint", id, space)
    )


# ---------------------------------------------------------------- bundles


@bundles.get("/{id}")
async def get_uploaded_bundle(
    id: str, request: Request, kernel: KernelDep, principal: PrincipalDep, at: AsOfParams
) -> m.BundlePublic:
    """Get an uploaded source bundle by id: its hashes, manifest and size."""
    space = space_of(request, principal, "trainings:get")
    if at.now:
        doc = await kernel.doc(BUNDLE_DOCS, id, kernel.entities[BUNDLE].stream(id))
        if doc is None or doc["space_id"] != space:
            raise not_found("bundle", id)
        return m.BundlePublic.model_validate(doc)
    return m.BundlePublic.model_validate(await doc_at(kernel, BUNDLE, id, space, at))


@bundles.get("/{id}/history")
async def uploaded_bundle_history(
    id: str,
    request: Request,
    kernel: KernelDep,
    principal: PrincipalDep,
    limit: HistoryLimit = 20,
    after: HistoryAfter = 0,
) -> HistoryPage:
    """A bundle's history: its upload (a bundle never changes)."""
    space = space_of(request, principal, "trainings:get")
    return await history(kernel, BUNDLE, id, space, limit, after)
