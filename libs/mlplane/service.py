"""What a service contributes to a process: projections, routers, start-up work.

`mlplane up --service NAME` picks services from the catalogue by name; `all` runs every one in
one process. A service's bootstrap module exposes `SERVICE`; importing it connects to nothing.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .kernel import Kernel
    from .projections import Projection

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
    on_start: Callable[[Kernel], Awaitable[None]] | None = None
    body_limits: Callable[[Any], Sequence[tuple[str, int]]] | None = None
    """(path prefix, bytes) pairs of routes taking larger bodies than the default (uploads)."""


def load(selection: str = "all") -> list[Service]:
    """The services named in `selection` ("all" or comma-separated names), in catalogue order."""
    names = (
        list(CATALOGUE) if selection in ("", "all") else [n.strip() for n in selection.split(",")]
    )
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        raise ValueError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(CATALOGUE)}")
    return [importlib.import_module(CATALOGUE[n]).SERVICE for n in names]


def register_all_events() -> None:
    """Import every `services.*.events` module, so the registry can decode anything in the log."""
    import services

    for info in pkgutil.walk_packages(services.__path__, prefix="services."):
        if info.name.endswith(".events"):
            importlib.import_module(info.name)
