"""Wiring of the inference-endpoint service: its projections, routes, commands, entities and
rollout worker (with the Kubernetes runtime for endpoints on `kubernetes://`).

Importing this module connects to nothing; `_wire` and `_on_start` do, inside the app's lifespan.
"""

from __future__ import annotations

from mlplane import adapters
from mlplane.kernel import Kernel
from mlplane.service import Service

ENDPOINT_KIND = "endpoint"
STORE, SETTINGS = "deploy.store", "deploy.settings"


def _routers():
    from .api import endpoints, inference, revisions

    return [inference, endpoints, revisions]


def _projections():
    from .projections import projections

    return projections()


def _commands():
    from .handlers import COMMAND_HANDLERS

    return COMMAND_HANDLERS


def _entities():
    from mlplane.history import EntityKind

    from .handlers import ENDPOINTS
    from .projections import Endpoints

    return [EntityKind(ENDPOINT_KIND, ENDPOINTS, Endpoints(), "/api/v1/workloads/inferences/{id}")]


async def _wire(kernel: Kernel) -> None:
    """The routes read model files (an endpoint's bundle) from the shared artifact store."""
    from .settings import DeploySettings

    kernel.extensions[STORE] = adapters.artifact_store(kernel.settings.artifacts)
    kernel.extensions[SETTINGS] = DeploySettings()


async def _on_start(kernel: Kernel) -> None:
    from .kube import KubernetesEndpoints
    from .services import cluster_of
    from .workers import RolloutWorker

    settings = kernel.extensions[SETTINGS]

    async def clusters(space_id: str):
        return await cluster_of(kernel, space_id)

    kube = KubernetesEndpoints(
        clusters,
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
    wire=_wire,
    on_start=_on_start,
    commands=_commands,
    entities=_entities,
)
