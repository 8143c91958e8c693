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

import io
import json
import tarfile
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from mlplane import aggregates
from mlplane.deps import ContextDep, KernelDep, PrincipalDep, in_space, permitted
from mlplane.errors import Invalid, NotFound
from mlplane.events import new_id
from mlplane.http import PROBLEM_RESPONSES
from pydantic import BaseModel, ConfigDict, Field

from services.triton_manager.handlers import MODELS, served_name
from services.triton_manager.views import model_in, space_of
from services.triton_manager.views import service as serving

from . import commands as c
from .handlers import ENDPOINTS, decide, endpoint_id, not_found
from .imports import import_checkpoint
from .projections import ENDPOINTS as ENDPOINT_DOCS
from .projections import REVISION_INDEX, REVISIONS

inference = APIRouter(prefix="/inference", tags=["inference"], responses=PROBLEM_RESPONSES)
endpoints = APIRouter(prefix="/endpoint", tags=["inference"], responses=PROBLEM_RESPONSES)
revisions = APIRouter(
    prefix="/api/v1/workloads/inferences", tags=["revisions"], responses=PROBLEM_RESPONSES
)

Name = Annotated[
    str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
]


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    replicas: Annotated[int | None, Field(ge=1, le=64)] = None
    selector: dict[str, str] | None = None
    resources: dict[str, Any] | None = None
    runtime: Annotated[str | None, Field(pattern="^(local|kubernetes)://$")] = None
    version: Annotated[int | None, Field(ge=1)] = None


class Deploy(Config):
    name: Name | None = None


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    revision: Annotated[
        str, Field(min_length=1, max_length=64, description="A revision id or number")
    ]


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


async def _write(kernel, command: c.Command, ctx, space: str):
    outcome = await aggregates.execute(
        kernel.log, ENDPOINTS, command.endpoint_id, decide, command, in_space(ctx, space)
    )
    await kernel.catch_up()
    return outcome.state


async def endpoint_doc(kernel, space: str, name: str) -> dict[str, Any]:
    key = endpoint_id(space, name)
    doc = await kernel.docs.get(ENDPOINT_DOCS, key)
    if doc is None:
        await kernel.catch_up(ENDPOINT_DOCS)
        doc = await kernel.docs.get(ENDPOINT_DOCS, key)
    if doc is None or doc.get("removed"):
        raise not_found(name)
    return doc


def public(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"]
    return {
        "id": doc["id"],
        "name": doc["name"],
        "space_id": doc["space_id"],
        "status": doc["phase"],
        "phase": doc["phase"],
        "reason": doc["reason"],
        "revision": doc["revision"],
        "revision_id": doc["revision_id"],
        "model_id": spec["model_id"],
        "model_name": spec.get("model_name"),
        "version": spec["version"],
        "checkpoint_id": spec.get("checkpoint_id"),
        "replicas": spec.get("replicas", 1),
        "selector": spec.get("selector", {}),
        "resources": spec.get("resources", {}),
        "runtime": spec.get("runtime", "local://"),
        "targets": doc["targets"],
        "url": doc["url"],
        "infer_path": f"/v2/models/{doc['name']}/infer",
        "owner": doc["owner"],
        "created_at": doc["created_at"],
        "updated_at": doc["updated_at"],
    }


@inference.get("/{workspace}")
async def list_endpoints(
    workspace: str, kernel: KernelDep, principal: PrincipalDep
) -> dict[str, Any]:
    """List the endpoints of a workspace."""
    principal.require(workspace)
    found = await kernel.docs.query(
        ENDPOINT_DOCS, {"space_id": workspace, "removed": False}, sort="created_at", limit=1000
    )
    data = [public(d) for d in found.data]
    return {"count": found.count, "data": data, "endpoints": data, "has_more": found.has_more}


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
) -> dict[str, Any]:
    """Deploy an endpoint from a registered model (its latest version, or `version`) or a
    training checkpoint; optional JSON body: name, version, replicas, selector, resources, runtime."""
    body: Deploy = await _body(request, Deploy)
    name = Deploy(name=name).name if name else body.name
    model, checkpoint = await _model(kernel, ctx, workspace, model_id)
    version = body.version or model.latest_version
    if str(version) not in model.versions:
        raise NotFound(f"model {model.id!r} has no version {version}")
    record = model.versions[str(version)]
    name = name or _default_name(model.name)
    settings = serving(kernel).settings
    spec = {
        "model_id": model.id,
        "model_name": model.name,
        "version": version,
        "served_name": served_name(model.id, version),
        "format": record["format"],
        "checkpoint_id": checkpoint or record.get("checkpoint_id"),
        "replicas": body.replicas or 1,
        "selector": body.selector or {},
        "resources": body.resources or {},
        "runtime": body.runtime or settings.runtime,
    }
    command = c.DeployEndpoint(
        endpoint_id=endpoint_id(workspace, name),
        space_id=workspace,
        name=name,
        revision_id=new_id_uuid(),
        spec=spec,
        owner=user or principal.user_id,
    )
    await _write(kernel, command, ctx, workspace)
    _nudge(kernel)
    response.headers["Location"] = f"/inference/{workspace}/{name}"
    return public(await endpoint_doc(kernel, workspace, name))


