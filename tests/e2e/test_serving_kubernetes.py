"""Endpoints on `kubernetes://`: the Deployment and Service are built from the kubernetes
client's own models, and against a local fake of the API server (no cluster runs here, see
kubefake.py) the rollout state comes back as events and removal deletes both objects."""

from __future__ import annotations

import io
import json

import joblib
from kubefake import FakeApiServer, FakeCluster
from kubernetes import client
from launcher import new_space
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from test_serving import wait_for

from services.inference_deploy.handlers import EndpointState
from services.inference_deploy.kube import build_deployment, build_service, resource_name

TOKEN = "k8s-endpoint-token"


def state(**spec) -> EndpointState:
    base = {
        "model_id": "m1",
        "version": 3,
        "served_name": "mlp-m1-3",
        "replicas": 2,
        "selector": {"gpu": "a100"},
        "resources": {"cpu": 2, "memory_mb": 2048, "gpu": 1},
        "runtime": "kubernetes://",
    }
    return EndpointState(
        id="0f4c2a56-1111-2222-3333-444455556666",
        space_id="s1",
        name="fraud",
        revision=2,
        spec={**base, **spec},
    )


def test_the_deployment_and_service_are_valid_client_objects():
    api = client.ApiClient()
    deployment = build_deployment(
        state(),
        image="nvcr.io/nvidia/tritonserver:24.08-py3",
        namespace="ml",
        artifacts_url="s3://models",
        key="models/m1/v3/fraud",
    )
    body = api.sanitize_for_serialization(deployment)
    assert (body["apiVersion"], body["kind"]) == ("apps/v1", "Deployment")
    assert (
        body["metadata"]["name"] == resource_name("fraud", state().id)
        and body["spec"]["replicas"] == 2
    )
    pod = body["spec"]["template"]["spec"]
    [triton] = pod["containers"]
    assert triton["resources"]["limits"] == {"cpu": "2", "memory": "2048Mi", "nvidia.com/gpu": "1"}
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert pod["initContainers"][0]["command"][-1] == "/models/mlp-m1-3" and pod[
        "nodeSelector"
    ] == {"gpu": "a100"}
    assert api.deserialize(json.dumps(body), "V1Deployment", "application/json") == deployment
    service = api.sanitize_for_serialization(build_service(state(), namespace="ml"))
    assert service["spec"]["selector"] == body["spec"]["selector"]["matchLabels"]
    assert api.deserialize(json.dumps(service), "V1Service", "application/json") == build_service(
        state(), namespace="ml"
    )


def test_a_kubernetes_endpoint_rolls_out_and_is_removed(serving_platform):
    admin = serving_platform.admin()
    space = new_space(admin, "k8s-serving")
    headers = {"X-Space-ID": space}
    X, y = load_iris(return_X_y=True)
    buffer = io.BytesIO()
    joblib.dump(LogisticRegression(max_iter=300).fit(X, y), buffer)
    model = admin.post(
        "/api/models",
        headers=headers,
        data={"name": "k8s-iris"},
        files=[("files[]", ("m.joblib", buffer.getvalue()))],
    )
    assert model.status_code == 201, model.text
    cluster = FakeCluster(token=TOKEN, succeed_after=3)
    with FakeApiServer(cluster) as fake:
        registered = admin.post(
            "/api/v1/clusters",
            headers=headers,
            json={
                "name": "fake",
                "manager_url": fake.url,
                "ingress_url": "http://ingress.local",
                "token": TOKEN,
                "allow_insecure_http": True,
            },
        )  # the fake API server speaks plain http
        assert registered.status_code == 201, registered.text
        deployed = admin.post(
            f"/inference/{space}/{model.json()['id']}",
            headers=headers,
            json={"name": "on-k8s", "runtime": "kubernetes://", "replicas": 2},
        )
        assert deployed.status_code == 201, deployed.text
        endpoint = wait_for(
            lambda: (
                (e := admin.get(f"/inference/{space}", headers=headers).json()["data"][0])["phase"]
                == "running"
                and e
            ),
            timeout=30,
        )
        assert endpoint["url"].endswith(".svc.cluster.local:8000")
        [name] = cluster.deployments
        assert (
            cluster.deployments[name].manifest["spec"]["replicas"] == 2 and name in cluster.services
        )
        assert all(auth == f"Bearer {TOKEN}" for _, _, auth in cluster.requests)
        logs = admin.get("/inference/on-k8s/logs", headers=headers).json()["logs"]
        assert "applied Deployment and Service" in logs and "rolled out" in logs
        assert admin.delete("/endpoint/on-k8s", headers=headers).status_code == 200
        wait_for(lambda: not cluster.deployments and not cluster.services, timeout=60)
