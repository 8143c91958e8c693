"""Wiring: the gateway's service descriptor and the FastAPI app that fronts every service.

`create_app` only builds objects; the kernel (stores, bus, projection runners) is opened in the
lifespan and closed when the server drains (SIGTERM), so importing or building the app — to print
its OpenAPI document, say — connects to nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI
from mlplane.http import docstring_summaries, install_problem_handlers
from mlplane.kernel import Kernel
from mlplane.middleware import BodyLimit, HttpMetrics, Metrics, RequestContext
from mlplane.probes import ProjectionMetrics, probes
from mlplane.service import Service, load, register_all_events, roles
from mlplane.settings import Settings
from prometheus_client import CollectorRegistry

from .auth import TokenAuthenticator, ensure_admin

KernelFactory = Callable[[Settings], Kernel]
AUTHENTICATOR = "gateway.authenticator"


def _routers():
    from .admin_api import admin
    from .api import spaces
    from .dataplane.api import dataplane
    from .users_api import users

    return [spaces, users, admin, dataplane]


def _projections():
    from .projections import projections

    return projections()


async def _wire(kernel: Kernel) -> None:
    from .dataplane import plane
    from .settings import GatewaySettings
    from .throttle import THROTTLE, LoginThrottle

    kernel.extensions[THROTTLE] = LoginThrottle.from_settings(GatewaySettings())
    await ensure_admin(kernel, with_token=False)
    await plane.start(kernel, kernel.extensions[AUTHENTICATOR])


def _body_limits(settings: Settings) -> list[tuple[str, int]]:
    """Inference requests carry tensors: larger bodies than the other routes."""
    from .dataplane.api import MAX_BODY_BYTES

    return [("/v2/", MAX_BODY_BYTES)]


async def _admin_token(kernel: Kernel, **options) -> str | None:
    from .auth import admin_token

    kernel.add_commands(_commands())  # a CLI's kernel has none registered yet
    return await admin_token(kernel, **options)


def _commands():
    from .handlers import COMMAND_HANDLERS

    return COMMAND_HANDLERS


def _entities():
    from mlplane.history import EntityKind

    from .handlers import SPACES, USERS
    from .projections import Spaces, Users

    return [
        EntityKind("space", SPACES, Spaces(), "/api/v1/spaces/{id}"),
        EntityKind("user", USERS, Users(), "/api/users/{identity}"),
    ]


SERVICE = Service(
    name="gateway",
    projections=_projections,
    routers=_routers,
    wire=_wire,
    body_limits=_body_limits,
    entities=_entities,
    commands=_commands,
    app=lambda settings: create_app(settings),
    admin_token=_admin_token,
)


def create_app(
    settings: Settings,
    services: Sequence[Service] | None = None,
    open_kernel: KernelFactory = Kernel.open,
) -> FastAPI:
    """The HTTP API of a process running the selected services (all by default).

    With the gateway among them it serves every service's routes and projections; otherwise only
    the probes, while the selected services' workers run (see `mlplane.service.roles`).
    """
    plan = roles(services if services is not None else load(settings.service))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        kernel = open_kernel(settings)
        for service in plan.api:
            kernel.add_projections(service.projections())
        for service in plan.wired:
            kernel.add_commands(service.commands())
            kernel.add_entities(service.entities())
        authenticator = TokenAuthenticator(kernel)
        authenticator.watch(kernel)
        kernel.extensions[AUTHENTICATOR] = authenticator
        if plan.api:  # the one process that relays the outbox must know every event type
            register_all_events()
        await kernel.start(relay=bool(plan.api))
        app.state.kernel = kernel
        app.state.authenticator = authenticator
        try:
            for service in plan.wired:
                if service.wire:
                    await service.wire(kernel)
            for service in plan.workers:
                if service.on_start:
                    await service.on_start(kernel)
            yield
        finally:
            await kernel.stop()

    app = FastAPI(
        title="mlplane",
        version=version("mlplane"),
        description="An event-sourced control plane for the ML lifecycle.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.event_source = "mlplane/gateway"
    app.state.metrics = CollectorRegistry()
    app.state.metrics.register(ProjectionMetrics(app.state))
    install_problem_handlers(app)
    for router in [probes, *(r for service in plan.api for r in service.routers())]:
        app.include_router(docstring_summaries(router))
    uploads = [
        limit
        for service in plan.api
        if service.body_limits
        for limit in service.body_limits(settings)
    ]
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        overrides=uploads,
        max_json_depth=settings.max_json_depth,
    )
    metrics = HttpMetrics(app.state.metrics)
    app.add_middleware(Metrics, metrics=metrics)
    app.add_middleware(RequestContext)
    if any(service.name == SERVICE.name for service in plan.api):
        from .dataplane.api import MAX_BODY_BYTES
        from .dataplane.fast_path import InferencePath

        app.add_middleware(InferencePath, metrics=metrics, max_bytes=MAX_BODY_BYTES)
    return app
