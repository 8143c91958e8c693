"""The `kubernetes://` runtime: a training becomes a Kubernetes Job in its space's cluster.

The Job is built from the kubernetes client's own model classes (V1Job, V1PodSpec, …) and sent
through its BatchV1Api with the cluster's manager URL and token (decrypted only in memory, from
the cluster's event stream). The runner then polls the Job: the pod running is TrainingStarted,
its log lines become log events, and the Job's success or failure ends the training. The pod
runs `python -m services.training.adapters.pod`, which fetches the bundle from the artifact store (an
`s3://` store the cluster can reach), runs it, and uploads what it left under
`trainings/<id>/output/`, from which the runner lays out checkpoints as for a local job.
Kill deletes the Job (and its pods, by background propagation).

Every client is built by `api_client`: it refuses to send a token to an http:// manager URL
unless an administrator allowed that for the cluster (`allow_insecure_http`), and checks each
connection it opens against the outbound-address policy (`mlplane.egress`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from mlplane.egress import Egress, InsecureTransport, blocked_cause, require_tls_for_secret

from ..connectors import BLOCKED, CREDENTIALS_REJECTED, READY, REFUSED, UNREACHABLE
from .runtime import Exit, JobHooks, JobSpec, Runtime

ClusterLookup = Callable[[str], Awaitable[Any]]
"""space id -> ClusterState (with its token), or None."""

LABEL = "mlplane.io/training-id"
log = logging.getLogger("mlplane.training.kube")


def job_name(training_id: str) -> str:
    return f"mlplane-train-{re.sub(r'[^a-z0-9]', '', training_id.lower())[:40]}"


def api_client(
    manager_url: str, token: str | None, *, egress: Egress, allow_insecure_http: bool = False
) -> client.ApiClient:
    """A client of the cluster's API whose connections `egress` checks; InsecureTransport if
    the token would go over plain http without an administrator's leave."""
    require_tls_for_secret(manager_url, token, allow_insecure_http)
    config = client.Configuration()
    config.host = manager_url.rstrip("/")
    if token:
        config.api_key = {"authorization": token}
        config.api_key_prefix = {"authorization": "Bearer"}
    api = client.ApiClient(config)
    egress.guard_pool_manager(api.rest_client.pool_manager)
    return api


def cluster_client(cluster: Any, egress: Egress) -> client.ApiClient:
    """The client of a cluster as its stream holds it (a ClusterState)."""
    return api_client(
        cluster.manager_url,
        cluster.token,
        egress=egress,
        allow_insecure_http=cluster.allow_insecure_http,
    )


def build_job(
    job: JobSpec, spec: dict[str, Any], *, namespace: str, artifacts_url: str
) -> client.V1Job:
    """The Job of a training, as the client's model objects."""
    name = job_name(job.training_id)
    labels = {
        "app.kubernetes.io/managed-by": "mlplane",
        LABEL: job.training_id,
        "mlplane.io/space-id": job.space_id,
    }
    quantities = {"cpu": f"{job.cpu:g}", "memory": f"{job.memory_mb}Mi"}
    limits = {**quantities, **({"nvidia.com/gpu": str(job.gpu)} if job.gpu else {})}
    env = [
        client.V1EnvVar(name="MLPLANE_TRAINING_ID", value=job.training_id),
        client.V1EnvVar(name="MLPLANE_ARTIFACTS_URL", value=artifacts_url),
        client.V1EnvVar(name="MLPLANE_TRAINING_SPEC", value=json.dumps(spec, sort_keys=True)),
    ]
    container = client.V1Container(
        name="train",
        image=job.image,
        command=["python", "-m", "services.training.adapters.pod"],
        env=env,
        resources=client.V1ResourceRequirements(requests=quantities, limits=limits),
        security_context=client.V1SecurityContext(
            allow_privilege_escalation=False, run_as_non_root=True, run_as_user=1000
        ),
    )
    pod = client.V1PodSpec(
        restart_policy="Never", containers=[container], automount_service_account_token=False
    )
    return client.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=client.V1ObjectMeta(name=name, namespace=namespace, labels=labels),
        spec=client.V1JobSpec(
            backoff_limit=0,
            active_deadline_seconds=int(job.timeout_s),
            ttl_seconds_after_finished=86400,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels), spec=pod
            ),
        ),
    )


