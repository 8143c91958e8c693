"""Wiring of the training service: its projections, routes and, at start-up, its artifact
store, runtimes and runner (subscribed to the bus, reconciled with the log).

Importing this module connects to nothing; `_on_start` does, inside the app's lifespan.
"""

from __future__ import annotations

from mlplane import adapters, aggregates
from mlplane.kernel import Kernel
from mlplane.service import Service

from .settings import TrainingSettings


def _routers():
    from .api import bundles, checkpoints, trainings
    from .data_api import clusters, connectors, data_models
    from .train_api import train

    return [train, trainings, checkpoints, bundles, data_models, connectors, clusters]


def _commands():
    from .handlers import COMMAND_HANDLERS

    return COMMAND_HANDLERS


def _entities():
    from mlplane.history import EntityKind

    from . import api
    from . import handlers as h
    from . import projections as p

    return [
        EntityKind(api.TRAINING, h.TRAININGS, p.Trainings(), "/api/v1/trainings/{id}"),
        EntityKind(api.BUNDLE, h.BUNDLES, p.Bundles(), "/api/v1/bundles/{id}"),
        EntityKind(api.DATA_MODEL, h.DATA_MODELS, p.DataModels(), "/api/v1/data-models/{id}"),
        EntityKind(api.CONNECTOR, h.CONNECTORS, p.Connectors(), "/api/v1/connectors/{id}"),
        EntityKind(api.CLUSTER, h.CLUSTERS, p.Clusters(), "/api/v1/clusters"),
    ]


def _projections():
    from .projections import projections

    return projections()


def _body_limits(settings) -> list[tuple[str, int]]:
    """Bundle uploads may be larger than other request bodies."""
    return [("/train/", TrainingSettings().max_bundle_bytes)]


async def _wire(kernel: Kernel) -> None:
    from .services import SETTINGS, STORE

    store = adapters.artifact_store(kernel.settings.artifacts)
    kernel.extensions[STORE], kernel.extensions[SETTINGS] = store, TrainingSettings()


async def _on_start(kernel: Kernel) -> None:
    from .adapters.kube import KubernetesRuntime
    from .adapters.runtime import LocalRuntime
    from .handlers import CLUSTERS
    from .refresh import StatusRefresher
    from .services import SETTINGS, STORE
    from .workers import TrainingWorker

    store, settings = kernel.extensions[STORE], kernel.extensions[SETTINGS]

    async def cluster_of(space_id: str):
        return (await aggregates.load(kernel.log, CLUSTERS, space_id))[0]

    worker: TrainingWorker

    async def spec_of(training_id: str):
        return await worker.spec(training_id)

    runtimes = {
        "local://": LocalRuntime(settings.slots),
        "kubernetes://": KubernetesRuntime(
            cluster_of,
            spec_of,
            namespace=settings.namespace,
            artifacts_url=kernel.settings.artifacts,
            egress=kernel.settings.egress,
            poll_s=settings.poll_s,
        ),
    }
    worker = TrainingWorker(kernel, kernel.settings, settings, store, runtimes)
    await worker.start()
    if settings.status_refresh_s:
        refresher = StatusRefresher(kernel, settings)
        kernel.spawn("training-status-refresh", refresher.run(), refresher)


SERVICE = Service(
    name="training",
    projections=_projections,
    routers=_routers,
    wire=_wire,
    on_start=_on_start,
    body_limits=_body_limits,
    commands=_commands,
    entities=_entities,
)
