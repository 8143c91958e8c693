"""From model files to predictions, embedded: register ONNX and scikit-learn models, the managed
MLServer serves them, endpoints with revisions and rollback, and tritonclient — JSON and binary
tensors — against the gateway's data plane, unchanged."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import tritonclient.http as httpclient
from launcher import new_space
from serving_helpers import EXPECTED, SAMPLE, iris_models, running, upload, wait_for


@pytest.fixture(scope="module")
def models() -> dict[str, bytes]:
    return iris_models()


@pytest.fixture(scope="module")
def setup(serving_platform, models):
    admin = serving_platform.admin()
    space = new_space(admin, "serving")
    client = serving_platform.client(serving_platform.admin_token, **{"X-Space-ID": space})
    onnx = upload(client, "iris-onnx", "iris.onnx", models["onnx"])
    assert onnx.status_code == 201, onnx.text
    tree = upload(client, "iris-tree", "tree.joblib", models["joblib"])
    assert tree.status_code == 201, tree.text
    return {"client": client, "space": space, "onnx": onnx.json(), "tree": tree.json()}


def test_registry_infers_the_config_of_onnx_and_joblib_models(setup):
    onnx, tree = setup["onnx"], setup["tree"]
    assert onnx["latest_version"] == "1" and onnx["versions"][0]["platform"] == "onnxruntime_onnx"
    assert [i["name"] for i in onnx["versions"][0]["inputs"]] == ["X"]
    assert {o["name"] for o in onnx["versions"][0]["outputs"]} == {"label", "probabilities"}
    assert set(onnx["versions"][0]["files"]) == {"config.pbtxt", "1/model.onnx"}
    joblib_version = tree["versions"][0]
    assert joblib_version["inputs"] == [
        {"name": "input-0", "datatype": "TYPE_FP64", "dims": [-1, 4]}
    ]
    assert {o["name"]: o["dims"] for o in joblib_version["outputs"]} == {
        "predict": [-1],
        "predict_proba": [-1, 3],
    }


def test_uploads_that_cannot_be_served_are_refused_by_field(setup):
    client = setup["client"]
    nameless = client.post("/api/models", files=[("files[]", ("m.onnx", b"x"))])
    assert nameless.status_code == 422 and nameless.json()["field"] == "name"
    corrupt = upload(client, "broken", "broken.onnx", b"not an onnx graph")
    assert corrupt.status_code == 422 and "ONNX" in corrupt.json()["detail"]
    opaque = upload(client, "opaque", "model.pt", b"\x00" * 16)
    assert opaque.status_code == 422 and opaque.json()["field"] == "config.pbtxt"
    config = b'name: "x"\ninput [ { name: "a" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
    partial = client.post(
        "/api/models",
        data={"name": "partial"},
        files=[("files[]", ("config.pbtxt", config)), ("files[]", ("1/model.pt", b"\x00"))],
    )
    assert partial.status_code == 422, partial.text
    assert (
        partial.json()["field"] == "config.pbtxt.platform"
        and "'platform'" in partial.json()["detail"]
    )
    names = [m["name"] for m in client.get("/api/models").json()["models"]]
    assert not {"broken", "opaque", "partial"} & set(names)


def test_an_endpoint_serves_tritonclient_with_json_and_binary_tensors(serving_platform, setup):
    client, space = setup["client"], setup["space"]
    deployed = client.post(f"/inference/{space}/{setup['onnx']['id']}", json={"name": "iris"})
    assert deployed.status_code == 201, deployed.text
    wait_for(lambda: running(client, space, "iris"))
    triton = httpclient.InferenceServerClient(serving_platform.url.removeprefix("http://"))
    headers = {"Authorization": f"Bearer {serving_platform.admin_token}", "X-Space-ID": space}
    assert triton.is_model_ready("iris", headers=headers)
    meta = triton.get_model_metadata("iris", headers=headers)
    assert meta["name"] == "iris" and meta["versions"] == ["1"]
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
    default = triton.infer("iris", [tensor], headers=headers, model_version="1")
    assert default.as_numpy("label").ravel().tolist() == EXPECTED.tolist()
    triton.close()


def test_a_joblib_model_serves_predictions_and_probabilities(serving_platform, setup):
    client, space = setup["client"], setup["space"]
    deployed = client.post(f"/inference/{space}/{setup['tree']['id']}?name=tree")
    assert deployed.status_code == 201, deployed.text
    wait_for(lambda: running(client, space, "tree"))
    triton = httpclient.InferenceServerClient(serving_platform.url.removeprefix("http://"))
    headers = {"Authorization": f"Bearer {serving_platform.admin_token}", "X-Space-ID": space}
    tensor = httpclient.InferInput("input-0", list(SAMPLE.shape), "FP64")
    tensor.set_data_from_numpy(SAMPLE, binary_data=True)
    result = triton.infer(
        "tree",
        [tensor],
        headers=headers,
        outputs=[
            httpclient.InferRequestedOutput("predict", binary_data=True),
            httpclient.InferRequestedOutput("predict_proba", binary_data=False),
        ],
    )
    assert result.as_numpy("predict").ravel().tolist() == EXPECTED.tolist()
    assert np.allclose(result.as_numpy("predict_proba").sum(axis=1), 1.0)
    triton.close()


def test_configuration_changes_are_revisions_and_rollback_restores_one(
    serving_platform, setup, models
):
    client, space = setup["client"], setup["space"]
    model_id = setup["onnx"]["id"]
    again = client.post(
        f"/api/models/{model_id}/versions", files=[("Files[]", ("iris.onnx", models["onnx"]))]
    )
    assert again.status_code == 201 and again.json()["version"] == "2", again.text
    client.post(f"/inference/{space}/{model_id}", json={"name": "revised", "version": 1})
    first = wait_for(lambda: running(client, space, "revised"))
    changed = client.patch(
        f"/inference/{space}/revised", json={"version": 2, "replicas": 1, "resources": {"cpu": 1}}
    )
    assert changed.status_code == 200 and changed.json()["revision"] == 2, changed.text
    wait_for(lambda: (e := running(client, space, "revised")) and e["version"] == 2 and e)
    rolled = client.post(f"/inference/{space}/revised/rollback", json={"revision": "1"})
    assert rolled.status_code == 200 and rolled.json()["revision"] == 3, rolled.text
    wait_for(lambda: (e := running(client, space, "revised")) and e["version"] == 1 and e)
    workload = first["id"]
    base = f"/api/v1/workloads/inferences/{workload}/revisions"
    assert client.get(f"{base}/count").json() == {"count": 3}
    revisions = client.get(base).json()["data"]
    assert [r["revision"] for r in revisions] == [1, 2, 3]
    assert (
        revisions[2]["spec"] == revisions[0]["spec"]
        and revisions[2]["rollbackOf"] == revisions[0]["id"]
    )
    assert revisions[2]["phase"] == "Running" and revisions[0]["phase"] == "Replaced"
    one = client.get(f"/api/v1/workloads/inferences/revisions/{revisions[1]['id']}").json()
    assert (
        one["workloadId"] == workload and one["spec"]["version"] == 2 and one["projectId"] == space
    )
    build = client.get(f"/inference/{space}/build/{revisions[1]['id']}/logs").json()
    assert "revision 2" in build["logs"]
    logs = client.get("/inference/revised/logs").json()["logs"]
    assert "revision 1" in logs and "revision 3" in logs
    provenance = client.get(f"/inference/{space}/revised/provenance").json()
    assert provenance["model_version"]["version"] == 1 and provenance["servers"]
    assert {n["type"] for n in provenance["graph"]["nodes"]} >= {
        "endpoint",
        "model_version",
        "server",
    }
    removed = client.delete("/endpoint/revised")
    assert removed.status_code == 200
    assert client.get(f"{base}/count?deleted=true").json() == {"count": 3}
    assert client.get(f"/inference/{space}/revised/provenance").status_code == 404


def test_another_space_cannot_see_or_call_an_endpoint(serving_platform, setup):
    admin = serving_platform.admin()
    other = new_space(admin, "elsewhere")
    client = serving_platform.client(serving_platform.admin_token, **{"X-Space-ID": other})
    assert client.get(f"/api/models/{setup['onnx']['id']}").status_code == 404
    body = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    answer = client.post("/v2/models/iris/infer", json=body)
    assert (
        answer.status_code == 404 and answer.headers["content-type"] == "application/problem+json"
    )


def test_the_fleet_shows_the_local_server_and_no_drift(serving_platform, setup):
    admin = serving_platform.admin()
    servers = admin.get("/api/tritons").json()["tritons"]
    local = next(s for s in servers if s["managed"])
    assert local["kind"] == "mlserver" and local["state"] == "ready"
    settled = lambda: (
        (d := admin.get(f"/api/tritons/{local['id']}").json())["drift"]
        == {
            "missing": [],
            "unexpected": [],
        }
        and d
    )
    detail = wait_for(settled, timeout=90)
    assert set(detail["desired"]) <= set(detail["observed"]["loaded"])


def test_a_killed_model_server_answers_503_then_is_reloaded_and_serves_again(
    serving_platform, setup
):
    client = setup["client"]
    admin = serving_platform.admin()
    local = next(s for s in admin.get("/api/tritons").json()["tritons"] if s["managed"])
    body = {
        "inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": SAMPLE[0].tolist()}]
    }
    assert client.post("/v2/models/iris/infer", json=body).status_code == 200
    pid = int((serving_platform.home / "serving" / "mlserver" / "mlserver.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    down = wait_for(
        lambda: (r := client.post("/v2/models/iris/infer", json=body)).status_code == 503 and r,
        timeout=20,
        every=0.05,
    )
    assert down.headers["content-type"] == "application/problem+json" and down.json()["error"]
    wait_for(
        lambda: client.post("/v2/models/iris/infer", json=body).status_code == 200, timeout=180
    )
    events = serving_platform.cli("events", "tail", "--json")
    kinds = [
        json.loads(line)["type"]
        for line in events.stdout.splitlines()
        if line.startswith("{") and local["id"] in line
    ]
    assert "ServerHealthChanged" in kinds and "ModelVersionLoaded" in kinds, events.stdout[-2000:]
