"""From a source bundle to predictions: the iris bundle trains into a checkpoint, the checkpoint
is deployed as an endpoint (the serving context imports it as a model version) and answers the
Open Inference Protocol; the checkpoint's provenance then names the version and the endpoint."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

from launcher import new_space

IRIS = Path(__file__).resolve().parents[2] / "examples" / "bundles" / "iris"
ROWS = [[5.1, 3.5, 1.4, 0.2], [5.7, 2.8, 4.1, 1.3], [7.7, 3.0, 6.1, 2.3]]


def until(predicate, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


def test_a_trained_checkpoint_deploys_and_predicts(serving_platform):
    with serving_platform.admin() as admin:
        space = new_space(admin, "train-to-serve")
    client = serving_platform.client(serving_platform.admin_token, **{"X-Space-ID": space})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(IRIS, arcname=".")
    job = client.post(f"/train/{space}", content=buffer.getvalue()).json()
    info = until(
        lambda: (
            (i := client.get(f"/train/{space}/{job['id']}").json())["status"]
            in ("succeeded", "failed")
            and i
        )
    )
    assert info["status"] == "succeeded", info
    checkpoint = info["models"]["data"][0]["id"]

    deployed = client.post(f"/inference/{space}/{checkpoint}", json={"name": "iris-trained"})
    assert deployed.status_code == 201, deployed.text
    until(
        lambda: any(
            e["name"] == "iris-trained" and e["phase"] == "running"
            for e in client.get(f"/inference/{space}").json()["data"]
        )
    )
    answer = client.post(
        "/v2/models/iris-trained/infer",
        json={
            "inputs": [
                {
                    "name": "X",
                    "shape": [3, 4],
                    "datatype": "FP32",
                    "data": [x for row in ROWS for x in row],
                }
            ]
        },
    )
    assert answer.status_code == 200, answer.text
    label = next(o for o in answer.json()["outputs"] if o["name"] == "label")
    assert label["data"] == [0, 1, 2]

    provenance = client.get(f"/train/{space}/{checkpoint}/provenance").json()
    assert {"ModelVersionAdded", "EndpointDeployed"} <= {u["type"] for u in provenance["used_by"]}
    client.close()
