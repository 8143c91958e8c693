"""Use cases of the model registry beyond one command, and what the routes share: the service's
objects in this process, the caller's space, writes that answer with their own result, the
upload path, and registering a training checkpoint as a model (`import_checkpoint`, run by the
import worker when an endpoint names a checkpoint). Every write goes through `kernel.execute`;
tests drive these without HTTP against an in-memory kernel."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, Request
from mlplane import aggregates
from mlplane.artifacts import ArtifactStore
from mlplane.auth import Permission, Principal
from mlplane.deps import PrincipalDep, acting_space, in_space, named_space
from mlplane.eventlog import Context
from mlplane.events import new_id
from mlplane.kernel import Kernel
from starlette.datastructures import UploadFile

from . import commands as c
from .events import checkpoint_model_id
from .handlers import MODELS, ModelState, model_not_found
from .repository import ModelTooLarge, Upload, invalid, prepare, version_key
from .settings import ServingSettings

STORE, SETTINGS = "serving.store", "serving.settings"
FILE_FIELDS = ("files[]", "files", "Files[]", "Files", "file")

log = logging.getLogger("mlplane.serving")


@dataclass
class Serving:
    kernel: Kernel
    store: ArtifactStore
    settings: ServingSettings

    @property
    def worker(self):
        from .workers import WORKER

        return self.kernel.extensions.get(WORKER)


def service(kernel: Kernel) -> Serving:
    return Serving(kernel, kernel.extensions[STORE], kernel.extensions[SETTINGS])


def space_of(request: Request, principal: Principal, permission: str | None = None) -> str:
    """The space a call acts in (see `mlplane.deps.acting_space`)."""
    return acting_space(principal, named_space(request), permission)


def optional_space(
    request: Request, principal: Principal, permission: Permission | None = None
) -> str | None:
    """An administrator naming no space sees every space; anyone else acts in one."""
    if principal.admin and not named_space(request):
        return None
    return space_of(request, principal, permission)


def registry_space(permission: Permission | None = None) -> Any:
    """A dependency answering `optional_space`, checked before the body is read (see
    `mlplane.deps.permitted`): None for an administrator naming no space."""

    async def space(request: Request, principal: PrincipalDep) -> str | None:
        return optional_space(request, principal, permission)

    return Depends(space)


async def write(
    kernel: Kernel, command: c.Command, ctx: Context, space_id: str | None = None
) -> Any:
    """Execute `command` (in `space_id` when given) and answer the entity's new state."""
    context = in_space(ctx, space_id) if space_id else ctx
    return (await kernel.execute(command, context)).state


async def model_in(kernel: Kernel, model_id: str, space: str | None) -> ModelState:
    state, _ = await aggregates.load(kernel.log, MODELS, model_id)
    if not state.live or (space is not None and state.space_id != space):
        raise model_not_found(model_id)
    return state


# ---------------------------------------------------------------- uploads


async def receive_files(
    request: Request, settings: ServingSettings, workdir: Path
) -> tuple[list[Upload], dict[str, str]]:
    """The uploaded model files, spooled to `workdir` in chunks (413 past the limits), and the
    form's text fields."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise invalid(
            "send the model as multipart/form-data with its files in field 'files'", "files"
        )
    form = await request.form(max_files=settings.max_files, max_fields=20)
    uploads, fields, total = [], {}, 0
    incoming = workdir / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    try:
        for key, value in form.multi_items():
            if isinstance(value, str):
                fields[key] = value
                continue
            if key not in FILE_FIELDS:
                raise invalid(f"unexpected file field {key!r}; send files as 'files'", key)
            target = incoming / str(len(uploads))
            with open(target, "wb") as out:  # noqa: ASYNC230 - local disk, chunk by chunk
                while chunk := await value.read(1 << 20):
                    total += len(chunk)
                    if total > settings.max_model_bytes:
                        raise ModelTooLarge(
                            f"a model's files are limited to {settings.max_model_bytes} bytes"
                        )
                    out.write(chunk)
            uploads.append(Upload(value.filename or f"file-{len(uploads)}", target))
    finally:
        for _, value in form.multi_items():
            if isinstance(value, UploadFile):
                await value.close()
    return uploads, fields


async def add_version(
    serving: Serving,
    ctx: Context,
    model: ModelState,
    uploads: list[Upload],
    workdir: Path,
    *,
    checkpoint_id: str | None = None,
    source: str = "upload",
) -> ModelState:
    """Lay out, check, store and record the next version of `model`. Nothing is recorded unless
    every file is stored; a refused upload leaves nothing behind."""
    version = model.next_version
    prepared = await prepare(uploads, model.name, version, workdir / "layout")
    key = version_key(model.id, version, model.name)
    try:
        await serving.store.put_tree(key, prepared.root)
        command = c.AddVersion(
            model_id=model.id,
            version=version,
            format=prepared.format,
            key=key,
            files=prepared.files,
            size=prepared.size,
            config=prepared.config,
            checkpoint_id=checkpoint_id,
            source=source,
        )
        return await write(serving.kernel, command, ctx, model.space_id)
    except BaseException:
        for name in prepared.files:
            await _forget(serving.store, f"{key}/{name}")
        raise


async def _forget(store: ArtifactStore, key: str) -> None:
    try:
        await store.delete(key)
    except Exception as exc:  # noqa: BLE001 - best effort cleanup of a refused upload
        log.debug("could not remove the refused upload %s: %s", key, exc)


async def create_model(
    serving: Serving,
    ctx: Context,
    space: str,
    name: str,
    description: str,
    uploads: list[Upload],
    workdir: Path,
    model_id: str | None = None,
    **version: Any,
) -> ModelState:
    """A new model with its first version; a refused first version records no model."""
    model_id = model_id or new_id()
    prepared = await prepare(uploads, name, 1, workdir / "layout")
    key = version_key(model_id, 1, name)
    await serving.store.put_tree(key, prepared.root)
    try:
        await write(
            serving.kernel,
            c.CreateModel(model_id=model_id, space_id=space, name=name, description=description),
            ctx,
            space,
        )
        command = c.AddVersion(
            model_id=model_id,
            version=1,
            format=prepared.format,
            key=key,
            files=prepared.files,
            size=prepared.size,
            config=prepared.config,
            **version,
        )
        return await write(serving.kernel, command, ctx, space)
    except BaseException:
        for file in prepared.files:
            await _forget(serving.store, f"{key}/{file}")
        raise


def workspace() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="mlplane-model-")


SKIPPED = ("model-settings.json",)


async def import_checkpoint(
    serving: Serving, ctx: Context, checkpoint: dict[str, Any]
) -> ModelState:
    """Register a training checkpoint (`serving_checkpoints` document) as a model with one
    version. Its files are already in the model-repository layout under the checkpoint's key;
    the model's id derives from the checkpoint's, so a checkpoint is registered once."""
    model_id = checkpoint_model_id(checkpoint["checkpoint_id"])
    state, _ = await aggregates.load(serving.kernel.log, MODELS, model_id)
    if state.id:
        return state
    with workspace() as tmp:
        folder = Path(tmp) / "checkpoint"
        await serving.store.get_tree(checkpoint["key"], folder)
        uploads = [
            Upload(p.relative_to(folder).as_posix(), p)
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in SKIPPED
        ]
        return await create_model(
            serving,
            ctx,
            checkpoint["space_id"],
            checkpoint["name"],
            f"from checkpoint {checkpoint['checkpoint_id']}",
            uploads,
            Path(tmp),
            checkpoint_id=checkpoint["checkpoint_id"],
            source="checkpoint",
            model_id=model_id,
        )
