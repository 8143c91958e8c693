"""Pure decisions of the training context: state is a fold of a stream, a command becomes events.

A training moves queued → building → running → succeeded | failed | killed, and every step is
an event. Claiming a queued training is a decision on its stream, so when two runners race for
it the optimistic append lets exactly one win; reporting the end of a training that has already
ended (killed while its process was exiting, say) decides nothing instead of failing.
"""

from __future__ import annotations

from typing import Any

from mlplane.aggregates import Aggregate, State, stamp
from mlplane.commands import Handler, decider
from mlplane.egress import InsecureTransport, require_tls_for_secret
from mlplane.errors import Conflict, Invalid, MlplaneError, NotFound
from mlplane.events import Envelope, Event
from pydantic import Field

from . import commands as c
from . import events as e

QUEUED, BUILDING, RUNNING = "queued", "building", "running"
SUCCEEDED, FAILED, KILLED = "succeeded", "failed", "killed"
ACTIVE = (QUEUED, BUILDING, RUNNING)
FINISHED = (SUCCEEDED, FAILED, KILLED)


class JobNotRunning(MlplaneError):
    status = 400
    title = "Job not running"


def job_not_found(training_id: str) -> NotFound:
    message = f"There is no job with id: {training_id}"
    return NotFound(message, error_code="JOB_NOT_FOUND", message=message)


# ---------------------------------------------------------------- trainings


class TrainingState(State):
    id: str = ""
    space_id: str = ""
    name: str = ""
    status: str = ""
    source: str = ""
    architecture: str = ""
    configuration: dict[str, Any] = {}
    connectors: list[dict[str, Any]] = []
    data_model_id: str = ""
    gpu_count: int = 0
    benchmark_ids: list[str] = []
    runtime: str = ""
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
    runner: str = ""
    pid: int | None = None
    job_name: str = ""
    environment: dict[str, Any] = {}
    checkpoints: list[str] = []
    metrics: dict[str, float] = {}
    reason: str = ""
    exit_code: int | None = None
    created_at: str = ""
    created_by: str = ""
    updated_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    deleted: bool = False

    @property
    def live(self) -> bool:
        return bool(self.id) and not self.deleted

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


def evolve_training(state: TrainingState, env: Envelope) -> TrainingState:
    at = stamp(env)
    touched: dict[str, Any] = {"updated_at": at}
    match env.data:
        case e.TrainingCreated() as ev:
            fields = ev.model_dump(exclude={"training_id"})
            return TrainingState(
                id=ev.training_id,
                status=QUEUED,
                created_at=at,
                created_by=env.actor or "",
                **fields,
                **touched,
            )
        case e.TrainingUpdated() as ev:
            changes = {
                k: v for k, v in ev.model_dump(exclude={"training_id"}).items() if v is not None
            }
            return state.model_copy(update={**changes, **touched})
        case e.TrainingBuildStarted(runner=runner):
            return state.model_copy(update={"status": BUILDING, "runner": runner, **touched})
        case e.TrainingStarted() as ev:
            return state.model_copy(
                update={
                    "status": RUNNING,
                    "runner": ev.runner,
                    "pid": ev.pid,
                    "job_name": ev.job_name,
                    "environment": ev.environment,
                    "started_at": at,
                    **touched,
                }
            )
        case e.CheckpointCreated(checkpoint_id=cid):
            return state.model_copy(update={"checkpoints": [*state.checkpoints, cid], **touched})
        case e.TrainingSucceeded(metrics=metrics):
            return state.model_copy(
                update={"status": SUCCEEDED, "metrics": metrics, "finished_at": at, **touched}
            )
        case e.TrainingFailed(reason=reason, exit_code=code):
            return state.model_copy(
                update={
                    "status": FAILED,
                    "reason": reason,
                    "exit_code": code,
                    "finished_at": at,
                    **touched,
                }
            )
        case e.TrainingKilled(reason=reason):
            return state.model_copy(
                update={"status": KILLED, "reason": reason, "finished_at": at, **touched}
            )
        case e.TrainingDeleted():
            return state.model_copy(update={"deleted": True, **touched})
    return state


