"""Routes of seed 001, `/train/{workspace}`: training jobs from source bundles, the pipeline,
job info with its trained models, bundle download, model provenance, logs and kill.

The workspace is a space id: a caller outside it gets 404, as everywhere.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import FileResponse, StreamingResponse
from mlplane.deps import ContextDep, KernelDep, PrincipalDep
from mlplane.errors import NotFound
from mlplane.http import PROBLEM, PROBLEM_RESPONSES, ListPage, PageParams, list_page
from mlplane.names import NameOrEmpty
from starlette.background import BackgroundTask

from . import commands as c
from . import schemas as m
from .adapters.logs import follow, read_lines
from .api import public_training, training_doc
from .bundles import EMPTY, code_key, data_key, ingest, tar_bytes
from .handlers import ACTIVE, BUILDING, QUEUED, RUNNING
from .projections import CHECKPOINTS, PROVENANCE, TRAININGS
from .services import stop_training, train_bundle, training_service
from .unpack import BundleTooLarge, NotAnArchive

train = APIRouter(
    prefix="/train",
    tags=["train"],
    responses={
        **PROBLEM_RESPONSES,
        415: {"description": "Not a bundle archive", "content": {PROBLEM: {}}},
    },
)

LOWER_IS_BETTER = ("loss", "error", "rmse", "mae", "mse")
ARCHIVE_TYPES = (
    "application/gzip",
    "application/x-gzip",
    "application/zip",
    "application/x-tar",
    "application/octet-stream",
    "application/x-compressed-tar",
)


@train.get("/{workspace}")
async def list_jobs(
    workspace: str,
    kernel: KernelDep,
    principal: PrincipalDep,
    page: PageParams,
    status_: Annotated[str | None, Query(alias="status")] = None,
) -> ListPage[m.TrainingPublic]:
    """List the training jobs of a workspace."""
    principal.require(workspace, "trainings:list")
    found = await list_page(
        kernel.docs, TRAININGS, m.Ref, page, {"space_id": workspace, "status": status_}
    )
    docs = await kernel.docs.get_many(TRAININGS, [d.id for d in found.data])
    data = [await public_training(kernel, docs[d.id]) for d in found.data if d.id in docs]
    return ListPage[m.TrainingPublic](count=found.count, data=data, has_more=found.has_more)


@train.get("/{workspace}/inspect")
async def inspect(workspace: str, kernel: KernelDep, principal: PrincipalDep) -> m.Inspect:
    """Inspect the training pipeline: queued jobs, building and running jobs, resources."""
    principal.require(workspace, "trainings:list")
    training = training_service(kernel)
    page = await kernel.docs.query(
        TRAININGS, {"space_id": workspace, "status": list(ACTIVE)}, sort="created_at", limit=100
    )
    jobs = [await public_training(kernel, d) for d in page.data]
    resources = training.runner.inspect() if training.runner else {}
    return m.Inspect(
        space_id=workspace,
        queue=[j for j in jobs if j.status == QUEUED],
        running=[j for j in jobs if j.status in (BUILDING, RUNNING)],
        resources=resources,
    )


@train.post("/{workspace}", status_code=status.HTTP_202_ACCEPTED)
async def create_job(
    workspace: str,
    request: Request,
    response: Response,
    kernel: KernelDep,
    principal: PrincipalDep,
    ctx: ContextDep,
    user: Annotated[str | None, Query(description="User owning the training job")] = None,
    name: Annotated[NameOrEmpty | None, Query()] = None,
    runtime: Annotated[m.RuntimeUrl | None, Query()] = None,
) -> m.TrainingPublic:
    """Create a training job from a source bundle (tar.gz or zip, raw body or form field `data`)."""
    principal.require(workspace, "trainings:create")
    training = training_service(kernel)
    with tempfile.TemporaryDirectory(prefix="mlplane-upload-") as tmp:
        archive = await receive_archive(
            request, Path(tmp) / "bundle", training.settings.max_bundle_bytes
        )
        ingested = await ingest(archive, training.store, training.settings.limits)
    training_id = await train_bundle(
        training,
        ctx,
        workspace,
        ingested,
        name=name,
        runtime=runtime,
        owner=user or principal.user_id,
    )
    response.headers["Location"] = f"/train/{workspace}/{training_id}"
    return await public_training(kernel, await training_doc(kernel, workspace, training_id))


async def receive_archive(request: Request, target: Path, max_bytes: int) -> Path:
    """The uploaded archive, written to `target` as it arrives; 413 past `max_bytes`."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("data")
        if upload is None or isinstance(upload, str):
            raise NotAnArchive("send the bundle as the form field 'data'")
        source = iter_upload(upload)
    else:
        source = request.stream()
    size = 0
    with open(target, "wb") as out:  # noqa: ASYNC230 - local disk, written chunk by chunk
        async for chunk in source:
            size += len(chunk)
            if size > max_bytes:
                raise BundleTooLarge(f"bundles are limited to {max_bytes} bytes")
            out.write(chunk)
    if size == 0:
        raise NotAnArchive("the request carries no bundle")
    return target


