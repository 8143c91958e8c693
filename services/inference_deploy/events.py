"""Events of the inference-endpoint context.

Stream `endpoint:<id>`, where the id derives from the space and the endpoint's name, so one name
is one stream in a space and two deployments of a name cannot both succeed. Every configuration
change — the first deployment included — is a revision: `revision_id` (a UUID) and `revision`
(1, 2, …) travel on the event that made it, and a rollback is a change whose configuration is an
earlier revision's (`rollback_of`). A removed endpoint keeps its history; deploying the name again
starts a new life on the same stream, and its revisions go on counting.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from mlplane.events import Event, registry

TOPIC = "endpoints"


def endpoint_id(space_id: str, name: str) -> str:
    """One name is one stream in a space: the id is a UUID derived from both (the data plane
    finds an endpoint's document by it)."""
    digest = hashlib.sha256(f"{space_id}/{name}".encode()).hexdigest()
    return str(uuid.UUID(hex=digest[:32]))


def _event(name: str):
    return registry.register(name, topic=TOPIC)


@_event("EndpointDeployed")
class EndpointDeployed(Event):
    endpoint_id: str
    space_id: str
    name: str
    revision_id: str
    revision: int
    spec: dict[str, Any]
    """model_id, version, served_name, format, checkpoint_id, replicas, selector, resources, runtime."""
    owner: str = ""


@_event("EndpointReconfigured")
class EndpointReconfigured(Event):
    endpoint_id: str
    revision_id: str
    revision: int
    spec: dict[str, Any]
    rollback_of: str | None = None
    """The revision whose configuration this one restores."""


@_event("EndpointRolledOut")
class EndpointRolledOut(Event):
    """The endpoint's current revision serves from `targets` (servers, or a Kubernetes Service)."""

    endpoint_id: str
    revision_id: str
    served_name: str
    targets: list[str]
    url: str = ""


@_event("EndpointFailed")
class EndpointFailed(Event):
    endpoint_id: str
    revision_id: str
    reason: str


@_event("EndpointRemoved")
class EndpointRemoved(Event):
    endpoint_id: str


@_event("EndpointLogged")
class EndpointLogged(Event):
    """Lines about an endpoint's rollout: `build_id` is the revision being rolled out."""

    endpoint_id: str
    build_id: str
    lines: list[str]