def _live(state: TrainingState, training_id: str) -> TrainingState:
    if not state.live:
        raise job_not_found(training_id)
    return state


def create_training(state: TrainingState, cmd: c.CreateTraining) -> list[Event]:
    if state.id:
        raise Conflict(f"training {cmd.training_id!r} already exists")
    return [e.TrainingCreated(**cmd.model_dump())]


RECIPE = ("architecture", "configuration", "connectors")


def update_training(state: TrainingState, cmd: c.UpdateTraining) -> list[Event]:
    _live(state, cmd.training_id)
    changes = {
        k: v
        for k, v in cmd.model_dump(exclude={"training_id"}).items()
        if v is not None and v != getattr(state, k)
    }
    if not changes:
        return []
    recipe = [k for k in RECIPE if k in changes]
    if recipe and state.status != QUEUED:
        raise Conflict(f"cannot change {', '.join(recipe)} of a training that is {state.status}")
    if "architecture" in changes and state.source != "architecture":
        raise Conflict("a training from a source bundle has no architecture to change")
    return [e.TrainingUpdated(training_id=state.id, **changes)]


def claim_training(state: TrainingState, cmd: c.ClaimTraining) -> list[Event]:
    if not state.live or state.status != QUEUED:
        return []
    return [e.TrainingBuildStarted(training_id=state.id, runner=cmd.runner)]


def start_training(state: TrainingState, cmd: c.StartTraining) -> list[Event]:
    if not state.live or state.status != BUILDING or state.runner != cmd.runner:
        return []
    return [e.TrainingStarted(**cmd.model_dump())]


def record_checkpoint(state: TrainingState, cmd: c.RecordCheckpoint) -> list[Event]:
    if not state.live or state.status != RUNNING:
        return []
    provenance = {
        "training_name": state.name,
        "source": state.source,
        "owner": state.owner,
        "bundle_id": state.bundle_id,
        "code_hash": state.code_hash,
        "data_hash": state.data_hash,
        "parameters_hash": state.parameters_hash,
        "bundle_hash": state.bundle_hash,
        "entrypoint": state.entrypoint,
        "parameters": state.parameters,
        "architecture": state.architecture,
        "configuration": state.configuration,
        "data_model_id": state.data_model_id,
        "connectors": state.connectors,
        "runtime": state.runtime,
        "runner": state.runner,
        "environment": state.environment,
        "started_at": state.started_at,
    }
    return [e.CheckpointCreated(space_id=state.space_id, provenance=provenance, **cmd.model_dump())]


def finish_training(state: TrainingState, cmd: c.FinishTraining) -> list[Event]:
    if not state.live or state.status != RUNNING:
        return []
    return [e.TrainingSucceeded(training_id=state.id, metrics=cmd.metrics)]


def fail_training(state: TrainingState, cmd: c.FailTraining) -> list[Event]:
    if not state.live or not state.active:
        return []
    if cmd.runner is not None and (state.status == QUEUED or state.runner != cmd.runner):
        return []
    return [e.TrainingFailed(training_id=state.id, reason=cmd.reason, exit_code=cmd.exit_code)]


def kill_training(state: TrainingState, cmd: c.KillTraining) -> list[Event]:
    _live(state, cmd.training_id)
    if not state.active:
        message = f"Job is not running, id: {state.id}"
        raise JobNotRunning(
            message, error_code="JOB_NOT_RUNNING", message=message, status_now=state.status
        )
    return [e.TrainingKilled(training_id=state.id, reason=cmd.reason)]


def delete_training(state: TrainingState, cmd: c.DeleteTraining) -> list[Event]:
    _live(state, cmd.training_id)
    killed = (
        [e.TrainingKilled(training_id=state.id, reason="training deleted")] if state.active else []
    )
    return [*killed, e.TrainingDeleted(training_id=state.id)]


