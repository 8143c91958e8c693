"""Commands the training context decides on. Each carries what its pure decision needs (ids,
the runner's identity, results measured by a worker), so `handlers` does no I/O."""

from __future__ import annotations

from typing import Any

from mlplane.commands import Command


class RecordBundle(Command):
    bundle_id: str
    space_id: str
    code_hash: str
    data_hash: str
    parameters_hash: str
    bundle_hash: str
    archive_sha256: str
    manifest: dict[str, Any]
    files: int
    unpacked_bytes: int


class CreateTraining(Command):
    training_id: str
    space_id: str
    name: str
    source: str
    architecture: str = ""
    configuration: dict[str, Any] = {}
    connectors: list[dict[str, Any]] = []
    data_model_id: str = ""
    gpu_count: int = 0
    benchmark_ids: list[str] = []
    runtime: str = "local://"
    resources: dict[str, Any] = {}
    owner: str = ""
    bundle_id: str = ""
    code_hash: str = ""
    data_hash: str = ""
    parameters_hash: str = ""
    bundle_hash: str = ""
    entrypoint: str = ""
    args: list[str] = []
    parameters: dict[str, Any] = {}
    requirements: list[str] = []


class UpdateTraining(Command):
    training_id: str
    name: str | None = None
    architecture: str | None = None
    configuration: dict[str, Any] | None = None
    connectors: list[dict[str, Any]] | None = None
    benchmark_ids: list[str] | None = None


class ClaimTraining(Command):
    """A runner takes a queued training and starts building it."""

    training_id: str
    runner: str


class StartTraining(Command):
    training_id: str
    runner: str
    pid: int | None = None
    job_name: str = ""
    environment: dict[str, Any] = {}


class RecordCheckpoint(Command):
    training_id: str
    checkpoint_id: str
    name: str
    version: int
    format: str
    uri: str
    key: str
    files: dict[str, str]
    metrics: dict[str, float] = {}
    signature: dict[str, Any] = {}


class FinishTraining(Command):
    training_id: str
    metrics: dict[str, float] = {}


class FailTraining(Command):
    training_id: str
    reason: str
    exit_code: int | None = None
    runner: str | None = None
    """When set, the training fails only if this runner holds it (restart reconciliation)."""


class KillTraining(Command):
    training_id: str
    reason: str = "killed on request"


class DeleteTraining(Command):
    training_id: str


class CreateDataModel(Command):
    data_model_id: str
    space_id: str
    name: str
    description: str = ""


class UpdateDataModel(Command):
    data_model_id: str
    name: str | None = None
    description: str | None = None


class DeleteDataModel(Command):
    data_model_id: str


class CreateConnector(Command):
    connector_id: str
    space_id: str
    name: str
    type: str
    config: dict[str, Any]
    credentials: dict[str, str] | None = None
    status: str = "ready"


class RecordConnectorStatus(Command):
    connector_id: str
    status: str


class RecordScan(Command):
    connector_id: str
    files: list[dict[str, Any]]


class DeleteConnector(Command):
    connector_id: str


class RegisterCluster(Command):
    space_id: str
    cluster_id: str
    name: str
    manager_url: str
    ingress_url: str
    token: str | None = None
    allow_insecure_http: bool = False


class UpdateCluster(Command):
    space_id: str
    manager_url: str | None = None
    ingress_url: str | None = None
    token: str | None = None
    allow_insecure_http: bool | None = None


class RecordClusterStatus(Command):
    space_id: str
    status: str
    nodes: list[dict[str, Any]] = []
    resources: dict[str, Any] = {}


class DeleteCluster(Command):
    space_id: str
