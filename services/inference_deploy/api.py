"""Routes of seed 000 (`/inference/{workspace}`: deploy, list, bundle, provenance, logs, build
logs; `DELETE /endpoint/{name}`), the configuration changes and rollbacks that make revisions,
and seed 004's revision routes under `/api/v1/workloads/inferences`.

The workspace is a space id; routes without one act in the caller's space (X-Space-ID, a
`space_id` parameter, or their only space). An endpoint of another space answers 404. A member
changes endpoints only with its permission: `endpoints:create` to deploy, `endpoints:update` to
reconfigure or roll back, `endpoints:delete` to remove; the check is a dependency, so it refuses
before the body is read or the endpoint looked up.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
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
from mlplane.errors import Invalid, NotFound
from mlplane.history import (
    AsOfParams,
    HistoryAfter,
    HistoryLimit,
    HistoryPage,
    document_at,
    entity_history,
)
from mlplane.http import PROBLEM_RESPONSES
from pydantic import BaseModel

from . import commands as c
from . import services
from .bootstrap import ENDPOINT_KIND, SETTINGS, STORE
from .projections import ENDPOINTS as ENDPOINT_DOCS
from .projections import REVISION_INDEX, REVISIONS
from .schemas import (
    BuildLogs,
    EndpointCreate,
    EndpointList,
    EndpointLogs,
    EndpointPublic,
    EndpointRemoved,
    EndpointUpdate,
    ProvenancePublic,
    RevisionCount,
    RevisionList,
    RevisionPublic,
    Rollback,
    endpoint_public,
)

inference = APIRouter(prefix="/inference", tags=["inference"], responses=PROBLEM_RESPONSES)
endpoints = APIRouter(
    prefix="/endpoint",
    tags=["inference"],
    responses=PROBLEM_RESPONSES,
    dependencies=[SPACE_PARAMETERS],
)
revisions = APIRouter(
    prefix="/api/v1/workloads/inferences",
    tags=["revisions"],
    responses=PROBLEM_RESPONSES,
    dependencies=[SPACE_PARAMETERS],
)


async def _body(request: Request, model: type[BaseModel]) -> Any:
    raw = await request.body()
    if not raw.strip():
        return model()
    try:
        return model.model_validate_json(raw)
    except ValueError as exc:
        errors = getattr(exc, "errors", list)()
        fields = [
            {
                "field": ".".join(map(str, e.get("loc", ()))) or "body",
                "message": e.get("msg", ""),
                "type": e.get("type", ""),
            }
            for e in errors
        ]
        detail = (
            "; ".join(f"{f['field']}: {f['message']}" for f in fields) or "the body is not JSON"
        )
        raise Invalid(detail, errors=fields) from None


def _nudge(kernel) -> None:
    """Wake the fleet now, where it runs in this process (it polls otherwise)."""
    worker = kernel.extensions.get("serving.fleet")
    if worker is not None:
        worker.wake()


@inference.get("/{workspace}")
async def list_endpoints(
    workspace: str, kernel: KernelDep, principal: PrincipalDep
) -> EndpointList:
    """List the endpoints of a workspace."""
    principal.require(workspace)
    found = await kernel.docs.query(
        ENDPOINT_DOCS, {"space_id": workspace, "removed": False}, sort="created_at", limit=1000
    )
    data = [endpoint_public(d) for d in found.data]
    return EndpointList(count=found.count, data=data, endpoints=data, has_more=found.has_more)


@inference.post(
    "/{workspace}/{model_id}",
    status_code=status.HTTP_201_CREATED,
    dependencies=[permitted("endpoints:create", path="workspace")],
)
async def deploy(
    workspace: str,
    model_id: str,
    request: Request,
    response: Response,
    kernel: KernelDep,
    principal: PrincipalDep,
    ctx: ContextDep,
    user: Annotated[str | None, Query(description="User owning the endpoint")] = None,
    name: Annotated[str | None, Query(max_length=63)] = None,
) -> EndpointPublic:
    """Deploy an endpoint from a registered model (its latest version, or `version`) or a
    training checkpoint; optional JSON body: name, version, replicas, selector, resources, runtime.
    The endpoint is `pending` until a server serves it (a checkpoint is registered first)."""
    body: EndpointCreate = await _body(request, EndpointCreate)
    if name:
        body = body.model_copy(update={"name": EndpointCreate(name=name).name})
    runtime = kernel.extensions[SETTINGS].runtime
    owner = user or principal.user_id
    public = await services.deploy(kernel, ctx, workspace, model_id, body, owner, runtime)
    _nudge(kernel)
    response.headers["Location"] = f"/inference/{workspace}/{public.name}"
    return public


@inference.patch(
    "/{workspace}/{endpoint_name}",
    dependencies=[permitted("endpoints:update", path="workspace")],
)
async def reconfigure(
    workspace: str, endpoint_name: str, body: EndpointUpdate, kernel: KernelDep, ctx: ContextDep
) -> EndpointPublic:
    """Change an endpoint's configuration (version, replicas, selector, resources): a new revision."""
    public = await services.reconfigure(kernel, ctx, workspace, endpoint_name, body)
    _nudge(kernel)
    return public