# ---------------------------------------------------------------- bundles


class BundleState(State):
    id: str = ""


def evolve_bundle(state: BundleState, env: Envelope) -> BundleState:
    if isinstance(env.data, e.BundleUploaded):
        return BundleState(id=env.data.bundle_id)
    return state


def record_bundle(state: BundleState, cmd: c.RecordBundle) -> list[Event]:
    if state.id:
        raise Conflict(f"bundle {cmd.bundle_id!r} already exists")
    return [e.BundleUploaded(**cmd.model_dump())]


# ---------------------------------------------------------------- data models


class DataModelState(State):
    id: str = ""
    space_id: str = ""
    name: str = ""
    description: str = ""
    created_at: str = ""
    created_by: str = ""
    updated_at: str = ""
    deleted: bool = False

    @property
    def live(self) -> bool:
        return bool(self.id) and not self.deleted


def evolve_data_model(state: DataModelState, env: Envelope) -> DataModelState:
    at = stamp(env)
    match env.data:
        case e.DataModelCreated() as ev:
            return DataModelState(
                id=ev.data_model_id,
                space_id=ev.space_id,
                name=ev.name,
                description=ev.description,
                created_at=at,
                created_by=env.actor or "",
                updated_at=at,
            )
        case e.DataModelUpdated() as ev:
            changes = {
                k: v
                for k, v in (("name", ev.name), ("description", ev.description))
                if v is not None
            }
            return state.model_copy(update={**changes, "updated_at": at})
        case e.DataModelDeleted():
            return state.model_copy(update={"deleted": True, "updated_at": at})
    return state


def create_data_model(state: DataModelState, cmd: c.CreateDataModel) -> list[Event]:
    if state.id:
        raise Conflict(f"data model {cmd.data_model_id!r} already exists")
    return [e.DataModelCreated(**cmd.model_dump())]


def update_data_model(state: DataModelState, cmd: c.UpdateDataModel) -> list[Event]:
    if not state.live:
        raise NotFound(f"data model {cmd.data_model_id!r} not found")
    name = cmd.name if cmd.name not in (None, state.name) else None
    desc = cmd.description if cmd.description not in (None, state.description) else None
    if name is None and desc is None:
        return []
    return [e.DataModelUpdated(data_model_id=state.id, name=name, description=desc)]


def delete_data_model(state: DataModelState, cmd: c.DeleteDataModel) -> list[Event]:
    if not state.live:
        raise NotFound(f"data model {cmd.data_model_id!r} not found")
    return [e.DataModelDeleted(data_model_id=state.id)]


# ---------------------------------------------------------------- connectors


class ConnectorState(State):
    """A connector as its stream holds it; `credentials` is clear only in memory, never in a
    read model (the projection drops it)."""

    id: str = ""
    space_id: str = ""
    name: str = ""
    type: str = ""
    config: dict[str, Any] = {}
    credentials: dict[str, str] | None = None
    status: str = ""
    files: list[dict[str, Any]] = []
    scanned_at: str | None = None
    created_at: str = ""
    created_by: str = ""
    updated_at: str = ""
    deleted: bool = False

    @property
    def live(self) -> bool:
        return bool(self.id) and not self.deleted

    def public_doc(self) -> dict[str, Any]:
        doc = self.model_dump(mode="json", exclude={"credentials"})
        doc["has_credentials"] = bool(self.credentials)
        return doc


def evolve_connector(state: ConnectorState, env: Envelope) -> ConnectorState:
    at = stamp(env)
    match env.data:
        case e.ConnectorCreated() as ev:
            return ConnectorState(
                id=ev.connector_id,
                space_id=ev.space_id,
                name=ev.name,
                type=ev.type,
                config=ev.config,
                credentials=ev.credentials,
                status=ev.status,
                created_at=at,
                created_by=env.actor or "",
                updated_at=at,
            )
        case e.ConnectorStatusChanged(status=status):
            return state.model_copy(update={"status": status, "updated_at": at})
        case e.ConnectorScanned(files=files):
            return state.model_copy(update={"files": files, "scanned_at": at, "updated_at": at})
        case e.ConnectorDeleted():
            return state.model_copy(update={"deleted": True, "credentials": None, "updated_at": at})
    return state


