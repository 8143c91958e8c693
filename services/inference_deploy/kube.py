"""The `kubernetes://` runtime of endpoints: a Deployment and a Service of a Triton image.

Built from the kubernetes client's own model classes (V1Deployment, V1Service, …) and sent with
the space's cluster URL and token. An init container (the mlplane image) copies the model
version from the artifact store into an emptyDir mounted as Triton's model repository at
`/models/<served name>/`; Triton serves it on port 8000 behind a ClusterIP Service. The worker
then polls the Deployment: all replicas available is `EndpointRolledOut` with the Service's URL,
a `ProgressDeadlineExceeded` condition is `EndpointFailed`. Removing the endpoint deletes both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from . import commands as c

log = logging.getLogger("mlplane.deploy.kube")

ClusterLookup = Callable[[str], Awaitable[Any]]
LABEL = "mlplane.io/endpoint-id"
FETCHER_IMAGE = "mlplane:latest"


def resource_name(endpoint_name: str, endpoint_id: str) -> str:
    base = re.sub(r"[^a-z0-9-]", "-", endpoint_name.lower()).strip("-")[:40]
    return f"mlp-{base}-{endpoint_id.replace('-', '')[:8]}"


def api_client(manager_url: str, token: str | None) -> client.ApiClient:
    config = client.Configuration()
    config.host = manager_url.rstrip("/")
    if token:
        config.api_key = {"authorization": token}
        config.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(config)


def build_deployment(
    state,
    *,
    image: str,
    namespace: str,
    artifacts_url: str,
    key: str,
    fetcher_image: str = FETCHER_IMAGE,
) -> client.V1Deployment:
    spec = state.spec
    name = resource_name(state.name, state.id)
    labels = {
        "app.kubernetes.io/managed-by": "mlplane",
        "app.kubernetes.io/name": name,
        LABEL: state.id,
        "mlplane.io/space-id": state.space_id,
        "mlplane.io/revision": str(state.revision),
    }
    selector = {"app.kubernetes.io/name": name, LABEL: state.id}
    resources = spec.get("resources", {})
    quantities = {
        k: str(v)
        for k, v in (
            ("cpu", resources.get("cpu")),
            ("memory", f"{resources['memory_mb']}Mi" if resources.get("memory_mb") else None),
        )
        if v
    }
    limits = {
        **quantities,
        **({"nvidia.com/gpu": str(resources["gpu"])} if resources.get("gpu") else {}),
    }
    repository = client.V1VolumeMount(name="models", mount_path="/models")
    served = spec["served_name"]
    fetch = client.V1Container(
        name="fetch-model",
        image=fetcher_image,
        command=[
            "python",
            "-c",
            (
                "import asyncio, sys; from mlplane.artifacts import open_store; "
                "asyncio.run(open_store(sys.argv[1]).get_tree(sys.argv[2], sys.argv[3]))"
            ),
            artifacts_url,
            key,
            f"/models/{served}",
        ],
        volume_mounts=[repository],
    )
    triton = client.V1Container(
        name="triton",
        image=image,
        args=[
            "tritonserver",
            "--model-repository=/models",
            "--model-control-mode=poll",
            "--strict-readiness=true",
        ],
        ports=[
            client.V1ContainerPort(name="http", container_port=8000),
            client.V1ContainerPort(name="grpc", container_port=8001),
            client.V1ContainerPort(name="metrics", container_port=8002),
        ],
        readiness_probe=client.V1Probe(
            http_get=client.V1HTTPGetAction(path="/v2/health/ready", port="http"), period_seconds=5
        ),
        liveness_probe=client.V1Probe(
            http_get=client.V1HTTPGetAction(path="/v2/health/live", port="http"),
            period_seconds=10,
            failure_threshold=6,
        ),
        resources=client.V1ResourceRequirements(requests=quantities or None, limits=limits or None),
        volume_mounts=[repository],
    )
    pod = client.V1PodSpec(
        init_containers=[fetch],
        containers=[triton],
        automount_service_account_token=False,
        volumes=[client.V1Volume(name="models", empty_dir=client.V1EmptyDirVolumeSource())],
        node_selector=spec.get("selector") or None,
    )
    return client.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=client.V1ObjectMeta(name=name, namespace=namespace, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=int(spec.get("replicas", 1)),
            progress_deadline_seconds=600,
            selector=client.V1LabelSelector(match_labels=selector),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels), spec=pod
            ),
        ),
    )


def build_service(state, *, namespace: str) -> client.V1Service:
    name = resource_name(state.name, state.id)
    return client.V1Service(
        api_version="v1",
        kind="Service",
        metadata=client.V1ObjectMeta(
            name=name,
            namespace=namespace,
            labels={"app.kubernetes.io/managed-by": "mlplane", LABEL: state.id},
        ),
        spec=client.V1ServiceSpec(
            type="ClusterIP",
            selector={"app.kubernetes.io/name": name, LABEL: state.id},
            ports=[client.V1ServicePort(name="http", port=8000, target_port="http")],
        ),
    )


def service_url(state, namespace: str) -> str:
    return f"http://{resource_name(state.name, state.id)}.{namespace}.svc.cluster.local:8000"


class KubernetesEndpoints:
    def __init__(
        self,
        clusters: ClusterLookup,
        *,
        image: str,
        namespace: str,
        artifacts_url: str,
        poll_s: float = 2.0,
    ) -> None:
        self.clusters = clusters
        self.image = image
        self.namespace = namespace
        self.artifacts_url = artifacts_url
        self.poll_s = poll_s
        self.worker = None
        self._watches: dict[str, asyncio.Task] = {}

    async def start(self, worker) -> None:
        self.worker = worker

    def stop(self) -> None:
        for task in self._watches.values():
            task.cancel()

    async def _api(self, space_id: str) -> client.ApiClient:
        cluster = await self.clusters(space_id)
        if cluster is None:
            raise RuntimeError("this space has no cluster registered (POST /api/v1/clusters)")
        from mlplane.egress import InsecureTransport, require_tls_for_secret

        try:  # the token goes over https only, unless an administrator allowed this cluster
            require_tls_for_secret(
                cluster["manager_url"],
                cluster.get("token"),
                bool(cluster.get("allow_insecure_http")),
            )
        except InsecureTransport as exc:
            raise RuntimeError(str(exc)) from None
        api = api_client(cluster["manager_url"], cluster.get("token"))
        self.worker.kernel.settings.egress.guard_pool_manager(api.rest_client.pool_manager)
        return api

    async def _key(self, state) -> str:
        from .projections import MODELS

        model_id = state.spec["model_id"]
        model = await self.worker.kernel.doc(MODELS, model_id, f"model:{model_id}")
        record = (model or {}).get("versions", {}).get(str(state.spec["version"]))
        if record is None:
            raise RuntimeError(f"model {model_id!r} has no version {state.spec['version']} yet")
        return record["key"]

    async def apply(self, state) -> None:
        try:
            api = await self._api(state.space_id)
            deployment = build_deployment(
                state,
                image=self.image,
                namespace=self.namespace,
                artifacts_url=self.artifacts_url,
                key=await self._key(state),
            )
            svc = build_service(state, namespace=self.namespace)
            apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
            await _create_or_replace(
                apps.create_namespaced_deployment,
                apps.replace_namespaced_deployment,
                deployment,
                self.namespace,
            )
            await _create_or_replace(
                core.create_namespaced_service, core.replace_namespaced_service, svc, self.namespace
            )
        except (ApiException, RuntimeError, OSError) as exc:
            reason = f"the cluster refused the endpoint: {getattr(exc, 'status', '')} {getattr(exc, 'reason', exc)}"
            await self.worker.execute(
                c.FailEndpoint(endpoint_id=state.id, reason=reason.strip()), state.space_id
            )
            return
        await self.worker.note(
            state,
            f"applied Deployment and Service {self.namespace}/"
            f"{resource_name(state.name, state.id)}",
        )
        previous = self._watches.pop(state.id, None)
        if previous is not None:
            previous.cancel()
        self._watches[state.id] = asyncio.create_task(self._watch(state, api))

    async def _watch(self, state, api: client.ApiClient) -> None:
        apps = client.AppsV1Api(api)
        name = resource_name(state.name, state.id)
        while True:
            try:
                current = await asyncio.to_thread(
                    apps.read_namespaced_deployment_status, name, self.namespace
                )
            except ApiException as exc:
                log.warning("reading deployment %s failed: %s", name, exc.status)
                await asyncio.sleep(self.poll_s)
                continue
            status = current.status or client.V1DeploymentStatus()
            wanted = int(state.spec.get("replicas", 1))
            failed = [
                cond
                for cond in status.conditions or []
                if cond.reason == "ProgressDeadlineExceeded"
            ]
            if failed:
                await self.worker.execute(
                    c.FailEndpoint(
                        endpoint_id=state.id,
                        reason=failed[0].message or "the rollout did not progress",
                    ),
                    state.space_id,
                )
                return
            if (status.available_replicas or 0) >= wanted and (
                status.updated_replicas or 0
            ) >= wanted:
                await self.worker.execute(
                    c.RollOutEndpoint(
                        endpoint_id=state.id,
                        served_name=state.spec["served_name"],
                        targets=[],
                        url=service_url(state, self.namespace),
                    ),
                    state.space_id,
                )
                await self.worker.note(
                    state, f"rolled out: {status.available_replicas} replica(s) available"
                )
                return
            await asyncio.sleep(self.poll_s)

    async def delete(self, state) -> None:
        task = self._watches.pop(state.id, None)
        if task is not None:
            task.cancel()
        with contextlib.suppress(RuntimeError):
            api = await self._api(state.space_id)
            name = resource_name(state.name, state.id)
            for call in (
                client.AppsV1Api(api).delete_namespaced_deployment,
                client.CoreV1Api(api).delete_namespaced_service,
            ):
                try:
                    await asyncio.to_thread(
                        call, name, self.namespace, propagation_policy="Background"
                    )
                except ApiException as exc:
                    if exc.status != 404:
                        raise


async def _create_or_replace(create, replace, body, namespace: str) -> None:
    try:
        await asyncio.to_thread(create, namespace, body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        await asyncio.to_thread(replace, body.metadata.name, namespace, body)
