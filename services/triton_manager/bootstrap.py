"""Wiring of the model-serving service: its projections, routes and, at start-up, its artifact
store, the managed local model server (registered here, started on first use) and the fleet
worker.

Importing this module connects to nothing; `_on_start` does, inside the app's lifespan.
"""

from __future__ import annotations

import hashlib

from mlplane import adapters, aggregates
from mlplane.eventlog import Context
from mlplane.kernel import Kernel
from mlplane.service import Service

from .settings import ServingSettings

MODEL_KIND, SERVER_KIND = "model", "server"


def _routers():
    from .api import inference_models, models, tritons

    return [tritons, models, inference_models]


def _projections():
    from .projections import projections

    return projections()


def _body_limits(settings) -> list[tuple[str, int]]:
    """Model uploads may be larger than other request bodies."""
    return [("/api/models", ServingSettings().max_model_bytes)]


async def register_local(kernel: Kernel, settings: ServingSettings):
    """The managed local server, registered under an id of this home folder (so a restart finds
    it again) on its previous port while that is free."""
    from . import commands as c
    from .handlers import SERVERS
    from .mlserver import ManagedMLServer, port_free

    home = kernel.settings.home.resolve()
    server_id = "local-" + hashlib.sha256(str(home).encode()).hexdigest()[:16]
    state, _ = await aggregates.load(kernel.log, SERVERS, server_id)
    port = settings.local_port or (state.port if state.registered and port_free(state.port) else 0)
    local = ManagedMLServer(
        home / "serving" / "mlserver",
        port,
        workers=settings.local_workers,
        venv=settings.mlserver_venv,
    )
    ctx = Context(actor="system", source="mlplane/triton-manager")
    repository = str(local.repository)
    if not state.registered:
        command = c.RegisterServer(
            server_id=server_id,
            name="local",
            host="127.0.0.1",
            port=local.port,
            kind="mlserver",
            managed=True,
            repository=repository,
            labels={"managed": "true"},
        )
    else:
        command = c.UpdateServer(
            server_id=server_id, host="127.0.0.1", port=local.port, repository=repository
        )
    await kernel.execute(command, ctx)
    return local, server_id


async def _wire(kernel: Kernel) -> None:
    from .services import SETTINGS, STORE

    store = adapters.artifact_store(kernel.settings.artifacts)
    kernel.extensions[STORE], kernel.extensions[SETTINGS] = store, ServingSettings()


async def _on_start(kernel: Kernel) -> None:
    from .services import SETTINGS, STORE, service
    from .workers import FleetWorker, ImportWorker

    store, settings = kernel.extensions[STORE], kernel.extensions[SETTINGS]
    local, local_id = None, ""
    if settings.local_enabled(kernel.settings.distributed):
        local, local_id = await register_local(kernel, settings)
    worker = FleetWorker(kernel, store, settings, local, local_id)
    await worker.start()
    await ImportWorker(kernel, service(kernel)).start()


def _commands():
    from .handlers import COMMAND_HANDLERS

    return COMMAND_HANDLERS


def _entities():
    from mlplane.history import EntityKind

    from .handlers import MODELS, SERVERS
    from .projections import Models, Servers

    return [
        EntityKind(MODEL_KIND, MODELS, Models(), "/api/models/{identity}"),
        EntityKind(SERVER_KIND, SERVERS, Servers(), "/api/tritons/{identity}"),
    ]


SERVICE = Service(
    name="triton_manager",
    projections=_projections,
    routers=_routers,
    wire=_wire,
    on_start=_on_start,
    body_limits=_body_limits,
    commands=_commands,
    entities=_entities,
)