def create_connector(state: ConnectorState, cmd: c.CreateConnector) -> list[Event]:
    if state.id:
        raise Conflict(f"connector {cmd.connector_id!r} already exists")
    return [e.ConnectorCreated(**cmd.model_dump())]


def record_connector_status(state: ConnectorState, cmd: c.RecordConnectorStatus) -> list[Event]:
    """A re-probe's finding; nothing when it is what the connector already says, or when the
    connector was deleted meanwhile (a late probe changes nothing)."""
    if not state.live or cmd.status == state.status:
        return []
    return [e.ConnectorStatusChanged(connector_id=state.id, status=cmd.status)]


def record_scan(state: ConnectorState, cmd: c.RecordScan) -> list[Event]:
    if not state.live:
        raise NotFound(f"connector {cmd.connector_id!r} not found")
    return [e.ConnectorScanned(connector_id=state.id, files=cmd.files)]


def delete_connector(state: ConnectorState, cmd: c.DeleteConnector) -> list[Event]:
    if not state.live:
        raise NotFound(f"connector {cmd.connector_id!r} not found")
    return [e.ConnectorDeleted(connector_id=state.id)]


# ---------------------------------------------------------------- clusters


class ClusterState(State):
    id: str = ""
    space_id: str = ""
    name: str = ""
    manager_url: str = ""
    ingress_url: str = ""
    token: str | None = None
    allow_insecure_http: bool = False
    status: str = "unknown"
    """What the last probe of its API found (see `refresh`); never the API's own answer."""
    nodes: list[dict[str, Any]] = Field(default_factory=list)
    resources: dict[str, Any] = Field(default_factory=dict)
    status_at: str | None = None
    created_at: str = ""
    updated_at: str = ""
    deleted: bool = False

    @property
    def live(self) -> bool:
        return bool(self.id) and not self.deleted

    def public_doc(self) -> dict[str, Any]:
        doc = self.model_dump(mode="json", exclude={"token"})
        doc["has_token"] = bool(self.token)
        return doc


def evolve_cluster(state: ClusterState, env: Envelope) -> ClusterState:
    at = stamp(env)
    match env.data:
        case e.ClusterRegistered() as ev:
            return ClusterState(
                id=ev.cluster_id,
                space_id=ev.space_id,
                name=ev.name,
                manager_url=ev.manager_url,
                ingress_url=ev.ingress_url,
                token=ev.token,
                allow_insecure_http=ev.allow_insecure_http,
                created_at=at,
                updated_at=at,
            )
        case e.ClusterUpdated() as ev:
            changed = {"manager_url", "ingress_url", "token", "allow_insecure_http"}
            changes = {k: v for k, v in ev.model_dump(include=changed).items() if v is not None}
            return state.model_copy(update={**changes, "updated_at": at})
        case e.ClusterStatusChanged() as ev:
            found = ev.model_dump(include={"status", "nodes", "resources"})
            return state.model_copy(update={**found, "status_at": at, "updated_at": at})
        case e.ClusterDeleted():
            return state.model_copy(update={"deleted": True, "token": None, "updated_at": at})
    return state


def token_over_tls(manager_url: str, token: str | None, allow_insecure_http: bool) -> None:
    """A cluster's token is sent only over https, unless an administrator allowed plain http."""
    try:
        require_tls_for_secret(manager_url, token, allow_insecure_http)
    except InsecureTransport as exc:
        raise Invalid(str(exc), field="manager_url") from None


def register_cluster(state: ClusterState, cmd: c.RegisterCluster) -> list[Event]:
    if state.live:
        raise Conflict("this space already has a cluster; update or delete it")
    token_over_tls(cmd.manager_url, cmd.token, cmd.allow_insecure_http)
    return [e.ClusterRegistered(**cmd.model_dump())]