def new_id_uuid() -> str:
    import uuid

    return str(uuid.UUID(hex=new_id()))


def _default_name(model_name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() else "-" for ch in model_name.lower()).strip("-")
    return (cleaned or "endpoint")[:63].rstrip("-")


async def _model(kernel, ctx, space: str, model_id: str):
    """A registered model of the space, or a checkpoint of the space registered as one."""
    state, _ = await aggregates.load(kernel.log, MODELS, model_id)
    if state.live and state.space_id == space:
        return state, None
    imported = await import_checkpoint(kernel, ctx, space, model_id)
    if imported is None:
        raise NotFound(f"no model or checkpoint {model_id!r} in this workspace")
    return imported, model_id


def _nudge(kernel) -> None:
    worker = serving(kernel).worker
    if worker is not None:
        worker.wake()


@inference.patch(
    "/{workspace}/{endpoint_name}",
    dependencies=[permitted("endpoints:update", path="workspace")],
)
async def reconfigure(
    workspace: str,
    endpoint_name: str,
    body: Config,
    kernel: KernelDep,
    ctx: ContextDep,
) -> dict[str, Any]:
    """Change an endpoint's configuration (version, replicas, selector, resources): a new revision."""
    doc = await endpoint_doc(kernel, workspace, endpoint_name)
    changes = body.model_dump(exclude_none=True)
    if "version" in changes:
        model = await model_in(kernel, doc["spec"]["model_id"], workspace)
        if str(changes["version"]) not in model.versions:
            raise NotFound(f"model {model.id!r} has no version {changes['version']}")
        record = model.versions[str(changes["version"])]
        changes.update(
            served_name=served_name(model.id, changes["version"]),
            format=record["format"],
            checkpoint_id=record.get("checkpoint_id"),
        )
    command = c.ReconfigureEndpoint(
        endpoint_id=doc["id"], revision_id=new_id_uuid(), changes=changes
    )
    await _write(kernel, command, ctx, workspace)
    _nudge(kernel)
    return public(await endpoint_doc(kernel, workspace, endpoint_name))


@inference.post(
    "/{workspace}/{endpoint_name}/rollback",
    dependencies=[permitted("endpoints:update", path="workspace")],
)
async def rollback(
    workspace: str,
    endpoint_name: str,
    body: Rollback,
    kernel: KernelDep,
    ctx: ContextDep,
) -> dict[str, Any]:
    """Roll an endpoint back to an earlier revision's configuration: a new revision."""
    doc = await endpoint_doc(kernel, workspace, endpoint_name)
    command = c.RollBackEndpoint(
        endpoint_id=doc["id"], revision_id=new_id_uuid(), to_revision=body.revision
    )
    await _write(kernel, command, ctx, workspace)
    _nudge(kernel)
    return public(await endpoint_doc(kernel, workspace, endpoint_name))