class KubernetesRuntime(Runtime):
    scheme = "kubernetes://"

    def __init__(
        self,
        clusters: ClusterLookup,
        specs: Callable[[str], Awaitable[dict[str, Any]]],
        *,
        namespace: str,
        artifacts_url: str,
        egress: Egress,
        poll_s: float = 2.0,
    ) -> None:
        self.clusters = clusters
        self.specs = specs
        self.egress = egress
        self.namespace = namespace
        self.artifacts_url = artifacts_url
        self.poll_s = poll_s
        self._active: dict[str, tuple[client.ApiClient, str]] = {}

    async def _client(self, space_id: str) -> client.ApiClient:
        cluster = await self.clusters(space_id)
        if cluster is None or not cluster.live:
            raise RuntimeError("this space has no cluster registered (POST /api/v1/clusters)")
        try:
            return cluster_client(cluster, self.egress)
        except InsecureTransport as exc:
            raise RuntimeError(str(exc)) from None

    async def run(self, job: JobSpec, hooks: JobHooks) -> Exit:
        api = await self._client(job.space_id)
        name = job_name(job.training_id)
        batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
        manifest = build_job(
            job,
            await self.specs(job.training_id),
            namespace=self.namespace,
            artifacts_url=self.artifacts_url,
        )
        try:
            await asyncio.to_thread(batch.create_namespaced_job, self.namespace, manifest)
            await hooks.line("runner", f"created Kubernetes job {self.namespace}/{name}")
        except ApiException as exc:
            if exc.status != 409:
                raise RuntimeError(
                    f"the cluster refused the job: {exc.status} {exc.reason}"
                ) from None
        self._active[job.training_id] = (api, name)
        try:
            return await self._watch(job, hooks, batch, core, name)
        finally:
            self._active.pop(job.training_id, None)

    async def _watch(self, job: JobSpec, hooks: JobHooks, batch, core, name: str) -> Exit:
        started, seen = False, 0
        while True:
            current = await asyncio.to_thread(
                batch.read_namespaced_job_status, name, self.namespace
            )
            state = current.status or client.V1JobStatus()
            if not started and (state.active or state.succeeded or state.failed):
                started = True
                if not await hooks.started(None, name):
                    await self.stop(job.training_id)
                    return Exit(None, "stopped")
            seen = await self._logs(core, name, seen, hooks)
            if state.succeeded:
                return Exit(0)
            if state.failed:
                why = "; ".join(
                    c.message or c.reason or ""
                    for c in state.conditions or []
                    if c.type == "Failed"
                )
                return Exit(1, f"the Kubernetes job failed{': ' + why if why else ''}")
            await hooks.tick()
            await asyncio.sleep(self.poll_s)

    async def _logs(self, core, name: str, seen: int, hooks: JobHooks) -> int:
        pods = await asyncio.to_thread(
            core.list_namespaced_pod, self.namespace, label_selector=f"job-name={name}"
        )
        for pod in (pods.items or [])[:1]:
            try:
                text = await asyncio.to_thread(
                    core.read_namespaced_pod_log, pod.metadata.name, self.namespace
                )
            except ApiException:
                return seen
            lines = text.splitlines()
            for line in lines[seen:]:
                await hooks.line("stdout", line)
            return max(seen, len(lines))
        return seen

    async def stop(self, training_id: str) -> bool:
        found = self._active.get(training_id)
        if found is None:
            return False
        api, name = found
        try:
            await asyncio.to_thread(
                client.BatchV1Api(api).delete_namespaced_job,
                name,
                self.namespace,
                propagation_policy="Background",
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
        return True

    def running(self) -> list[str]:
        return sorted(self._active)

    def resources(self) -> dict[str, Any]:
        return {"runtime": self.scheme, "namespace": self.namespace, "jobs": len(self._active)}

    async def outputs(self, job: JobSpec, store: Any) -> Path:
        target = job.workdir.parent / "output"
        prefix = f"trainings/{job.training_id}/output"
        if await store.list(prefix + "/"):
            await store.get_tree(prefix, target)
        return target


async def cluster_status(cluster: Any, egress: Egress) -> dict[str, Any]:
    """Nodes and allocatable resources, read from the cluster's API (a ClusterState); a status
    word of our own when that fails, never the cluster's answer (only the log has it)."""
    try:
        api = cluster_client(cluster, egress)
        nodes = await asyncio.to_thread(client.CoreV1Api(api).list_node, _request_timeout=5)
        return {"status": READY, **node_totals(nodes)}
    except Exception as exc:  # noqa: BLE001 - an unreachable cluster is a status, not an error
        status = failure(exc)
        log.info("cluster %s is %s: %r", cluster.id, status, exc)
    return {"status": status, "nodes": [], "resources": {}}


def failure(exc: Exception) -> str:
    if isinstance(exc, InsecureTransport):
        return "not allowed: a token is sent only over https"
    if isinstance(exc, ApiException):
        return CREDENTIALS_REJECTED if exc.status in (401, 403) else REFUSED
    if isinstance(exc, AttributeError | TypeError | ValueError):
        return REFUSED  # it answered, but not as a Kubernetes API does
    return BLOCKED if blocked_cause(exc) is not None else UNREACHABLE


def node_totals(nodes: Any) -> dict[str, Any]:
    listed, totals = [], {"cpu": 0.0, "memory_mb": 0, "gpu": 0}
    for node in nodes.items or []:
        alloc = (node.status.allocatable if node.status else None) or {}
        item = {
            "name": node.metadata.name,
            "cpu": cpu(alloc.get("cpu", "0")),
            "memory_mb": memory_mb(alloc.get("memory", "0")),
            "gpu": int(alloc.get("nvidia.com/gpu", 0)),
            "ready": any(
                c.type == "Ready" and c.status == "True" for c in (node.status.conditions or [])
            ),
        }
        listed.append(item)
        for key in totals:
            totals[key] += item[key]
    return {"nodes": listed, "resources": totals}


def cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def memory_mb(quantity: str) -> int:
    units = {
        "Ki": 1 / 1024,
        "Mi": 1,
        "Gi": 1024,
        "Ti": 1 << 20,
        "K": 1000 / 1024**2,
        "M": 1000**2 / 1024**2,
        "G": 1000**3 / 1024**2,
    }
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(float(quantity) / 1024**2)
