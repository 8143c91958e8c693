"""Which configuration answered an inference: a projection of the serving and training contexts'
events, and the pure lookup over it.

The logs service keeps its own read model of what it needs (collection `logs_explain`), folded
from the other contexts' published events only (`events` modules, as sealed contexts allow):

| document | folded from |
| --- | --- |
| `endpoint:<id>` | `EndpointDeployed`, `EndpointReconfigured` (revisions, rollbacks), `EndpointRolledOut`, `EndpointRemoved` (inference_deploy) |
| `model:<id>` | `ModelCreated`, `ModelUpdated`, `ModelVersionAdded`, `ModelVersionDeleted` (triton_manager) |
| `server:<id>` | `ServerRegistered`, `ServerUpdated`, `ServerDeleted` (triton_manager) |
| `checkpoint:<id>` | `CheckpointCreated` (training) |
| `training:<id>` | `TrainingCreated` (training: the bundle's hashes are copied onto it) |
| `bundle:<id>` | `BundleUploaded` (training) |

An endpoint's document keeps its whole timeline: every revision configured (with the time it
was configured) and every rollout (which served name went live on which servers, and when).
The revision "in force" at a log's time is the last one configured by then that serves what the
last rollout by then put live (`revision_at`). Times are the events' append times; the log's
time is the data plane's clock when it answered, a little after it routed the request.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from mlplane.aggregates import stamp
from mlplane.events import Envelope
from mlplane.projections import Projection

from services.inference_deploy import events as deploy
from services.training import events as training
from services.triton_manager import events as serving

Doc = dict[str, Any]

EXPLAIN = "logs_explain"

ENDPOINT_EVENTS = (
    deploy.EndpointDeployed,
    deploy.EndpointReconfigured,
    deploy.EndpointRolledOut,
    deploy.EndpointRemoved,
)
MODEL_EVENTS = (
    serving.ModelCreated,
    serving.ModelUpdated,
    serving.ModelVersionAdded,
    serving.ModelVersionDeleted,
)
SERVER_EVENTS = (serving.ServerRegistered, serving.ServerUpdated, serving.ServerDeleted)
TRAINING_EVENTS = (training.TrainingCreated, training.CheckpointCreated, training.BundleUploaded)


def _key(event: Any) -> str:
    match event:
        case (
            deploy.EndpointDeployed()
            | deploy.EndpointReconfigured()
            | deploy.EndpointRolledOut()
            | deploy.EndpointRemoved()
        ):
            return f"endpoint:{event.endpoint_id}"
        case (
            serving.ModelCreated()
            | serving.ModelUpdated()
            | serving.ModelVersionAdded()
            | serving.ModelVersionDeleted()
        ):
            return f"model:{event.model_id}"
        case serving.ServerRegistered() | serving.ServerUpdated() | serving.ServerDeleted():
            return f"server:{event.server_id}"
        case training.CheckpointCreated():
            return f"checkpoint:{event.checkpoint_id}"
        case training.TrainingCreated():
            return f"training:{event.training_id}"
        case training.BundleUploaded():
            return f"bundle:{event.bundle_id}"
    raise TypeError(f"the explain projection does not fold {type(event).__name__}")


def _revision(event: Any, at: str) -> Doc:
    return {
        "revision_id": event.revision_id,
        "revision": event.revision,
        "spec": event.spec,
        "rollback_of": getattr(event, "rollback_of", None),
        "at": at,
    }


def evolve_endpoint(doc: Doc | None, env: Envelope) -> Doc | None:
    at, ev = stamp(env), env.data
    match ev:
        case deploy.EndpointDeployed():  # a name removed and deployed again keeps its stream
            before = doc or {"created_at": at, "revisions": [], "rollouts": []}
            return {
                **before,
                "kind": "endpoint",
                "id": ev.endpoint_id,
                "space_id": ev.space_id,
                "name": ev.name,
                "removed_at": None,
                "revisions": [*before["revisions"], _revision(ev, at)],
            }
        case _ if doc is None:
            return None
        case deploy.EndpointReconfigured():
            return {**doc, "revisions": [*doc["revisions"], _revision(ev, at)]}
        case deploy.EndpointRolledOut():
            rollout = {
                "revision_id": ev.revision_id,
                "served_name": ev.served_name,
                "targets": list(ev.targets),
                "at": at,
            }
            return {**doc, "rollouts": [*doc["rollouts"], rollout]}
        case deploy.EndpointRemoved():
            return {**doc, "removed_at": at}
    return doc


def evolve_model(doc: Doc | None, env: Envelope) -> Doc | None:
    at, ev = stamp(env), env.data
    match ev:
        case serving.ModelCreated():
            return {"kind": "model", "id": ev.model_id, "space_id": ev.space_id, "name": ev.name}
        case _ if doc is None:
            return None
        case serving.ModelUpdated(name=name) if name is not None:
            return {**doc, "name": name}
        case serving.ModelVersionAdded():
            version = {
                "version": ev.version,
                "format": ev.format,
                "key": ev.key,
                "files": ev.files,
                "checkpoint_id": ev.checkpoint_id,
                "source": ev.source,
                "added_at": at,
            }
            return {**doc, "versions": {**doc.get("versions", {}), str(ev.version): version}}
        case serving.ModelVersionDeleted():
            versions = dict(doc.get("versions", {}))
            if str(ev.version) in versions:
                versions[str(ev.version)] = {**versions[str(ev.version)], "deleted_at": at}
            return {**doc, "versions": versions}
    return doc


def evolve_server(doc: Doc | None, env: Envelope) -> Doc | None:
    ev = env.data
    match ev:
        case serving.ServerRegistered():
            return {
                "kind": "server",
                "id": ev.server_id,
                "name": ev.name,
                "host": ev.host,
                "port": ev.port,
                "server_kind": ev.kind,
                "managed": ev.managed,
            }
        case _ if doc is None:
            return None
        case serving.ServerUpdated():
            changed = {k: getattr(ev, k) for k in ("name", "host", "port")}
            return {**doc, **{k: v for k, v in changed.items() if v is not None}}
        case serving.ServerDeleted():
            return {**doc, "deleted_at": stamp(env)}
    return doc


def evolve_training(doc: Doc | None, env: Envelope) -> Doc | None:
    ev = env.data
    match ev:
        case training.TrainingCreated():
            return {
                "kind": "training",
                "id": ev.training_id,
                "space_id": ev.space_id,
                "name": ev.name,
                "source": ev.source,
                "architecture": ev.architecture,
                "bundle_id": ev.bundle_id,
                "code_hash": ev.code_hash,
                "data_hash": ev.data_hash,
                "parameters_hash": ev.parameters_hash,
                "bundle_hash": ev.bundle_hash,
            }
        case training.CheckpointCreated():
            return {
                "kind": "checkpoint",
                "id": ev.checkpoint_id,
                "space_id": ev.space_id,
                "training_id": ev.training_id,
                "name": ev.name,
                "version": ev.version,
                "format": ev.format,
                "uri": ev.uri,
                "metrics": ev.metrics,
            }
        case training.BundleUploaded():
            return {
                "kind": "bundle",
                "id": ev.bundle_id,
                "space_id": ev.space_id,
                "code_hash": ev.code_hash,
                "data_hash": ev.data_hash,
                "parameters_hash": ev.parameters_hash,
                "bundle_hash": ev.bundle_hash,
            }
    return doc


FOLDS = {
    **{cls.type_name: evolve_endpoint for cls in ENDPOINT_EVENTS},
    **{cls.type_name: evolve_model for cls in MODEL_EVENTS},
    **{cls.type_name: evolve_server for cls in SERVER_EVENTS},
    **{cls.type_name: evolve_training for cls in TRAINING_EVENTS},
}


class Explain(Projection):
    """The serving and training facts an inference log is explained with (see the module)."""

    name = EXPLAIN
    handles = frozenset(FOLDS)

    def key(self, event: Envelope) -> str:
        return _key(event.data)

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        return FOLDS[event.type](doc, event)


# ---------------------------------------------------------------- the lookup, pure


def endpoint_at(candidates: list[Doc], at: str) -> Doc | None:
    """Of the endpoints that bore a log's endpoint name, the one that existed at `at` (an
    endpoint removed and another created under its name are two)."""
    alive = [
        d
        for d in candidates
        if d["created_at"] <= at and (d.get("removed_at") is None or d["removed_at"] > at)
    ]
    return max(alive, key=lambda d: d["created_at"], default=None)


def revision_at(endpoint: Doc, at: str) -> tuple[Doc | None, Doc | None]:
    """The revision in force at `at` and the last rollout by then (None before the first).

    The data plane routes to what the last rollout put on the servers (its served name); the
    revision in force is the last one configured by then that serves that name: a change that
    keeps the model version (replicas, resources, a rollback to the same version) is in force
    at once, one that changes it only once rolled out. Before any rollout, the last revision
    configured by then."""
    configured = [r for r in endpoint["revisions"] if r["at"] <= at]
    rollouts = endpoint["rollouts"]
    index = bisect_right([r["at"] for r in rollouts], at)
    if not index:
        return (configured[-1] if configured else None), None
    rollout = rollouts[index - 1]
    serving = [r for r in configured if r["spec"].get("served_name") == rollout["served_name"]]
    rolled = next((r for r in configured if r["revision_id"] == rollout["revision_id"]), None)
    return (serving[-1] if serving else rolled), rollout


def explanation(log: dict[str, Any], endpoint: Doc | None, docs: dict[str, Doc]) -> dict:
    """The answer of `GET /inference-logs/{id}/explain` from the log, the endpoint it named
    (as `endpoint_at` found it) and the `logs_explain` documents by key (`model:<id>`, ...)."""
    at = log["time"]
    revision, rollout = revision_at(endpoint, at) if endpoint else (None, None)
    spec = (revision or {}).get("spec", {})
    model_id = spec.get("model_id") or log["model"]
    version = str(spec.get("version") or log["version"] or "")
    model = docs.get(f"model:{model_id}")
    version_doc = (model or {}).get("versions", {}).get(version)
    checkpoint_id = spec.get("checkpoint_id") or (version_doc or {}).get("checkpoint_id")
    checkpoint = docs.get(f"checkpoint:{checkpoint_id}") if checkpoint_id else None
    trained = docs.get(f"training:{checkpoint['training_id']}") if checkpoint else None
    bundle = (
        docs.get(f"bundle:{trained['bundle_id']}") if trained and trained["bundle_id"] else None
    )
    servers = [docs.get(f"server:{t}") or {"id": t} for t in (rollout or {}).get("targets", [])]
    return {
        "log_id": log["id"],
        "time": at,
        "endpoint": _endpoint(endpoint, revision, rollout),
        "model": _model(model_id, version, model, version_doc),
        "servers": [_server(s) for s in servers],
        "checkpoint": _pick(checkpoint, "id", "name", "version", "format", "uri", "metrics"),
        "training": _pick(trained, "id", "name", "source", "architecture"),
        "bundle": _hashes(trained, bundle),
        "matches_log": model_id == log["model"] and version == str(log["version"]),
    }


def _pick(doc: Doc | None, *names: str) -> dict | None:
    return None if doc is None else {n: doc.get(n) for n in names}


def _endpoint(endpoint: Doc | None, revision: Doc | None, rollout: Doc | None) -> dict | None:
    if endpoint is None:
        return None
    revision = revision or {}
    return {
        "id": endpoint["id"],
        "name": endpoint["name"],
        "revision_id": revision.get("revision_id"),
        "revision": revision.get("revision"),
        "rollback_of": revision.get("rollback_of"),
        "configured_at": revision.get("at"),
        "rolled_out_at": (rollout or {}).get("at"),
        "served_name": (rollout or {}).get("served_name")
        or revision.get("spec", {}).get("served_name"),
    }


def _model(model_id: str, version: str, model: Doc | None, version_doc: Doc | None) -> dict:
    return {
        "id": model_id,
        "name": (model or {}).get("name"),
        "version": version,
        "format": (version_doc or {}).get("format"),
        "source": (version_doc or {}).get("source"),
        "files": (version_doc or {}).get("files", {}),
    }


def _server(doc: Doc) -> dict:
    return {
        "id": doc["id"],
        "name": doc.get("name"),
        "host": doc.get("host"),
        "port": doc.get("port"),
        "kind": doc.get("server_kind"),
    }


def _hashes(trained: Doc | None, bundle: Doc | None) -> dict | None:
    names = ("code_hash", "data_hash", "parameters_hash", "bundle_hash")
    source = bundle or trained
    if source is None:
        return None
    hashes = {n: source.get(n) or (trained or {}).get(n) or "" for n in names}
    return {"id": (trained or {}).get("bundle_id") or None, **hashes}
