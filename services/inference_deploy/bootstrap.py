"""Wiring of the inference-endpoint service: its projections, routes and rollout worker (with the
Kubernetes runtime for endpoints on `kubernetes://`).

Importing this module connects to nothing; `_on_start` does, inside the app's lifespan.
"""

from __future__ import annotations

from mlplane import aggregates
from mlplane.kernel import Kernel
from mlplane.service import Service


def _routers():
    from .api import endpoints, inference, revisions

    return [inference, endpoints, revisions]


def _projections():
    from .projections import projections

    return projections()


async def _on_start(kernel: Kernel) -> None:
    from services.training.handlers import CLUSTERS
    from services.triton_manager.settings import ServingSettings

    from .kube import KubernetesEndpoints
    from .workers import RolloutWorker

    settings = ServingSettings()

    async def cluster_of(space_id: str):
        return (await aggregates.load(kernel.log, CLUSTERS, space_id))[0]

    kube = KubernetesEndpoints(
        cluster_of,
        image=settings.triton_image,
        namespace=settings.namespace,
        artifacts_url=kernel.settings.artifacts,
        poll_s=settings.kube_poll_s,
    )
    worker = RolloutWorker(kernel, kube)
    await worker.start()


SERVICE = Service(
    name="inference_deploy",
    projections=_projections,
    routers=_routers,
    on_start=_on_start,
)
