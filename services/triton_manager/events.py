"""Events of the model-serving context: the model registry and the inference-server fleet.

Streams: `model:<id>` (a registered model and its versions), `server:<id>` (an inference server:
its registration, what should be loaded on it — placements, the desired state — and what it was
seen to hold — health and loaded models, the observed state — and every load or unload outcome).

A placement is one model version on one server under a served name unique to that version
(`served_name`), held by one or more holders (an endpoint id, or `admin` for a load asked through
the registry's routes). The version is wanted on the server while anyone holds it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from mlplane.events import Event, registry

TOPIC = "models"
SERVED_PREFIX = "mlp-"


def served_name(model_id: str, version: int) -> str:
    """The name a model version is served under: unique to that version on every server."""
    return f"{SERVED_PREFIX}{model_id}-{version}"


def checkpoint_model_id(checkpoint_id: str) -> str:
    """The id of the model a training checkpoint is registered as (one checkpoint, one model):
    an endpoint deployed from a checkpoint names it, and this context registers it on seeing
    that endpoint (see docs/serving.md)."""
    return hashlib.sha256(f"checkpoint/{checkpoint_id}".encode()).hexdigest()[:32]


def _event(name: str):
    return registry.register(name, topic=TOPIC)


# ---------------------------------------------------------------- registry


@_event("ModelCreated")
class ModelCreated(Event):
    model_id: str
    space_id: str
    name: str
    description: str = ""


@_event("ModelUpdated")
class ModelUpdated(Event):
    """Changed fields only; None is unchanged."""

    model_id: str
    name: str | None = None
    description: str | None = None


@_event("ModelDeleted")
class ModelDeleted(Event):
    model_id: str


@_event("ModelVersionAdded")
class ModelVersionAdded(Event):
    """A version stored in the model-repository layout under `key` in the artifact store
    (`<key>/config.pbtxt`, `<key>/<version>/<file>`), its files' SHA-256 and its config."""

    model_id: str
    version: int
    format: str
    key: str
    files: dict[str, str]
    size: int
    config: dict[str, Any]
    """platform, backend, max_batch_size, inputs and outputs (name, datatype, dims)."""
    checkpoint_id: str | None = None
    """The training checkpoint this version was made from, when it was."""
    source: str = "upload"


@_event("ModelVersionDeleted")
class ModelVersionDeleted(Event):
    model_id: str
    version: int


@_event("ModelImportFailed")
class ModelImportFailed(Event):
    """A training checkpoint an endpoint named could not be registered as model `model_id`
    (its files are gone, or it cannot be served): the endpoints waiting for it fail."""

    model_id: str
    checkpoint_id: str
    space_id: str
    error: str


# ---------------------------------------------------------------- servers


@_event("ServerRegistered")
class ServerRegistered(Event):
    server_id: str
    name: str
    host: str
    port: int
    gpus: int = 0
    kind: str = "triton"
    """triton (any Open Inference Protocol v2 server with Triton's repository API) or mlserver."""
    managed: bool = False
    """Started and supervised by the platform (the local model server)."""
    repository: str = ""
    """Folder of the server's model repository when the platform can write to it."""
    labels: dict[str, str] = {}


@_event("ServerUpdated")
class ServerUpdated(Event):
    server_id: str
    name: str | None = None
    host: str | None = None
    port: int | None = None
    gpus: int | None = None
    repository: str | None = None
    labels: dict[str, str] | None = None


@_event("ServerDeleted")
class ServerDeleted(Event):
    server_id: str


@_event("ServerHealthChanged")
class ServerHealthChanged(Event):
    server_id: str
    live: bool
    ready: bool
    error: str = ""


@_event("ServerModelsObserved")
class ServerModelsObserved(Event):
    """The served names the server reported ready, when that set changed."""

    server_id: str
    loaded: list[str]


@_event("PlacementRequested")
class PlacementRequested(Event):
    server_id: str
    served_name: str
    model_id: str
    version: int
    space_id: str
    holder: str


@_event("PlacementReleased")
class PlacementReleased(Event):
    server_id: str
    served_name: str
    holder: str


@_event("ModelVersionLoaded")
class ModelVersionLoaded(Event):
    server_id: str
    served_name: str
    model_id: str
    version: int
    holders: list[str] = []


@_event("ModelVersionLoadFailed")
class ModelVersionLoadFailed(Event):
    server_id: str
    served_name: str
    model_id: str
    version: int
    error: str
    holders: list[str] = []


@_event("ModelVersionUnloaded")
class ModelVersionUnloaded(Event):
    server_id: str
    served_name: str
    model_id: str = ""
    version: int = 0


@_event("ServerDriftDetected")
class ServerDriftDetected(Event):
    """Desired and observed state differ: versions that should be loaded and are not
    (`missing`), served names loaded that nobody holds (`unexpected`)."""

    server_id: str
    missing: list[str]
    unexpected: list[str]