@inference.post(
    "/{workspace}/{endpoint_name}/rollback",
    dependencies=[permitted("endpoints:update", path="workspace")],
)
async def rollback(
    workspace: str, endpoint_name: str, body: Rollback, kernel: KernelDep, ctx: ContextDep
) -> EndpointPublic:
    """Roll an endpoint back to an earlier revision's configuration: a new revision."""
    doc = await services.endpoint_doc(kernel, workspace, endpoint_name)
    command = c.RollBackEndpoint(
        endpoint_id=doc["id"], revision_id=services.new_revision_id(), to_revision=body.revision
    )
    await kernel.execute(command, in_space(ctx, workspace))
    _nudge(kernel)
    return endpoint_public(await services.endpoint_doc(kernel, workspace, endpoint_name))


@inference.get("/{endpoint_name}/logs")
async def endpoint_logs(
    endpoint_name: str, request: Request, kernel: KernelDep, principal: PrincipalDep
) -> EndpointLogs:
    """Logs of an endpoint: its rollouts, revision by revision."""
    space = acting_space(principal, named_space(request))
    doc = await services.endpoint_doc(kernel, space, endpoint_name)
    lines = await services.log_lines(kernel, doc["id"])
    text = "\n".join(line["text"] for line in lines)
    return EndpointLogs(endpoint=endpoint_name, logs=text, lines=lines)


@inference.get("/{workspace}/build/{job_id}/logs")
async def build_logs(
    workspace: str, job_id: str, kernel: KernelDep, principal: PrincipalDep
) -> BuildLogs:
    """Logs of one rollout (a build): `job_id` is the revision id."""
    principal.require(workspace)
    index = await kernel.docs.get(REVISION_INDEX, job_id)
    if index is None or index["space_id"] != workspace:
        raise NotFound(f"no build {job_id!r} in this workspace")
    lines = [
        line
        for line in await services.log_lines(kernel, index["endpoint_id"])
        if line["build_id"] == job_id
    ]
    text = "\n".join(line["text"] for line in lines)
    return BuildLogs(job_id=job_id, logs=text, lines=lines)


@inference.get("/{workspace}/{endpoint_name}/bundle")
async def endpoint_bundle(
    workspace: str, endpoint_name: str, kernel: KernelDep, principal: PrincipalDep
) -> Response:
    """The endpoint's source: its model version in the model-repository layout and its
    configuration, as a tar.gz."""
    principal.require(workspace)
    data = await services.bundle(kernel, kernel.extensions[STORE], workspace, endpoint_name)
    headers = {"Content-Disposition": f'attachment; filename="{endpoint_name}.tar.gz"'}
    return Response(data, media_type="application/gzip", headers=headers)


@inference.get("/{workspace}/{endpoint_name}/provenance")
async def endpoint_provenance(
    workspace: str, endpoint_name: str, kernel: KernelDep, principal: PrincipalDep
) -> ProvenancePublic:
    """Where an endpoint's model came from: model version, checkpoint, training, bundle; and the
    servers serving it, as a document and as a graph."""
    principal.require(workspace)
    return await services.provenance(kernel, workspace, endpoint_name)