async def iter_upload(upload: Any):
    while chunk := await upload.read(1 << 16):
        yield chunk


@train.post("/{workspace}/{job_id}")
async def job_info(
    workspace: str,
    job_id: str,
    kernel: KernelDep,
    principal: PrincipalDep,
    page_id: Annotated[
        int, Query(ge=1, le=100_000, description="Page of trained models, from 1")
    ] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 10,
    sort_by: Annotated[
        str | None,
        Query(pattern=r"^[A-Za-z0-9_.-]{1,100}$", description="Metric to sort trained models by"),
    ] = None,
    order: Annotated[str | None, Query(pattern="^(asc|desc)$")] = None,
) -> m.JobInfo:
    """Training job info, with its trained models paged (page_id) and sorted by a metric (sort_by)."""
    principal.require(workspace, "trainings:get")
    doc = await training_doc(kernel, workspace, job_id)
    public = await public_training(kernel, doc)
    models = sort_models(public.checkpoints, sort_by, order)
    start = (page_id - 1) * page_size
    page = m.ModelsPage(
        page_id=page_id,
        page_size=page_size,
        sort_by=sort_by,
        count=len(models),
        has_more=start + page_size < len(models),
        data=models[start : start + page_size],
    )
    return m.JobInfo(**public.model_dump(), models=page)


@train.get("/{workspace}/{job_id}", operation_id="get_job_info")
async def get_job_info(
    workspace: str,
    job_id: str,
    kernel: KernelDep,
    principal: PrincipalDep,
    page_id: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 10,
    sort_by: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.-]{1,100}$")] = None,
    order: Annotated[str | None, Query(pattern="^(asc|desc)$")] = None,
) -> m.JobInfo:
    """Training job info (the same as POST, for clients that read with GET)."""
    return await job_info(workspace, job_id, kernel, principal, page_id, page_size, sort_by, order)


def sort_models(
    models: list[m.CheckpointPublic], sort_by: str | None, order: str | None
) -> list[m.CheckpointPublic]:
    """Best first: descending for scores, ascending for losses and errors (or as `order` says)."""
    if not sort_by:
        return sorted(models, key=lambda c: c.created_at)
    descending = (
        order == "desc" if order else not any(w in sort_by.lower() for w in LOWER_IS_BETTER)
    )
    scored = [c for c in models if sort_by in c.metrics]
    unscored = [c for c in models if sort_by not in c.metrics]
    scored.sort(key=lambda c: c.metrics[sort_by], reverse=descending)
    return scored + unscored


@train.get(
    "/{workspace}/{job_id}/bundle",
    response_class=FileResponse,
    responses={200: {"content": {"application/gzip": {}}}},
)
async def get_bundle(
    workspace: str,
    job_id: str,
    kernel: KernelDep,
    principal: PrincipalDep,
    include_code: Annotated[bool, Query(alias="include-code")] = True,
    include_data: Annotated[bool, Query(alias="include-data")] = True,
    include_model: Annotated[bool, Query(alias="include-model")] = False,
) -> FileResponse:
    """Download the job's source bundle: its code, its data and its trained models, as asked."""
    principal.require(workspace, "trainings:get")
    doc = await training_doc(kernel, workspace, job_id)
    training = training_service(kernel)
    tmp = tempfile.mkdtemp(prefix="mlplane-download-")
    out = Path(tmp) / f"{job_id}.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        if include_code:
            await add_code(training.store, doc, tar, Path(tmp))
        if include_data and doc.get("data_hash") and doc["data_hash"] != EMPTY:
            await add_part(training.store, data_key(doc["data_hash"]), tar, Path(tmp))
        if include_model:
            await add_models(kernel, training.store, doc, tar, Path(tmp))
    cleanup = BackgroundTask(shutil.rmtree, tmp, ignore_errors=True)
    return FileResponse(
        out, media_type="application/gzip", filename=f"{job_id}.tar.gz", background=cleanup
    )


