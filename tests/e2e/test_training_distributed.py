"""The training service as its own process, beside the gateway's, over Kafka and a MongoDB-wire
server (FerretDB): the gateway's process serves the API, the training's process runs the job it
hears of on the bus; the bundle travels through a shared artifact store."""

from __future__ import annotations

import io
import json
import secrets
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from launcher import Platform, new_space
from pymongo import MongoClient

pytestmark = [pytest.mark.kafka, pytest.mark.mongo]
IRIS = Path(__file__).resolve().parents[2] / "examples" / "bundles" / "iris"


@pytest.fixture(scope="module")
def processes(
    tmp_path_factory: pytest.TempPathFactory, mongo_url: str, kafka_bootstrap: str
) -> Iterator[tuple[Platform, Platform]]:
    prefix = f"tr{int(time.time() * 1000) % 10**9}_"
    token = f"mlp_{secrets.token_hex(24)}"
    shared = tmp_path_factory.mktemp("artifacts")
    env = {
        "MLPLANE_ARTIFACTS_URL": f"file://{shared}",
        "MLPLANE_EVENT_STORE_URL": mongo_url,
        "MLPLANE_BUS_URL": f"kafka://{kafka_bootstrap}",
        "MLPLANE_PREFIX": prefix,
        "MLPLANE_ADMIN_TOKEN": token,
        "MLPLANE_TRAINING_LOG_FLUSH_S": "0.1",
    }
    gateway = Platform(Path(tmp_path_factory.mktemp("gateway")), env, service="gateway")
    training = Platform(Path(tmp_path_factory.mktemp("training")), env, service="training")
    gateway.start()
    training.start()
    gateway.admin_token = training.admin_token = token
    yield gateway, training
    training.stop()
    gateway.stop()
    client = MongoClient(mongo_url.rsplit("/", 1)[0], serverSelectionTimeoutMS=5000)
    db = client[mongo_url.rsplit("/", 1)[1] or "mlplane"]
    for name in db.list_collection_names():
        if name.startswith(prefix):
            db.drop_collection(name)
    client.close()


def eventually_final(admin, path: str, timeout: float = 30.0) -> dict:
    """The job as the gateway's read model shows it once the final event has been projected."""
    deadline = time.monotonic() + timeout
    while True:
        info = admin.get(path).json()
        if info["status"] not in ("queued", "building", "running") or time.monotonic() > deadline:
            return info
        time.sleep(0.2)


def test_the_training_process_trains_a_bundle_over_kafka_and_mongodb(processes):
    """Created through the gateway, run by the training process, followed through the gateway."""
    gateway, _training = processes
    with gateway.admin() as admin:
        space = new_space(admin, "distributed-training")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(IRIS, arcname=".")
    with gateway.admin() as admin:
        created = admin.post(f"/train/{space}", content=buffer.getvalue())
        assert created.status_code == 202, created.text
        job = created.json()["id"]
        with admin.stream(
            "GET", f"/train/{space}/{job}/logs", params={"follow": True}, timeout=120
        ) as stream:
            lines = [json.loads(line) for line in stream.iter_lines() if line]
        info = eventually_final(admin, f"/train/{space}/{job}")
    assert info["status"] == "succeeded", (info, lines)
    assert info["models"]["data"][0]["metrics"]["accuracy"] >= 0.9
    assert lines[-1]["text"] == "succeeded"


def test_a_worker_process_serves_no_api_routes(processes):
    _, training = processes
    with training.admin() as admin:
        assert admin.get("/healthz").status_code == 200
        assert admin.get("/api/v1/spaces").status_code == 404
