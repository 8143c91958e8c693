"""Read models of the training context, each a pure fold that can be dropped and rebuilt.

Trainings, data models, connectors and clusters reuse the aggregates' folds; connectors and
clusters keep only public fields (a credential or token never reaches a read model). The
provenance of a checkpoint starts from its CheckpointCreated event (which carries the bundle
hashes, training and environment it came from) and gathers every later event of any context
that names the checkpoint (`checkpoint_id`): model versions, endpoints, evaluations.
"""

from __future__ import annotations

from typing import Any

from mlplane.events import Envelope, registry
from mlplane.projections import Projection

from . import events as e
from .handlers import (
    ClusterState,
    ConnectorState,
    DataModelState,
    TrainingState,
    evolve_cluster,
    evolve_connector,
    evolve_data_model,
    evolve_training,
    stamp,
)

Doc = dict[str, Any]

TRAININGS = "training_trainings"
CHECKPOINTS = "training_checkpoints"
BUNDLES = "training_bundles"
PROVENANCE = "training_provenance"
DATA_MODELS = "training_data_models"
CONNECTORS = "training_connectors"
CLUSTERS = "training_clusters"


def _types(*classes: type) -> frozenset[str]:
    return frozenset(cls.type_name for cls in classes)


class Trainings(Projection):
    name = TRAININGS
    handles = _types(
        e.TrainingCreated,
        e.TrainingUpdated,
        e.TrainingBuildStarted,
        e.TrainingStarted,
        e.CheckpointCreated,
        e.TrainingSucceeded,
        e.TrainingFailed,
        e.TrainingKilled,
        e.TrainingDeleted,
    )

    def key(self, event: Envelope) -> str:
        return event.data.training_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        state = evolve_training(
            TrainingState.model_validate(doc) if doc else TrainingState(), event
        )
        return None if state.deleted else state.to_doc()


class Checkpoints(Projection):
    name = CHECKPOINTS
    handles = _types(e.CheckpointCreated)

    def key(self, event: Envelope) -> str:
        return event.data.checkpoint_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc:
        data = event.data
        return {
            "id": data.checkpoint_id,
            "created_at": stamp(event),
            **data.model_dump(mode="json", exclude={"checkpoint_id", "provenance"}),
        }


class Bundles(Projection):
    name = BUNDLES
    handles = _types(e.BundleUploaded)

    def key(self, event: Envelope) -> str:
        return event.data.bundle_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc:
        data = event.data
        return {
            "id": data.bundle_id,
            "created_at": stamp(event),
            "created_by": event.actor or "",
            **data.model_dump(mode="json", exclude={"bundle_id"}),
        }


def _names_checkpoint(model: type) -> bool:
    """Another context's event that can name a checkpoint: a `checkpoint_id` field, or a
    `spec` document (an endpoint's configuration) that may hold one."""
    fields = model.model_fields
    return model.topic != e.TOPIC and ("checkpoint_id" in fields or "spec" in fields)


def checkpoint_of(data: Any) -> str | None:
    named = getattr(data, "checkpoint_id", None)
    spec = getattr(data, "spec", None)
    if named is None and isinstance(spec, dict):
        named = spec.get("checkpoint_id")
    return named if isinstance(named, str) and named else None


class Provenance(Projection):
    """Per checkpoint: where it came from and, as they happen, what used it."""

    name = PROVENANCE

    @property
    def handles(self) -> frozenset[str]:  # type: ignore[override]
        users = {name for name, model in registry.types().items() if _names_checkpoint(model)}
        return frozenset({e.CheckpointCreated.type_name, *users})

    def key(self, event: Envelope) -> str | None:
        return checkpoint_of(event.data)

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        data = event.data
        if isinstance(data, e.CheckpointCreated):
            return {**(doc or {"used_by": []}), **checkpoint_provenance(data, stamp(event))}
        use = {
            "type": event.type,
            "stream_id": event.stream_id,
            "at": stamp(event),
            "space_id": event.space,
            "event_id": event.id,
        }
        base = doc or {"id": checkpoint_of(data), "used_by": []}
        return {**base, "used_by": [*base.get("used_by", []), use]}


def checkpoint_provenance(data: e.CheckpointCreated, at: str) -> Doc:
    origin = data.provenance
    bundle = {
        k: origin.get(k, "")
        for k in (
            "bundle_id",
            "code_hash",
            "data_hash",
            "parameters_hash",
            "bundle_hash",
            "entrypoint",
        )
    }
    return {
        "id": data.checkpoint_id,
        "space_id": data.space_id,
        "checkpoint": data.checkpoint_node(at),
        "training": {
            "id": data.training_id,
            "name": origin.get("training_name", ""),
            "source": origin.get("source", ""),
            "owner": origin.get("owner", ""),
            "architecture": origin.get("architecture", ""),
            "configuration": origin.get("configuration", {}),
            "parameters": origin.get("parameters", {}),
            "data_model_id": origin.get("data_model_id", ""),
            "connectors": origin.get("connectors", []),
            "started_at": origin.get("started_at"),
        },
        "bundle": bundle if bundle["bundle_id"] else None,
        "environment": {
            "runtime": origin.get("runtime", ""),
            "runner": origin.get("runner", ""),
            **origin.get("environment", {}),
        },
    }


class DataModels(Projection):
    name = DATA_MODELS
    handles = _types(e.DataModelCreated, e.DataModelUpdated, e.DataModelDeleted)

    def key(self, event: Envelope) -> str:
        return event.data.data_model_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        state = evolve_data_model(
            DataModelState.model_validate(doc) if doc else DataModelState(), event
        )
        return None if state.deleted else state.to_doc()


class Connectors(Projection):
    name = CONNECTORS
    handles = _types(
        e.ConnectorCreated, e.ConnectorStatusChanged, e.ConnectorScanned, e.ConnectorDeleted
    )

    def key(self, event: Envelope) -> str:
        return event.data.connector_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        state = ConnectorState.model_validate(doc) if doc else ConnectorState()
        state = evolve_connector(state, event)
        if state.deleted:
            return None
        public = state.public_doc()
        public["has_credentials"] = public["has_credentials"] or bool(
            doc and doc.get("has_credentials")
        )
        return public


class Clusters(Projection):
    """One cluster per space, keyed by the space."""

    name = CLUSTERS
    handles = _types(
        e.ClusterRegistered, e.ClusterUpdated, e.ClusterStatusChanged, e.ClusterDeleted
    )

    def key(self, event: Envelope) -> str:
        return event.data.space_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        state = evolve_cluster(ClusterState.model_validate(doc) if doc else ClusterState(), event)
        if state.deleted:
            return None
        public = state.public_doc()
        public["has_token"] = public["has_token"] or bool(doc and doc.get("has_token"))
        return public


def projections() -> list[Projection]:
    return [
        Trainings(),
        Checkpoints(),
        Bundles(),
        Provenance(),
        DataModels(),
        Connectors(),
        Clusters(),
    ]