async def add_code(store, doc: dict, tar: tarfile.TarFile, tmp: Path) -> None:
    if doc["source"] == "bundle":
        await add_part(store, code_key(doc["code_hash"]), tar, tmp)
        return
    manifest = {
        "architecture": doc["architecture"],
        "configuration": doc["configuration"],
        "connectors": doc["connectors"],
        "data_model_id": doc["data_model_id"],
    }
    generated = tmp / "generated.tar.gz"
    generated.write_bytes(tar_bytes({"mlplane.json": json.dumps(manifest, indent=2).encode()}))
    copy_members(generated, tar, "")


async def add_part(store, key: str, tar: tarfile.TarFile, tmp: Path) -> None:
    part = await store.get_file(key, tmp / "part.tar.gz")
    await asyncio.to_thread(copy_members, part, tar, "")


def copy_members(source: Path, tar: tarfile.TarFile, prefix: str) -> None:
    with tarfile.open(source, "r:gz") as part:
        for member in part:
            if not (member.isreg() or member.isdir() or member.issym()):
                continue
            member.name = prefix + member.name
            tar.addfile(member, part.extractfile(member) if member.isreg() else None)


async def add_models(kernel, store, doc: dict, tar: tarfile.TarFile, tmp: Path) -> None:
    found = await kernel.docs.get_many(CHECKPOINTS, doc.get("checkpoints", []))
    for cid in doc.get("checkpoints", []):
        checkpoint = found.get(cid)
        if checkpoint is None:
            continue
        folder = tmp / "models" / cid
        await store.get_tree(checkpoint["key"], folder)
        tar.add(folder, arcname=f"model/{checkpoint['name']}", recursive=True)


@train.get("/{workspace}/{model_id}/provenance")
async def provenance(
    workspace: str, model_id: str, kernel: KernelDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Provenance of a trained model: bundle hashes, training, environment, checkpoint, later users."""
    principal.require(workspace, "trainings:get")
    doc = await kernel.docs.get(PROVENANCE, model_id)
    if doc is None:
        await kernel.catch_up(PROVENANCE)
        doc = await kernel.docs.get(PROVENANCE, model_id)
    if doc is None or doc.get("space_id") != workspace or "checkpoint" not in doc:
        raise NotFound(f"no trained model {model_id!r} in this workspace")
    return {**doc, "graph": graph(doc)}


def graph(doc: dict[str, Any]) -> dict[str, list]:
    """The provenance as nodes and edges: bundle → training → checkpoint → later users."""
    nodes, edges = [], []
    checkpoint, training = doc["checkpoint"], doc["training"]
    if doc.get("bundle"):
        nodes.append({"id": f"bundle:{doc['bundle']['bundle_id']}", "kind": "bundle"})
        edges.append(
            {
                "from": f"bundle:{doc['bundle']['bundle_id']}",
                "to": f"training:{training['id']}",
                "kind": "trained",
            }
        )
    nodes += [
        {"id": f"training:{training['id']}", "kind": "training"},
        {"id": f"checkpoint:{checkpoint['id']}", "kind": "checkpoint"},
    ]
    edges.append(
        {
            "from": f"training:{training['id']}",
            "to": f"checkpoint:{checkpoint['id']}",
            "kind": "produced",
        }
    )
    for use in doc.get("used_by", []):
        nodes.append({"id": use["stream_id"], "kind": use["type"]})
        edges.append(
            {"from": f"checkpoint:{checkpoint['id']}", "to": use["stream_id"], "kind": use["type"]}
        )
    return {"nodes": nodes, "edges": edges}


@train.get("/{workspace}/{job_id}/logs")
async def logs(
    workspace: str,
    job_id: str,
    kernel: KernelDep,
    principal: PrincipalDep,
    follow_: Annotated[
        bool, Query(alias="follow", description="Stream new lines until the job ends")
    ] = False,
):
    """Logs of a training job: build and run output, runner notes and metrics (follow to stream)."""
    principal.require(workspace, "trainings:get")
    doc = await training_doc(kernel, workspace, job_id)
    if follow_:

        async def lines():
            async for line in follow(kernel.log, job_id):
                yield json.dumps(line) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")
    found, _ = await read_lines(kernel.log, job_id)
    return {"id": job_id, "status": doc["status"], "lines": found}


@train.delete("/{workspace}/{job_id}")
@train.delete("/{workspace}/{job_id}/", include_in_schema=False)
async def kill_job(
    workspace: str, job_id: str, kernel: KernelDep, principal: PrincipalDep, ctx: ContextDep
) -> m.Killed:
    """Kill a building or running training job."""
    principal.require(workspace, "trainings:delete")
    await training_doc(kernel, workspace, job_id)
    command = c.KillTraining(training_id=job_id, reason=f"killed by {principal.user_id}")
    await stop_training(training_service(kernel), command, ctx, workspace)
    return m.Killed(id=job_id, status="killed", message=f"Job killed, id: {job_id}")