def update_cluster(state: ClusterState, cmd: c.UpdateCluster) -> list[Event]:
    if not state.live:
        raise NotFound("this space has no cluster")
    fields = {
        k: v
        for k, v in cmd.model_dump(exclude={"space_id"}).items()
        if v is not None and v != getattr(state, k)
    }
    after = state.model_copy(update=fields)
    token_over_tls(after.manager_url, after.token, after.allow_insecure_http)
    return (
        [e.ClusterUpdated(space_id=state.space_id, cluster_id=state.id, **fields)] if fields else []
    )


def record_cluster_status(state: ClusterState, cmd: c.RecordClusterStatus) -> list[Event]:
    """A probe's finding; nothing when unchanged, or when the cluster is gone meanwhile."""
    found = cmd.model_dump(include={"status", "nodes", "resources"})
    if not state.live or found == state.model_dump(include={"status", "nodes", "resources"}):
        return []
    return [e.ClusterStatusChanged(space_id=state.space_id, cluster_id=state.id, **found)]


def delete_cluster(state: ClusterState, cmd: c.DeleteCluster) -> list[Event]:
    if not state.live:
        raise NotFound("this space has no cluster")
    return [e.ClusterDeleted(space_id=state.space_id, cluster_id=state.id)]


# ---------------------------------------------------------------- dispatch

TRAININGS = Aggregate("training", TrainingState(), evolve_training)
BUNDLES = Aggregate("bundle", BundleState(), evolve_bundle)
DATA_MODELS = Aggregate("datamodel", DataModelState(), evolve_data_model)
CONNECTORS = Aggregate("connector", ConnectorState(), evolve_connector)
CLUSTERS = Aggregate("cluster", ClusterState(), evolve_cluster)

COMMAND_HANDLERS = {
    c.RecordBundle: Handler(BUNDLES, record_bundle, "bundle_id"),
    c.CreateTraining: Handler(TRAININGS, create_training, "training_id"),
    c.UpdateTraining: Handler(TRAININGS, update_training, "training_id"),
    c.ClaimTraining: Handler(TRAININGS, claim_training, "training_id"),
    c.StartTraining: Handler(TRAININGS, start_training, "training_id"),
    c.RecordCheckpoint: Handler(TRAININGS, record_checkpoint, "training_id"),
    c.FinishTraining: Handler(TRAININGS, finish_training, "training_id"),
    c.FailTraining: Handler(TRAININGS, fail_training, "training_id"),
    c.KillTraining: Handler(TRAININGS, kill_training, "training_id"),
    c.DeleteTraining: Handler(TRAININGS, delete_training, "training_id"),
    c.CreateDataModel: Handler(DATA_MODELS, create_data_model, "data_model_id"),
    c.UpdateDataModel: Handler(DATA_MODELS, update_data_model, "data_model_id"),
    c.DeleteDataModel: Handler(DATA_MODELS, delete_data_model, "data_model_id"),
    c.CreateConnector: Handler(CONNECTORS, create_connector, "connector_id"),
    c.RecordConnectorStatus: Handler(CONNECTORS, record_connector_status, "connector_id"),
    c.RecordScan: Handler(CONNECTORS, record_scan, "connector_id"),
    c.DeleteConnector: Handler(CONNECTORS, delete_connector, "connector_id"),
    c.RegisterCluster: Handler(CLUSTERS, register_cluster, "space_id"),
    c.UpdateCluster: Handler(CLUSTERS, update_cluster, "space_id"),
    c.RecordClusterStatus: Handler(CLUSTERS, record_cluster_status, "space_id"),
    c.DeleteCluster: Handler(CLUSTERS, delete_cluster, "space_id"),
}

decide = decider(COMMAND_HANDLERS)
"""The events a command causes on a state already held: for tests and callers that hold one."""
