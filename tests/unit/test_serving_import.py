"""The registry registers the checkpoints endpoints name, without HTTP: against a kernel on
SQLite in a temporary folder; the training context's event is appended as it would be."""

from __future__ import annotations

import pytest
from mlplane import adapters
from mlplane.eventlog import Context
from mlplane.kernel import Kernel
from mlplane.settings import Settings

from services.training import events as t
from services.triton_manager.bootstrap import SERVICE
from services.triton_manager.events import checkpoint_model_id
from services.triton_manager.services import SETTINGS, STORE, service
from services.triton_manager.settings import ServingSettings
from services.triton_manager.workers import ImportCheckpoint, ImportWorker

CTX = Context(actor="u1", source="test", space="s1")


@pytest.fixture
async def kernel(tmp_path):
    kernel = Kernel.open(Settings(_env_file=None, home=tmp_path))
    kernel.add_projections(SERVICE.projections())
    kernel.add_commands(SERVICE.commands())
    kernel.add_entities(SERVICE.entities())
    kernel.extensions[STORE] = adapters.artifact_store(kernel.settings.artifacts)
    kernel.extensions[SETTINGS] = ServingSettings(_env_file=None)
    yield kernel
    await kernel.stop()


async def test_a_checkpoint_whose_files_are_gone_is_recorded_as_a_failed_import(kernel):
    created = t.CheckpointCreated(
        checkpoint_id="ck1",
        training_id="tr1",
        space_id="s1",
        name="iris",
        version=1,
        format="joblib",
        uri="file://x",
        key="checkpoints/ck1/iris",
        files={},
    )
    await kernel.log.append("training:tr1", [created], None, CTX)
    model = checkpoint_model_id("ck1")
    await ImportWorker(kernel, service(kernel)).run(ImportCheckpoint("ck1", model))
    (event,) = await kernel.log.read_stream(f"model:{model}")
    assert event.type == "ModelImportFailed" and event.data.checkpoint_id == "ck1"
    assert event.space == "s1"


async def test_an_unknown_checkpoint_is_left_to_the_bus_to_retry(kernel):
    with pytest.raises(LookupError):
        await ImportWorker(kernel, service(kernel)).run(ImportCheckpoint("nope", "m"))
