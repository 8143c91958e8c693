"""A training checkpoint becomes a registered model version, so an endpoint can serve it.

The checkpoint's files (already in the model-repository layout under `checkpoints/<id>/<name>/`)
are read from the shared artifact store and registered like an upload, with the checkpoint's id
on the version (the checkpoint's provenance then lists the version among its uses). The model's
id derives from the checkpoint's, so deploying one checkpoint twice registers it once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mlplane import aggregates
from mlplane.errors import NotFound

from services.triton_manager.handlers import MODELS, ModelState
from services.triton_manager.repository import Upload
from services.triton_manager.views import create_model, service, workspace

CHECKPOINTS = "training_checkpoints"
SKIPPED = ("model-settings.json",)


def model_id_of(checkpoint_id: str) -> str:
    return hashlib.sha256(f"checkpoint/{checkpoint_id}".encode()).hexdigest()[:32]


async def import_checkpoint(kernel, ctx, space: str, checkpoint_id: str) -> ModelState | None:
    doc = await kernel.docs.get(CHECKPOINTS, checkpoint_id)
    if doc is None or doc.get("space_id") != space:
        return None
    model_id = model_id_of(checkpoint_id)
    state, _ = await aggregates.load(kernel.log, MODELS, model_id)
    if state.live:
        return state
    serving = service(kernel)
    with workspace() as tmp:
        folder = Path(tmp) / "checkpoint"
        try:
            await serving.store.get_tree(doc["key"], folder)
        except NotFound:
            raise NotFound(f"the files of checkpoint {checkpoint_id!r} are gone") from None
        uploads = [
            Upload(p.relative_to(folder).as_posix(), p)
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in SKIPPED
        ]
        return await create_model(
            serving,
            ctx,
            space,
            doc["name"],
            f"from checkpoint {checkpoint_id}",
            uploads,
            Path(tmp),
            checkpoint_id=checkpoint_id,
            source="checkpoint",
            model_id=model_id,
        )
