"""Commands of the model-serving context. Each carries what its pure decision needs: ids, the
files a route already stored, what a worker measured on a server."""

from __future__ import annotations

from typing import Any

from mlplane.commands import Command


class CreateModel(Command):
    model_id: str
    space_id: str
    name: str
    description: str = ""


class UpdateModel(Command):
    model_id: str
    name: str | None = None
    description: str | None = None


class DeleteModel(Command):
    model_id: str


class AddVersion(Command):
    model_id: str
    version: int
    format: str
    key: str
    files: dict[str, str]
    size: int
    config: dict[str, Any]
    checkpoint_id: str | None = None
    source: str = "upload"


class DeleteVersion(Command):
    model_id: str
    version: int


class RegisterServer(Command):
    server_id: str
    name: str
    host: str
    port: int
    gpus: int = 0
    kind: str = "triton"
    managed: bool = False
    repository: str = ""
    labels: dict[str, str] = {}


class UpdateServer(Command):
    server_id: str
    name: str | None = None
    host: str | None = None
    port: int | None = None
    gpus: int | None = None
    repository: str | None = None
    labels: dict[str, str] | None = None


class DeleteServer(Command):
    server_id: str


class RecordHealth(Command):
    server_id: str
    live: bool
    ready: bool
    error: str = ""


class ObserveModels(Command):
    server_id: str
    loaded: list[str]


class RequestPlacement(Command):
    server_id: str
    served_name: str
    model_id: str
    version: int
    space_id: str
    holder: str


class ReleasePlacement(Command):
    server_id: str
    served_name: str
    holder: str


class RecordLoaded(Command):
    server_id: str
    served_name: str


class RecordLoadFailed(Command):
    server_id: str
    served_name: str
    error: str


class RecordUnloaded(Command):
    server_id: str
    served_name: str


class RecordImportFailed(Command):
    """A checkpoint an endpoint named could not be registered as model `model_id`."""

    model_id: str
    checkpoint_id: str
    space_id: str
    error: str
