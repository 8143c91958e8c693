"""The training service's use cases, without HTTP: against a kernel on SQLite in a temporary
folder, with a stand-in for this process's runner (no job runs)."""

from __future__ import annotations

import pytest
from mlplane import adapters
from mlplane.errors import Invalid
from mlplane.eventlog import Context
from mlplane.history import entity_history
from mlplane.kernel import Kernel
from mlplane.settings import Settings

from services.training import commands as c
from services.training.bootstrap import SERVICE
from services.training.bundles import EMPTY, Ingested, Manifest
from services.training.projections import BUNDLES, TRAININGS
from services.training.services import (
    SETTINGS,
    STORE,
    WORKER,
    create_training,
    stop_training,
    train_bundle,
    training_service,
)
from services.training.settings import TrainingSettings

CTX = Context(actor="u1", source="test")
SECRET, TOKEN = "s3-secret-canary-9f2c", "cluster-token-canary-7a1d"


class Runner:
    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.halted: list[str] = []

    def submit(self, training_id: str) -> None:
        self.submitted.append(training_id)

    async def halt(self, training_id: str) -> bool:
        self.halted.append(training_id)
        return True

    def inspect(self) -> dict:
        return {}


@pytest.fixture
async def kernel(tmp_path):
    kernel = Kernel.open(Settings(_env_file=None, home=tmp_path))
    kernel.add_projections(SERVICE.projections())
    kernel.add_commands(SERVICE.commands())
    kernel.add_entities(SERVICE.entities())
    kernel.extensions[STORE] = adapters.artifact_store(kernel.settings.artifacts)
    kernel.extensions[SETTINGS] = TrainingSettings(_env_file=None)
    kernel.extensions[WORKER] = Runner()
    yield kernel
    await kernel.stop()


async def test_a_training_of_a_builtin_architecture_is_queued_and_handed_to_the_runner(kernel):
    training = training_service(kernel)
    tid = await create_training(
        training, CTX, "s1", name="iris", source="architecture", architecture="ridge"
    )
    doc = await kernel.docs.get(TRAININGS, tid)
    assert doc["status"] == "queued" and doc["space_id"] == "s1"
    assert doc["runtime"] == "local://" and doc["created_by"] == "u1"
    assert training.runner.submitted == [tid]


async def test_an_unknown_architecture_or_a_gpu_on_the_local_runtime_records_nothing(kernel):
    training = training_service(kernel)
    with pytest.raises(Invalid, match="unknown architecture"):
        await create_training(
            training, CTX, "s1", name="x", source="architecture", architecture="gpt"
        )
    with pytest.raises(Invalid, match="no GPU"):
        await create_training(
            training, CTX, "s1", name="x", source="architecture", architecture="mlp", gpu_count=1
        )
    assert await kernel.log.read_all() == [] and training.runner.submitted == []


async def test_a_bundle_is_recorded_then_a_training_naming_it(kernel):
    manifest = Manifest(name="churn", entrypoint="train.py", parameters={"lr": 0.1})
    ingested = Ingested(manifest, "c" * 64, EMPTY, "p" * 64, "b" * 64, "a" * 64, 3, 120)
    training = training_service(kernel)
    tid = await train_bundle(training, CTX, "s1", ingested, name=None, runtime=None, owner="u2")
    doc = await kernel.docs.get(TRAININGS, tid)
    assert doc["name"] == "churn" and doc["source"] == "bundle" and doc["owner"] == "u2"
    bundle = await kernel.docs.get(BUNDLES, doc["bundle_id"])
    assert bundle["code_hash"] == "c" * 64 and bundle["space_id"] == "s1"
    assert doc["parameters"] == {"lr": 0.1} and doc["code_hash"] == bundle["code_hash"]


async def test_killing_a_training_records_it_and_stops_its_job_here(kernel):
    training = training_service(kernel)
    tid = await create_training(
        training, CTX, "s1", name="iris", source="architecture", architecture="mlp"
    )
    await stop_training(training, c.KillTraining(training_id=tid, reason="enough"), CTX, "s1")
    doc = await kernel.docs.get(TRAININGS, tid)
    assert doc["status"] == "killed" and doc["reason"] == "enough"
    assert training.runner.halted == [tid]


async def test_no_credential_or_token_appears_in_a_connector_or_cluster_history(kernel):
    space = Context(space="s1", actor="u1", source="test")
    await kernel.execute(
        c.CreateConnector(
            connector_id="k1",
            space_id="s1",
            name="lake",
            type="aws-s3",
            config={"bucket": "b"},
            credentials={"access_key_id": "AKIA", "secret_access_key": SECRET},
        ),
        space,
    )
    await kernel.execute(
        c.RegisterCluster(
            space_id="s1",
            cluster_id="cl1",
            name="gpu",
            manager_url="https://k8s.example",
            ingress_url="https://in.example",
            token=TOKEN,
        ),
        space,
    )
    await kernel.execute(c.UpdateCluster(space_id="s1", token=TOKEN + "-rotated"), space)
    for kind, entity in (("connector", "k1"), ("cluster", "s1")):
        page = await entity_history(kernel.log, kernel.entities[kind], entity)
        answer = page.model_dump_json()
        assert page.count >= 1 and SECRET not in answer and TOKEN not in answer, answer
        assert "AKIA" not in answer
