"""Trainings on `kubernetes://`: the Job manifest is built from the kubernetes client's own
models, and against a local fake of the API server (no cluster runs here, see kubefake.py) a
training's status and pod logs come back as events, its outputs become checkpoints, and kill
deletes the Job."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from kubefake import FakeApiServer, FakeCluster
from kubernetes import client
from launcher import Platform, new_space

from services.training.adapters.kube import build_job, job_name
from services.training.adapters.runtime import JobSpec

TOKEN = "k8s-bearer-token-not-for-logs"


def test_the_job_manifest_is_a_valid_v1_job_built_from_client_models():
    spec = JobSpec(
        training_id="abc123",
        space_id="s1",
        workdir=Path("/tmp"),
        argv=[],
        timeout_s=600,
        cpu=2,
        memory_mb=4096,
        gpu=1,
        image="registry.local/mlplane-trainer:1",
    )
    job = build_job(
        spec,
        {"source": "architecture", "architecture": "mlp"},
        namespace="ml",
        artifacts_url="s3://models/prod",
    )
    assert isinstance(job, client.V1Job)
    api = client.ApiClient()
    body = api.sanitize_for_serialization(job)
    assert (body["apiVersion"], body["kind"], body["metadata"]["name"]) == (
        "batch/v1",
        "Job",
        job_name("abc123"),
    )
    pod = body["spec"]["template"]["spec"]
    assert body["spec"]["backoffLimit"] == 0 and body["spec"]["activeDeadlineSeconds"] == 600
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    [container] = pod["containers"]
    assert container["resources"]["limits"] == {
        "cpu": "2",
        "memory": "4096Mi",
        "nvidia.com/gpu": "1",
    }
    assert container["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e["value"] for e in container["env"]}
    assert json.loads(env["MLPLANE_TRAINING_SPEC"])["architecture"] == "mlp"
    assert env["MLPLANE_ARTIFACTS_URL"] == "s3://models/prod"
    assert api.deserialize(json.dumps(body), "V1Job", "application/json") == job


def write_outputs(home: Path):
    """What the pod would upload: an ONNX model and its metrics, under trainings/<id>/output/."""
    from mlplane.train import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    onnx = to_onnx(LogisticRegression(max_iter=300).fit(X, y), X[:1]).SerializeToString()

    def on_create(manifest: dict) -> None:
        training_id = manifest["metadata"]["labels"]["mlplane.io/training-id"]
        output = home / "artifacts" / "trainings" / training_id / "output"
        output.mkdir(parents=True, exist_ok=True)
        (output / "pod-model.onnx").write_bytes(onnx)
        (output / "metrics.json").write_text(json.dumps({"accuracy": 0.96}))

    return on_create


@pytest.fixture(scope="module")
def admin(training_platform: Platform):
    with training_platform.admin() as c:
        yield c


def register(admin: httpx.Client, space: str, url: str) -> dict:
    created = admin.post(
        "/api/v1/clusters",
        headers={"X-Space-ID": space},
        json={
            "name": "fake",
            "manager_url": url,
            "ingress_url": "http://ingress.local",
            "token": TOKEN,
            "allow_insecure_http": True,  # the fake API server speaks plain http
        },
    )
    assert created.status_code == 201, created.text
    return created.json()


def wait_status(admin, space, job_id, wanted, timeout=30) -> dict:
    deadline = time.monotonic() + timeout
    while (info := admin.get(f"/train/{space}/{job_id}").json())["status"] not in wanted:
        assert time.monotonic() < deadline, info
        time.sleep(0.1)
    return info


def test_a_kubernetes_training_reports_status_logs_and_checkpoints_as_events(
    training_platform, admin
):
    space = new_space(admin, "k8s")
    cluster = FakeCluster(
        token=TOKEN, succeed_after=4, on_create=write_outputs(training_platform.home)
    )
    with FakeApiServer(cluster) as fake:
        registered = register(admin, space, fake.url)
        assert (
            registered["token"] is None
            and registered["has_token"]
            and TOKEN not in json.dumps(registered)
        )
        status = admin.get("/api/v1/clusters", headers={"X-Space-ID": space}).json()
        assert status["nodes"][0]["name"] == "gpu-node-1" and status["resources"]["gpu"] == 1
        assert status["inference"]["status"] == "ready" and status["token"] is None

        created = admin.post(
            "/api/v1/trainings",
            headers={"X-Space-ID": space},
            json={
                "name": "on k8s",
                "architecture": "mlp",
                "configuration": {"dataset": "iris"},
                "gpu_count": 1,
                "runtime": "kubernetes://",
            },
        ).json()
        info = wait_status(admin, space, created["id"], ("succeeded", "failed"))
        logs = admin.get(f"/train/{space}/{created['id']}/logs").json()["lines"]

    assert info["status"] == "succeeded", (info, logs)
    assert info["job_name"] == job_name(created["id"])
    assert any(line["text"].startswith("epoch 2: loss") for line in logs)
    [checkpoint] = info["checkpoints"]
    assert checkpoint["name"] == "pod-model" and checkpoint["metrics"] == {"accuracy": 0.96}
    [manifest] = [job.manifest for job in cluster.jobs.values()]
    limits = manifest["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    assert {auth for _, _, auth in cluster.requests} == {f"Bearer {TOKEN}"}
    provenance = admin.get(f"/train/{space}/{checkpoint['id']}/provenance").json()
    assert provenance["environment"]["runtime"] == "kubernetes://"


def test_killing_a_kubernetes_training_deletes_its_job(training_platform, admin):
    space = new_space(admin, "k8s-kill")
    cluster = FakeCluster(token=TOKEN, hold=True)
    with FakeApiServer(cluster) as fake:
        register(admin, space, fake.url)
        created = admin.post(
            "/api/v1/trainings",
            headers={"X-Space-ID": space},
            json={
                "name": "held",
                "architecture": "linear",
                "configuration": {},
                "runtime": "kubernetes://",
            },
        ).json()
        wait_status(admin, space, created["id"], ("running",))
        killed = admin.delete(f"/train/{space}/{created['id']}/")
        assert killed.status_code == 200
    deletes = [path for method, path, _ in cluster.requests if method == "DELETE"]
    assert deletes == [
        f"/apis/batch/v1/namespaces/default/jobs/{job_name(created['id'])}?propagationPolicy=Background"
    ]
    assert admin.get(f"/train/{space}/{created['id']}").json()["status"] == "killed"


def test_a_kubernetes_training_without_a_cluster_fails_saying_why(admin):
    space = new_space(admin, "no-cluster")
    created = admin.post(
        "/api/v1/trainings",
        headers={"X-Space-ID": space},
        json={
            "name": "orphan",
            "architecture": "linear",
            "configuration": {},
            "runtime": "kubernetes://",
        },
    ).json()
    info = wait_status(admin, space, created["id"], ("failed",))
    assert "no cluster" in info["reason"]