@endpoints.delete("/{endpoint_name}")
async def remove(
    endpoint_name: str,
    kernel: KernelDep,
    space: Annotated[str, permitted("endpoints:delete")],
    ctx: ContextDep,
) -> EndpointRemoved:
    """Remove an endpoint; its model versions are unloaded once nothing else holds them."""
    doc = await services.endpoint_doc(kernel, space, endpoint_name)
    await kernel.execute(c.RemoveEndpoint(endpoint_id=doc["id"]), in_space(ctx, space))
    _nudge(kernel)
    return EndpointRemoved(id=doc["id"], name=endpoint_name)


# ---------------------------------------------------------------- seed 004


async def _visible(
    kernel, principal, workload_id: str, request: Request | None = None
) -> dict[str, Any]:
    """The workload's revisions document, after the caller's space is checked (404 otherwise;
    also when the request names another space)."""
    doc = await kernel.doc(REVISIONS, workload_id, f"endpoint:{workload_id}")
    named = named_space(request) if request is not None else None
    if doc is None or (named and named != doc["space_id"]):
        raise NotFound(f"workload {workload_id!r} not found")
    try:
        principal.require(doc["space_id"])
    except NotFound:
        raise NotFound(f"workload {workload_id!r} not found") from None
    return doc


def _deleted_filter(items: list[dict[str, Any]], deleted: bool | None) -> list[dict[str, Any]]:
    if deleted is None:
        return items
    return [r for r in items if bool(r.get("deletedAt")) == deleted]


@revisions.get("/{workloadId}/revisions")
async def list_revisions(
    workloadId: str, kernel: KernelDep, principal: PrincipalDep, deleted: bool | None = None
) -> RevisionList:
    """Get inference workload revisions by id (`deleted=true`: only those of removed lives)."""
    doc = await _visible(kernel, principal, workloadId)
    items = [RevisionPublic(**r) for r in _deleted_filter(doc["revisions"], deleted)]
    return RevisionList(count=len(items), data=items, revisions=items, has_more=False)


@revisions.get("/{workloadId}/revisions/count")
async def count_revisions(
    workloadId: str, kernel: KernelDep, principal: PrincipalDep, deleted: bool | None = None
) -> RevisionCount:
    """Get inference workload revisions count."""
    doc = await _visible(kernel, principal, workloadId)
    return RevisionCount(count=len(_deleted_filter(doc["revisions"], deleted)))


@revisions.get("/revisions/{revisionId}")
async def get_revision(
    revisionId: str, kernel: KernelDep, principal: PrincipalDep
) -> RevisionPublic:
    """Get revision data by revision id."""
    index = await kernel.docs.get(REVISION_INDEX, revisionId)
    if index is None:
        await kernel.catch_up(REVISION_INDEX)
        index = await kernel.docs.get(REVISION_INDEX, revisionId)
    if index is None:
        raise NotFound(f"revision {revisionId!r} not found")
    doc = await _visible(kernel, principal, index["endpoint_id"])
    for revision in doc["revisions"]:
        if revision["id"] == revisionId:
            return RevisionPublic(**revision)
    raise NotFound(f"revision {revisionId!r} not found")


@revisions.get("/{id}")
async def get_workload(
    id: str, request: Request, kernel: KernelDep, principal: PrincipalDep, at: AsOfParams
) -> EndpointPublic:
    """Get an inference workload (an endpoint) by id, as it is or as it was (`as_of`, `version`)."""
    await _visible(kernel, principal, id, request)
    doc = await kernel.doc(ENDPOINT_DOCS, id, f"endpoint:{id}")
    if not at.now:
        doc = await document_at(kernel.log, kernel.entities[ENDPOINT_KIND], id, at)
    if doc is None or doc.get("removed"):
        raise NotFound(f"workload {id!r} not found")
    return endpoint_public(doc)


@revisions.get("/{id}/history")
async def workload_history(
    id: str,
    request: Request,
    kernel: KernelDep,
    principal: PrincipalDep,
    limit: HistoryLimit = 20,
    after: HistoryAfter = 0,
) -> HistoryPage:
    """An inference workload's changes, oldest first: deployments, changes, rollouts, removal."""
    await _visible(kernel, principal, id, request)
    return await entity_history(
        kernel.log, kernel.entities[ENDPOINT_KIND], id, limit=limit, after=after
    )
