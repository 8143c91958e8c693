"""Events of the training context: bundles, trainings and their checkpoints, logs, data models,
connectors and clusters.

Streams: `bundle:<id>`, `training:<id>` (lifecycle and checkpoints), `trainlog:<id>` (log lines
and live metrics, written only by the runner, so chatty output never contends with commands),
`datamodel:<id>`, `connector:<id>`, `cluster:<space id>`.

Connector credentials and cluster tokens are personal fields: the event log stores them
encrypted under a key of their own connector or cluster, and deleting one destroys that key, so
the secret is gone from every replay as well.
"""

from __future__ import annotations

from typing import Any

from mlplane.events import Event, registry
from pydantic import Field

TOPIC = "training"


def _event(name: str, personal: tuple[str, ...] = (), subject_field: str | None = None):
    return registry.register(name, topic=TOPIC, personal=personal, subject_field=subject_field)


# ---------------------------------------------------------------- bundles


@_event("BundleUploaded")
class BundleUploaded(Event):
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


# ---------------------------------------------------------------- trainings


@_event("TrainingCreated")
class TrainingCreated(Event):
    training_id: str
    space_id: str
    name: str
    source: str  # "bundle" or "architecture"
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


@_event("TrainingUpdated")
class TrainingUpdated(Event):
    """Changed fields only; None is unchanged."""

    training_id: str
    name: str | None = None
    architecture: str | None = None
    configuration: dict[str, Any] | None = None
    connectors: list[dict[str, Any]] | None = None
    benchmark_ids: list[str] | None = None


@_event("TrainingBuildStarted")
class TrainingBuildStarted(Event):
    training_id: str
    runner: str


@_event("TrainingStarted")
class TrainingStarted(Event):
    training_id: str
    runner: str
    pid: int | None = None
    job_name: str = ""
    environment: dict[str, Any] = {}


@_event("CheckpointCreated")
class CheckpointCreated(Event):
    """A trained model stored in the model-repository layout, with what it came from."""

    checkpoint_id: str
    training_id: str
    space_id: str
    name: str
    version: int
    format: str  # onnx or joblib
    uri: str
    key: str
    files: dict[str, str]
    metrics: dict[str, float] = {}
    signature: dict[str, Any] = {}
    provenance: dict[str, Any] = {}

    def checkpoint_node(self, at: str) -> dict[str, Any]:
        """The checkpoint as a provenance graph shows it: one shape for every context that
        draws the graph from this event (`at`: the event's time stamp)."""
        return {
            "id": self.checkpoint_id,
            "name": self.name,
            "version": self.version,
            "format": self.format,
            "uri": self.uri,
            "files": self.files,
            "metrics": self.metrics,
            "created_at": at,
        }


@_event("TrainingSucceeded")
class TrainingSucceeded(Event):
    training_id: str
    metrics: dict[str, float] = {}


@_event("TrainingFailed")
class TrainingFailed(Event):
    training_id: str
    reason: str
    exit_code: int | None = None


@_event("TrainingKilled")
class TrainingKilled(Event):
    training_id: str
    reason: str = "killed on request"


@_event("TrainingDeleted")
class TrainingDeleted(Event):
    training_id: str


@_event("TrainingLogged")
class TrainingLogged(Event):
    """A batch of output lines: `{"stream": "stdout"|"stderr"|"build"|"runner", "text": …}`."""

    training_id: str
    lines: list[dict[str, str]]


@_event("MetricLogged")
class MetricLogged(Event):
    training_id: str
    name: str
    value: float
    step: int | None = None


# ---------------------------------------------------------------- data models


@_event("DataModelCreated")
class DataModelCreated(Event):
    data_model_id: str
    space_id: str
    name: str
    description: str = ""


@_event("DataModelUpdated")
class DataModelUpdated(Event):
    data_model_id: str
    name: str | None = None
    description: str | None = None


@_event("DataModelDeleted")
class DataModelDeleted(Event):
    data_model_id: str


# ---------------------------------------------------------------- connectors


@_event("ConnectorCreated", personal=("credentials",), subject_field="connector_id")
class ConnectorCreated(Event):
    connector_id: str
    space_id: str
    name: str
    type: str  # aws-s3 or local
    config: dict[str, Any]
    """Where the files are (bucket, prefix, region, endpoint; or a folder): never secrets."""
    credentials: dict[str, str] | None = None
    status: str = "ready"


@_event("ConnectorStatusChanged")
class ConnectorStatusChanged(Event):
    """A re-probe of the connector's storage found it in another state (see `refresh`)."""

    connector_id: str
    status: str


@_event("ConnectorScanned")
class ConnectorScanned(Event):
    connector_id: str
    files: list[dict[str, Any]]


@_event("ConnectorDeleted")
class ConnectorDeleted(Event):
    connector_id: str


# ---------------------------------------------------------------- clusters


@_event("ClusterRegistered", personal=("token",), subject_field="cluster_id")
class ClusterRegistered(Event):
    space_id: str
    cluster_id: str
    name: str
    manager_url: str
    ingress_url: str
    token: str | None = None
    allow_insecure_http: bool = False
    """Set by an administrator: the token may be sent to an http:// manager URL."""


@_event("ClusterUpdated", personal=("token",), subject_field="cluster_id")
class ClusterUpdated(Event):
    space_id: str
    cluster_id: str
    manager_url: str | None = None
    ingress_url: str | None = None
    token: str | None = None
    allow_insecure_http: bool | None = None


@_event("ClusterStatusChanged")
class ClusterStatusChanged(Event):
    """A probe of the cluster's API (after a change, then on a timer) found it in another state:
    a status word, never the cluster's own answer, and its nodes when it answered."""

    space_id: str
    cluster_id: str
    status: str
    nodes: list[dict[str, Any]] = Field(default_factory=list)
    resources: dict[str, Any] = Field(default_factory=dict)


@_event("ClusterDeleted")
class ClusterDeleted(Event):
    space_id: str
    cluster_id: str
