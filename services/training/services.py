"""Use cases of the training service beyond one command, tested without HTTP against an
in-memory kernel (`tests/unit/test_training_services.py`).

Creating a training checks what its decision cannot (the runtime has what it asks for, the
architecture is one of the built-in ones), records it, then hands it to this process's runner at
once (the bus would, a moment later). A training from an uploaded bundle is two commands: the
bundle, then the training naming it. Killing or deleting a training stops its job here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from mlplane.artifacts import ArtifactStore
from mlplane.deps import in_space
from mlplane.errors import Invalid
from mlplane.eventlog import Context
from mlplane.events import new_id
from mlplane.kernel import Kernel

from . import commands as c
from .builtin import canonical
from .bundles import Ingested
from .settings import TrainingSettings

STORE, SETTINGS, WORKER = "training.store", "training.settings", "training.worker"
"""Where the service's start-up leaves its artifact store, settings and runner on the kernel."""


class Runner(Protocol):
    """What a use case asks of this process's training runner (`workers.TrainingWorker`)."""

    def submit(self, training_id: str) -> None: ...

    async def halt(self, training_id: str) -> bool: ...

    def inspect(self) -> dict[str, Any]: ...


@dataclass
class Training:
    """The training service's objects in this process (set by its start-up)."""

    kernel: Kernel
    store: ArtifactStore
    settings: TrainingSettings

    @property
    def runner(self) -> Runner | None:
        return self.kernel.extensions.get(WORKER)


def training_service(kernel: Kernel) -> Training:
    return Training(kernel, kernel.extensions[STORE], kernel.extensions[SETTINGS])


def check_runtime(runtime: str, gpu_count: int) -> None:
    if runtime == "local://" and gpu_count > 0:
        raise Invalid(
            "the local runtime has no GPU; ask for gpu_count 0 or use kubernetes://",
            field="gpu_count",
        )


async def create_training(training: Training, ctx: Context, space_id: str, **fields: Any) -> str:
    """Record a training and hand it to this process's runner; its id."""
    runtime = fields.pop("runtime", None) or training.settings.runtime
    check_runtime(runtime, fields.get("gpu_count", 0))
    if fields.get("source") == "architecture":
        try:
            canonical(fields["architecture"])
        except ValueError as exc:
            raise Invalid(str(exc), field="architecture") from None
    command = c.CreateTraining(training_id=new_id(), space_id=space_id, runtime=runtime, **fields)
    await training.kernel.execute(command, in_space(ctx, space_id))
    if training.runner is not None:
        training.runner.submit(command.training_id)
    return command.training_id


async def train_bundle(
    training: Training, ctx: Context, space_id: str, ingested: Ingested, **fields: Any
) -> str:
    """Record an ingested bundle, then a training of it (`fields`: name, runtime, owner)."""
    manifest = ingested.manifest
    bundle = c.RecordBundle(
        bundle_id=new_id(),
        space_id=space_id,
        code_hash=ingested.code_hash,
        data_hash=ingested.data_hash,
        parameters_hash=ingested.parameters_hash,
        bundle_hash=ingested.bundle_hash,
        archive_sha256=ingested.archive_sha256,
        manifest=manifest.model_dump(mode="json"),
        files=ingested.files,
        unpacked_bytes=ingested.unpacked_bytes,
    )
    await training.kernel.execute(bundle, in_space(ctx, space_id))
    return await create_training(
        training,
        ctx,
        space_id,
        **{"name": manifest.name or "bundle", **{k: v for k, v in fields.items() if v}},
        source="bundle",
        gpu_count=manifest.resources.gpu,
        resources=manifest.resources.model_dump(),
        bundle_id=bundle.bundle_id,
        code_hash=ingested.code_hash,
        data_hash=ingested.data_hash,
        parameters_hash=ingested.parameters_hash,
        bundle_hash=ingested.bundle_hash,
        entrypoint=manifest.entrypoint,
        args=manifest.args,
        parameters=manifest.parameters,
        requirements=manifest.requirements,
    )


async def stop_training(
    training: Training, command: c.KillTraining | c.DeleteTraining, ctx: Context, space_id: str
) -> None:
    """Kill or delete a training (the caller has checked it is of `space_id`), and stop its job
    if this process's runner has it."""
    await training.kernel.execute(command, in_space(ctx, space_id))
    if training.runner is not None:
        await training.runner.halt(command.training_id)
