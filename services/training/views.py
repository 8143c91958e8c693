"""What the training routes share: where the service's objects live, scoped reads, writes that
answer with their own result, and the public shape of a training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from mlplane import aggregates
from mlplane.aggregates import Aggregate
from mlplane.artifacts import ArtifactStore
from mlplane.auth import Principal
from mlplane.deps import acting_space, in_space, named_space
from mlplane.errors import Invalid, NotFound
from mlplane.eventlog import Context
from mlplane.events import new_id
from mlplane.kernel import Kernel

from . import commands as c
from . import models as m
from .builtin import canonical
from .handlers import BUNDLES, TRAININGS, decide, job_not_found
from .projections import CHECKPOINTS
from .projections import TRAININGS as TRAINING_DOCS
from .settings import TrainingSettings

STORE, SETTINGS = "training.store", "training.settings"


@dataclass
class Training:
    """The training service's objects in this process (set by its start-up)."""

    kernel: Kernel
    store: ArtifactStore
    settings: TrainingSettings

    @property
    def worker(self):
        from .workers import WORKER

        return self.kernel.extensions.get(WORKER)


def service(kernel: Kernel) -> Training:
    return Training(kernel, kernel.extensions[STORE], kernel.extensions[SETTINGS])


def space_of(request: Request, principal: Principal, permission: str | None = None) -> str:
    """The space a call acts in (see `mlplane.deps.acting_space`)."""
    return acting_space(principal, named_space(request), permission)


async def write(
    kernel: Kernel,
    aggregate: Aggregate,
    entity_id: str,
    command: c.Command,
    ctx: Context,
    space_id: str,
) -> Any:
    outcome = await aggregates.execute(
        kernel.log, aggregate, entity_id, decide, command, in_space(ctx, space_id)
    )
    await kernel.catch_up()
    return outcome.state


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


def check_runtime(training: Training, runtime: str, gpu_count: int) -> None:
    if runtime == "local://" and gpu_count > 0:
        raise Invalid(
            "the local runtime has no GPU; ask for gpu_count 0 or use kubernetes://",
            field="gpu_count",
        )


async def create_training(training: Training, ctx: Context, space_id: str, **fields: Any) -> str:
    """Record a training and hand it to this process's runner (the bus would, a moment later)."""
    runtime = fields.pop("runtime", None) or training.settings.runtime
    check_runtime(training, runtime, fields.get("gpu_count", 0))
    if fields.get("source") == "architecture":
        try:
            canonical(fields["architecture"])
        except ValueError as exc:
            raise Invalid(str(exc), field="architecture") from None
    training_id = new_id()
    command = c.CreateTraining(
        training_id=training_id, space_id=space_id, runtime=runtime, **fields
    )
    await write(training.kernel, TRAININGS, training_id, command, ctx, space_id)
    if training.worker is not None:
        training.worker.submit(training_id)
    return training_id


async def record_bundle(training: Training, ctx: Context, space_id: str, ingested) -> str:
    bundle_id = new_id()
    command = c.RecordBundle(
        bundle_id=bundle_id,
        space_id=space_id,
        code_hash=ingested.code_hash,
        data_hash=ingested.data_hash,
        parameters_hash=ingested.parameters_hash,
        bundle_hash=ingested.bundle_hash,
        archive_sha256=ingested.archive_sha256,
        manifest=ingested.manifest.model_dump(mode="json"),
        files=ingested.files,
        unpacked_bytes=ingested.unpacked_bytes,
    )
    await aggregates.execute(
        training.kernel.log, BUNDLES, bundle_id, decide, command, in_space(ctx, space_id)
    )
    return bundle_id


async def kill(
    training: Training, ctx: Context, space_id: str, training_id: str, reason: str
) -> None:
    await training_doc(training.kernel, space_id, training_id)
    await write(
        training.kernel,
        TRAININGS,
        training_id,
        c.KillTraining(training_id=training_id, reason=reason),
        ctx,
        space_id,
    )
    if training.worker is not None:
        await training.worker.halt(training_id)


def not_found(kind: str, entity_id: str) -> NotFound:
    return NotFound(f"{kind} {entity_id!r} not found")
