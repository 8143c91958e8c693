"""The endpoint use cases, without HTTP: against a kernel on SQLite in a temporary folder. The
registry's and training's events are appended as those contexts would; this context learns
them only from its own projections of them."""

from __future__ import annotations

import pytest
from mlplane.errors import NotFound
from mlplane.eventlog import Context
from mlplane.history import AsOf, document_at, entity_history
from mlplane.kernel import Kernel
from mlplane.settings import Settings

from services.inference_deploy import services
from services.inference_deploy.bootstrap import ENDPOINT_KIND, SERVICE
from services.inference_deploy.schemas import EndpointCreate, EndpointUpdate
from services.training import events as t
from services.triton_manager import events as m

CTX = Context(actor="u1", source="test", space="s1")


@pytest.fixture
async def kernel(tmp_path):
    kernel = Kernel.open(Settings(_env_file=None, home=tmp_path))
    kernel.add_projections(SERVICE.projections())
    kernel.add_commands(SERVICE.commands())
    kernel.add_entities(SERVICE.entities())
    yield kernel
    await kernel.stop()


async def register(kernel: Kernel, model_id: str = "m1", versions: int = 2) -> None:
    events = [m.ModelCreated(model_id=model_id, space_id="s1", name="Iris Net")]
    events += [
        m.ModelVersionAdded(
            model_id=model_id,
            version=v,
            format="onnx",
            key=f"models/{model_id}/v{v}",
            files={"config.pbtxt": "0" * 64},
            size=1,
            config={},
        )
        for v in range(1, versions + 1)
    ]
    await kernel.log.append(f"model:{model_id}", events, None, CTX)


async def test_an_endpoint_of_a_model_serves_its_latest_version_under_its_served_name(kernel):
    await register(kernel)
    public = await services.deploy(kernel, CTX, "s1", "m1", EndpointCreate(), "u1", "local://")
    assert (public.name, public.version, public.phase) == ("iris-net", 2, "pending")
    doc = await services.endpoint_doc(kernel, "s1", "iris-net")
    assert doc["spec"]["served_name"] == m.served_name("m1", 2)


async def test_a_model_of_another_space_or_an_unknown_version_is_not_found(kernel):
    await register(kernel)
    with pytest.raises(NotFound):
        await services.deploy(kernel, CTX, "s2", "m1", EndpointCreate(), "u1", "local://")
    with pytest.raises(NotFound, match="no version 7"):
        await services.deploy(kernel, CTX, "s1", "m1", EndpointCreate(version=7), "u", "local://")


async def test_an_unregistered_checkpoint_is_deployed_as_the_model_it_will_become(kernel):
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
        provenance={"bundle_id": "b1", "entrypoint": "train.py", "training_name": "t"},
    )
    await kernel.log.append("training:tr1", [created], None, CTX)
    body = EndpointCreate(name="from-ck")
    public = await services.deploy(kernel, CTX, "s1", "ck1", body, "u1", "local://")
    assert public.model_id == m.checkpoint_model_id("ck1") and public.checkpoint_id == "ck1"
    graph = (await services.provenance(kernel, "s1", "from-ck")).graph
    ids = {n.id for n in graph.nodes}
    assert {"checkpoint:ck1", "training:tr1", "bundle:b1"} <= ids
    assert all(e.from_ in ids and e.to in ids for e in graph.edges)


async def test_a_version_change_is_a_revision_kept_in_the_endpoints_history(kernel):
    await register(kernel)
    await services.deploy(kernel, CTX, "s1", "m1", EndpointCreate(name="e"), "u1", "local://")
    changed = await services.reconfigure(kernel, CTX, "s1", "e", EndpointUpdate(version=1))
    assert (changed.version, changed.revision) == (1, 2)
    kind = kernel.entities[ENDPOINT_KIND]
    first = await document_at(kernel.log, kind, changed.id, AsOf(version=1))
    assert first["spec"]["version"] == 2
    history = await entity_history(kernel.log, kind, changed.id)
    assert [c.type for c in history.data] == ["EndpointDeployed", "EndpointReconfigured"]
