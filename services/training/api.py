"""Routes of seed 003's `trainings` and `checkpoints` tags, under /api/v1.

A call acts in the space named by its X-Space-ID header (or `space_id` parameter, or the
caller's only space); an id from another space answers 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from mlplane.deps import ContextDep, KernelDep, PrincipalDep, permitted
from mlplane.errors import NotFound
from mlplane.http import PROBLEM_RESPONSES, ListPage, PageParams, list_page

from . import commands as c
from . import models as m
from .handlers import TRAININGS
from .projections import CHECKPOINTS
from .projections import DATA_MODELS as DATA_MODEL_DOCS
from .projections import TRAININGS as TRAINING_DOCS
from .views import create_training, public_training, service, space_of, training_doc, write

trainings = APIRouter(prefix="/api/v1/trainings", tags=["trainings"], responses=PROBLEM_RESPONSES)
checkpoints = APIRouter(
    prefix="/api/v1/checkpoints", tags=["checkpoints"], responses=PROBLEM_RESPONSES
)


@trainings.get("")
async def list_trainings(
    request: Request,
    kernel: KernelDep,
    principal: PrincipalDep,
    page: Annotated[int, Query(ge=1)] = 1,
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
        doc = await kernel.docs.get(DATA_MODEL_DOCS, body.data_model_id)
        if doc is None or doc["space_id"] != space:
            raise NotFound(f"data model {body.data_model_id!r} not found")
    resources = body.resources.model_dump() if body.resources else {}
    training_id = await create_training(
        service(kernel),
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
    id: str, request: Request, kernel: KernelDep, principal: PrincipalDep
) -> m.TrainingPublic:
    """Get a training job by id."""
    space = space_of(request, principal, "trainings:get")
    return await public_training(kernel, await training_doc(kernel, space, id))


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
    await write(kernel, TRAININGS, id, command, ctx, space)
    return await public_training(kernel, await training_doc(kernel, space, id))


@trainings.delete("/{id}")
async def delete(
    id: str, request: Request, kernel: KernelDep, principal: PrincipalDep, ctx: ContextDep
) -> m.Ref:
    """Delete a training job (a building or running one is killed first); its checkpoints stay."""
    space = space_of(request, principal, "trainings:delete")
    await training_doc(kernel, space, id)
    await write(kernel, TRAININGS, id, c.DeleteTraining(training_id=id), ctx, space)
    worker = service(kernel).worker
    if worker is not None:
        await worker.halt(id)
    return m.Ref(id=id)


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
    doc = await kernel.docs.get(CHECKPOINTS, id)
    if doc is None or doc["space_id"] != space:
        raise NotFound(f"checkpoint {id!r} not found")
    return m.CheckpointPublic.model_validate(doc)
