"""Serving split across processes, over Kafka and a MongoDB-wire server (FerretDB): the gateway's
process takes uploads, deployments and inference calls; a process running triton_manager and
inference_deploy runs the fleet and rollout workers and the managed MLServer. Model files travel
through a shared artifact store; reads reach the gateway once its projections have caught up, so
the scenario polls for states."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from launcher import Platform, drop_collections, new_space
from serving_helpers import EXPECTED, SAMPLE, iris_models, running, upload, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.mongo]
WORKERS = "triton_manager,inference_deploy"


@pytest.fixture(scope="module")
def processes(
    tmp_path_factory: pytest.TempPathFactory, mongo_url: str, kafka_bootstrap: str
) -> Iterator[tuple[Platform, Platform]]:
    prefix = f"sv{int(time.time() * 1000) % 10**9}_"
    token = f"mlp_{secrets.token_hex(24)}"
    shared = tmp_path_factory.mktemp("artifacts")
    env = {
        "MLPLANE_ARTIFACTS_URL": f"file://{shared}",
        "MLPLANE_EVENT_STORE_URL": mongo_url,
        "MLPLANE_BUS_URL": f"kafka://{kafka_bootstrap}",
        "MLPLANE_PREFIX": prefix,
        "MLPLANE_ADMIN_TOKEN": token,
        "MLPLANE_SERVING_POLL_S": "0.3",
    }
    gateway = Platform(Path(tmp_path_factory.mktemp("gateway")), env, service="gateway")
    serving = Platform(
        Path(tmp_path_factory.mktemp("serving")),
        {**env, "MLPLANE_SERVING_LOCAL_SERVER": "on"},
        service=WORKERS,
    )
    gateway.start()
    try:
        serving.start()
        gateway.admin_token = serving.admin_token = token
        yield gateway, serving
    finally:
        serving.stop()
        gateway.stop()
        drop_collections(mongo_url, prefix)


@pytest.fixture(scope="module")
def setup(processes):
    gateway, _ = processes
    admin = gateway.admin()
    space = new_space(admin, "serving-distributed")
    client = gateway.client(gateway.admin_token, **{"X-Space-ID": space})
    models = iris_models()
    onnx = upload(client, "iris-onnx", "iris.onnx", models["onnx"])
    assert onnx.status_code == 201, onnx.text
    tree = upload(client, "iris-tree", "tree.joblib", models["joblib"])
    assert tree.status_code == 201, tree.text
    return {
        "client": client,
        "space": space,
        "onnx": onnx.json(),
        "tree": tree.json(),
        "models": models,
    }


def triton_of(
    gateway: Platform, space: str
) -> tuple[httpclient.InferenceServerClient, dict[str, str]]:
    headers = {"Authorization": f"Bearer {gateway.admin_token}", "X-Space-ID": space}
    return httpclient.InferenceServerClient(gateway.url.removeprefix("http://")), headers


def test_the_serving_process_registers_its_local_server_with_the_gateway(processes, setup):
    gateway, _ = processes
    assert setup["onnx"]["versions"][0]["platform"] == "onnxruntime_onnx"
    assert {o["name"] for o in setup["tree"]["versions"][0]["outputs"]} == {
        "predict",
        "predict_proba",
    }
    with gateway.admin() as admin:
        managed = wait_for(
            lambda: [s for s in admin.get("/api/tritons").json()["tritons"] if s["managed"]],
            timeout=20,
        )
    assert len(managed) == 1 and managed[0]["kind"] == "mlserver"


def test_an_endpoint_serves_tritonclient_with_json_and_binary_tensors(processes, setup):
    gateway, serving = processes
    client, space = setup["client"], setup["space"]
    deployed = client.post(f"/inference/{space}/{setup['onnx']['id']}", json={"name": "iris"})
    assert deployed.status_code == 201, deployed.text
    wait_for(lambda: running(client, space, "iris"))
    triton, headers = triton_of(gateway, space)
    wait_for(lambda: triton.is_model_ready("iris", headers=headers), timeout=60)
    assert triton.get_model_metadata("iris", headers=headers)["versions"] == ["1"]
    for binary in (False, True):
        tensor = httpclient.InferInput("X", list(SAMPLE.shape), "FP32")
        tensor.set_data_from_numpy(SAMPLE.astype(np.float32), binary_data=binary)
        outputs = [
            httpclient.InferRequestedOutput("label", binary_data=binary),
            httpclient.InferRequestedOutput("probabilities", binary_data=binary),
        ]
        result = triton.infer("iris", [tensor], outputs=outputs, headers=headers)
        assert result.as_numpy("label").ravel().tolist() == EXPECTED.tolist()
        assert result.as_numpy("probabilities").shape == (3, 3)
    triton.close()
    assert (serving.home / "serving" / "mlserver" / "mlserver.pid").is_file()
    assert not (gateway.home / "serving" / "mlserver").exists()


def test_a_joblib_model_serves_predictions_and_probabilities(processes, setup):
    gateway, _ = processes
    client, space = setup["client"], setup["space"]
    deployed = client.post(f"/inference/{space}/{setup['tree']['id']}?name=tree")
    assert deployed.status_code == 201, deployed.text
    wait_for(lambda: running(client, space, "tree"))
    triton, headers = triton_of(gateway, space)
    for binary in (False, True):
        tensor = httpclient.InferInput("input-0", list(SAMPLE.shape), "FP64")
        tensor.set_data_from_numpy(SAMPLE, binary_data=binary)
        result = triton.infer(
            "tree",
            [tensor],
            headers=headers,
            outputs=[
                httpclient.InferRequestedOutput("predict", binary_data=binary),
                httpclient.InferRequestedOutput("predict_proba", binary_data=binary),
            ],
        )
        assert result.as_numpy("predict").ravel().tolist() == EXPECTED.tolist()
        assert np.allclose(result.as_numpy("predict_proba").sum(axis=1), 1.0)
    triton.close()


def test_configuration_changes_are_revisions_and_rollback_restores_one(processes, setup):
    client, space = setup["client"], setup["space"]
    model_id = setup["onnx"]["id"]
    again = client.post(
        f"/api/models/{model_id}/versions",
        files=[("Files[]", ("iris.onnx", setup["models"]["onnx"]))],
    )
    assert again.status_code == 201 and again.json()["version"] == "2", again.text
    assert (
        client.post(
            f"/inference/{space}/{model_id}", json={"name": "revised", "version": 1}
        ).status_code
        == 201
    )
    first = wait_for(lambda: running(client, space, "revised"))
    changed = client.patch(
        f"/inference/{space}/revised", json={"version": 2, "replicas": 1, "resources": {"cpu": 1}}
    )
    assert changed.status_code == 200 and changed.json()["revision"] == 2, changed.text
    wait_for(lambda: (e := running(client, space, "revised")) and e["version"] == 2 and e)
    rolled = client.post(f"/inference/{space}/revised/rollback", json={"revision": "1"})
    assert rolled.status_code == 200 and rolled.json()["revision"] == 3, rolled.text
    wait_for(lambda: (e := running(client, space, "revised")) and e["version"] == 1 and e)
    base = f"/api/v1/workloads/inferences/{first['id']}/revisions"
    assert client.get(f"{base}/count").json() == {"count": 3}
    settled = lambda: (r := client.get(base).json()["data"])[2]["phase"] == "Running" and r
    revisions = wait_for(settled, timeout=90)
    assert [r["revision"] for r in revisions] == [1, 2, 3]
    assert (
        revisions[2]["spec"] == revisions[0]["spec"]
        and revisions[2]["rollbackOf"] == revisions[0]["id"]
    )
    assert revisions[0]["phase"] == "Replaced" and revisions[1]["spec"]["version"] == 2
    wait_for(
        lambda: "revision 3" in client.get("/inference/revised/logs").json()["logs"], timeout=20
    )
    triton, headers = triton_of(processes[0], space)
    tensor = httpclient.InferInput("X", list(SAMPLE.shape), "FP32")
    tensor.set_data_from_numpy(SAMPLE.astype(np.float32), binary_data=True)
    result = triton.infer("revised", [tensor], headers=headers)
    assert result.as_numpy("label").ravel().tolist() == EXPECTED.tolist()
    triton.close()
    assert client.delete("/endpoint/revised").status_code == 200
    assert client.get(f"{base}/count?deleted=true").json() == {"count": 3}
    assert not any(e["name"] == "revised" for e in client.get(f"/inference/{space}").json()["data"])
    assert client.get(f"/inference/{space}/revised/provenance").status_code == 404