@inference.get("/{endpoint_name}/logs")
async def endpoint_logs(
    endpoint_name: str, request: Request, kernel: KernelDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Logs of an endpoint: its rollouts, revision by revision."""
    space = space_of(request, principal)
    doc = await endpoint_doc(kernel, space, endpoint_name)
    lines = await log_lines(kernel, doc["id"])
    return {
        "endpoint": endpoint_name,
        "logs": "\n".join(line["text"] for line in lines),
        "lines": lines,
    }


@inference.get("/{workspace}/build/{job_id}/logs")
async def build_logs(
    workspace: str, job_id: str, kernel: KernelDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Logs of one rollout (a build): `job_id` is the revision id."""
    principal.require(workspace)
    index = await kernel.docs.get(REVISION_INDEX, job_id)
    if index is None or index["space_id"] != workspace:
        raise NotFound(f"no build {job_id!r} in this workspace")
    lines = [
        line for line in await log_lines(kernel, index["endpoint_id"]) if line["build_id"] == job_id
    ]
    return {"job_id": job_id, "logs": "\n".join(line["text"] for line in lines), "lines": lines}


async def log_lines(kernel, endpoint: str) -> list[dict[str, Any]]:
    out = []
    for env in await kernel.log.read_stream(f"endpointlog:{endpoint}"):
        out += [
            {"time": env.time.isoformat(), "build_id": env.data.build_id, "text": text}
            for text in env.data.lines
        ]
    return out


@inference.get("/{workspace}/{endpoint_name}/bundle")
async def endpoint_bundle(
    workspace: str, endpoint_name: str, kernel: KernelDep, principal: PrincipalDep
) -> Response:
    """The endpoint's source: its model version in the model-repository layout and its
    configuration, as a tar.gz."""
    principal.require(workspace)
    doc = await endpoint_doc(kernel, workspace, endpoint_name)
    spec = doc["spec"]
    model = await model_in(kernel, spec["model_id"], workspace)
    record = model.versions.get(str(spec["version"]))
    if record is None:
        raise NotFound(f"model version {spec['version']} is gone")
    store = serving(kernel).store
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for relative in sorted(record["files"]):
            data = await store.get_bytes(f"{record['key']}/{relative}")
            _add(tar, f"model/{model.name}/{relative}", data)
        _add(tar, "endpoint.json", json.dumps(public(doc), indent=2).encode())
    headers = {"Content-Disposition": f'attachment; filename="{endpoint_name}.tar.gz"'}
    return Response(buffer.getvalue(), media_type="application/gzip", headers=headers)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


@inference.get("/{workspace}/{endpoint_name}/provenance")
async def endpoint_provenance(
    workspace: str, endpoint_name: str, kernel: KernelDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Where an endpoint's model came from: model version, checkpoint, training, bundle; and the
    servers serving it, as a document and as a graph."""
    principal.require(workspace)
    doc = await endpoint_doc(kernel, workspace, endpoint_name)
    spec = doc["spec"]
    model = await model_in(kernel, spec["model_id"], workspace)
    record = model.versions.get(str(spec["version"]), {})
    origin = None
    if spec.get("checkpoint_id"):
        origin = await kernel.docs.get("training_provenance", spec["checkpoint_id"])
    servers = [await kernel.docs.get("serving_servers", s) for s in doc["targets"]]
    serving_on = [
        {"id": s["id"], "name": s["name"], "host": s["host"], "port": s["port"], "kind": s["kind"]}
        for s in servers
        if s
    ]
    nodes = [
        {"id": doc["id"], "type": "endpoint", "name": endpoint_name},
        {
            "id": f"{model.id}:{spec['version']}",
            "type": "model_version",
            "name": f"{model.name} v{spec['version']}",
        },
    ]
    edges = [{"from": f"{model.id}:{spec['version']}", "to": doc["id"], "type": "served_by"}]
    for server in serving_on:
        nodes.append({"id": server["id"], "type": "server", "name": server["name"]})
        edges.append({"from": doc["id"], "to": server["id"], "type": "runs_on"})
    if origin:
        checkpoint, training, bundle_ = (
            origin.get("checkpoint", {}),
            origin.get("training", {}),
            origin.get("bundle"),
        )
        nodes += [
            {"id": checkpoint.get("id"), "type": "checkpoint", "name": checkpoint.get("name")},
            {"id": training.get("id"), "type": "training", "name": training.get("name")},
        ]
        edges += [
            {
                "from": checkpoint.get("id"),
                "to": f"{model.id}:{spec['version']}",
                "type": "registered_as",
            },
            {"from": training.get("id"), "to": checkpoint.get("id"), "type": "produced"},
        ]
        if bundle_:
            nodes.append(
                {
                    "id": bundle_["bundle_id"],
                    "type": "bundle",
                    "name": bundle_.get("entrypoint", ""),
                }
            )
            edges.append(
                {"from": bundle_["bundle_id"], "to": training.get("id"), "type": "trained"}
            )
    return {
        "endpoint": public(doc),
        "model_version": {
            "model_id": model.id,
            "name": model.name,
            "version": spec["version"],
            "format": record.get("format"),
            "files": record.get("files", {}),
            "source": record.get("source"),
            "created_at": record.get("created_at"),
        },
        "checkpoint": origin.get("checkpoint") if origin else None,
        "training": origin.get("training") if origin else None,
        "bundle": origin.get("bundle") if origin else None,
        "environment": origin.get("environment") if origin else None,
        "servers": serving_on,
        "graph": {"nodes": nodes, "edges": edges},
    }


@endpoints.delete("/{endpoint_name}")
async def remove(
    endpoint_name: str,
    kernel: KernelDep,
    space: Annotated[str, permitted("endpoints:delete")],
    ctx: ContextDep,
) -> dict[str, Any]:
    """Remove an endpoint; its model versions are unloaded once nothing else holds them."""
    doc = await endpoint_doc(kernel, space, endpoint_name)
    await _write(kernel, c.RemoveEndpoint(endpoint_id=doc["id"]), ctx, space)
    _nudge(kernel)
    return {"status": "ok", "id": doc["id"], "name": endpoint_name}


# ---------------------------------------------------------------- seed 004


async def _revisions(kernel, principal, request: Request, workload_id: str) -> list[dict[str, Any]]:
    doc = await kernel.docs.get(REVISIONS, workload_id)
    if doc is None:
        await kernel.catch_up(REVISIONS)
        doc = await kernel.docs.get(REVISIONS, workload_id)
    if doc is None:
        raise NotFound(f"workload {workload_id!r} not found")
    try:
        principal.require(doc["space_id"])
    except NotFound:
        raise NotFound(f"workload {workload_id!r} not found") from None
    return doc["revisions"]


def _deleted_filter(items: list[dict[str, Any]], deleted: bool | None) -> list[dict[str, Any]]:
    if deleted is None:
        return items
    return [r for r in items if bool(r.get("deletedAt")) == deleted]


@revisions.get("/{workloadId}/revisions")
async def list_revisions(
    workloadId: str,
    request: Request,
    kernel: KernelDep,
    principal: PrincipalDep,
    deleted: bool | None = None,
) -> dict[str, Any]:
    """Get inference workload revisions by id (`deleted=true`: only those of removed lives)."""
    items = _deleted_filter(await _revisions(kernel, principal, request, workloadId), deleted)
    return {"count": len(items), "data": items, "revisions": items, "has_more": False}


@revisions.get("/{workloadId}/revisions/count")
async def count_revisions(
    workloadId: str,
    request: Request,
    kernel: KernelDep,
    principal: PrincipalDep,
    deleted: bool | None = None,
) -> dict[str, int]:
    """Get inference workload revisions count."""
    return {
        "count": len(
            _deleted_filter(await _revisions(kernel, principal, request, workloadId), deleted)
        )
    }


@revisions.get("/revisions/{revisionId}")
async def get_revision(
    revisionId: str, request: Request, kernel: KernelDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Get revision data by revision id."""
    index = await kernel.docs.get(REVISION_INDEX, revisionId)
    if index is None:
        await kernel.catch_up(REVISION_INDEX)
        index = await kernel.docs.get(REVISION_INDEX, revisionId)
    if index is None:
        raise NotFound(f"revision {revisionId!r} not found")
    for revision in await _revisions(kernel, principal, request, index["endpoint_id"]):
        if revision["id"] == revisionId:
            return revision
    raise NotFound(f"revision {revisionId!r} not found")
