"""What a service contributes to a process: routes, what the routes need, projections, workers.

`mlplane up --service NAME` picks services from the catalogue by name; `all` runs every one in
one process. A service's bootstrap module exposes `SERVICE`; importing it connects to nothing.

The process that runs the gateway is the read and write side of the whole API: it serves every
service's routes (wired with what they need), runs every projection, so each read model has
one runner and writes can read their own effects, and runs the outbox relay, so each event is
published once (at least once after a crash), not once per process. Any other process runs only the workers of
the services it names (process managers: jobs, the fleet poller, rollouts, log ingest, webhook
delivery), which react to the bus. In one process (`all`) both roles coincide.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .commands import CommandHandlers
    from .history import EntityKind
    from .kernel import Kernel
    from .projections import Projection
    from .settings import Settings

CATALOGUE: dict[str, str] = {
    "gateway": "services.gateway.bootstrap",
    "training": "services.training.bootstrap",
    "triton_manager": "services.triton_manager.bootstrap",
    "inference_deploy": "services.inference_deploy.bootstrap",
    "logs": "services.logs.bootstrap",
}


@dataclass(frozen=True)
class Service:
    name: str
    projections: Callable[[], Sequence[Projection]] = list
    routers: Callable[[], Sequence[Any]] = list
    wire: Callable[[Kernel], Awaitable[None]] | None = None
    """Attach to the kernel what the routes need (stores, settings); no workers."""
    on_start: Callable[[Kernel], Awaitable[None]] | None = None
    """Start the service's workers (runs after `wire`)."""
    body_limits: Callable[[Any], Sequence[tuple[str, int]]] | None = None
    """(path prefix, bytes) pairs of routes taking larger bodies than the default (uploads)."""
    commands: Callable[[], CommandHandlers] = dict
    """Which aggregate each of its commands acts on (`mlplane.commands`)."""
    entities: Callable[[], Sequence[EntityKind]] = list
    """The kinds of entity it keeps, each with a history (`mlplane.history`)."""
    app: Callable[[Settings], Any] | None = None
    """Builds the HTTP app of a process (the gateway's, which fronts every service)."""
    admin_token: Callable[..., Awaitable[str | None]] | None = None
    """`(kernel, *, first_start, name, ttl)`: a token of the platform's administrator."""


def gateway() -> Service:
    """The gateway's descriptor: what builds a process's app and the administrator's tokens.
    The kernel reaches it through the catalogue, by name, as it reaches every service."""
    return load("gateway")[0]


def load(selection: str = "all") -> list[Service]:
    """The services named in `selection` ("all" or comma-separated names), in catalogue order."""
    names = (
        list(CATALOGUE) if selection in ("", "all") else [n.strip() for n in selection.split(",")]
    )
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        raise ValueError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(CATALOGUE)}")
    return [importlib.import_module(CATALOGUE[n]).SERVICE for n in names]


@dataclass(frozen=True)
class Roles:
    """What one process does for a selection of services."""

    api: list[Service]
    """Services whose routes and projections this process serves (all, if it is a gateway)."""
    workers: list[Service]
    """Services whose workers this process runs (the selection)."""

    @property
    def wired(self) -> list[Service]:
        """Every service whose routes or workers run here, once each."""
        return list({s.name: s for s in [*self.api, *self.workers]}.values())


def roles(selected: Sequence[Service]) -> Roles:
    """A process running the gateway serves every service's API; others only run workers."""
    selected = list(selected)
    api = load("all") if any(s.name == "gateway" for s in selected) else []
    return Roles(api=api, workers=selected)


def register_all_events() -> None:
    """Import every `services.*.events` module, so the registry can decode anything in the log."""
    services = importlib.import_module("services")  # by name, as the catalogue loads services
    for info in pkgutil.walk_packages(services.__path__, prefix="services."):
        if info.name.endswith(".events"):
            importlib.import_module(info.name)
