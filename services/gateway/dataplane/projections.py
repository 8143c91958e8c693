"""The data plane's own read models: where each endpoint is served, folded from the events the
endpoint and model-serving contexts publish, so routing an inference reads no other service's
tables (contexts are sealed: docs/services.md).

- `gateway_endpoints`: per endpoint, its space and name, the model version it serves, the
  served name and the servers (or URL) its rollout reached, and its phase;
- `gateway_servers`: per inference server, its address, its kind and whether it is ready;
- `gateway_model_configs`: per registered model, each version's config (inputs, outputs,
  platform), for model metadata and Triton's config.
"""

from __future__ import annotations

from typing import Any

from mlplane.events import Envelope
from mlplane.projections import Projection

from services.inference_deploy import events as d
from services.triton_manager import events as s

Doc = dict[str, Any]

ENDPOINTS = "gateway_endpoints"
SERVERS = "gateway_servers"
MODEL_CONFIGS = "gateway_model_configs"
ROUTING = (ENDPOINTS, SERVERS, MODEL_CONFIGS)

PENDING, RUNNING, FAILED = "pending", "running", "failed"


def _types(*classes: type) -> frozenset[str]:
    return frozenset(cls.type_name for cls in classes)


class Endpoints(Projection):
    """A removed endpoint has no document; deploying its name again starts a new one."""

    name = ENDPOINTS
    handles = _types(
        d.EndpointDeployed,
        d.EndpointReconfigured,
        d.EndpointRolledOut,
        d.EndpointFailed,
        d.EndpointRemoved,
    )

    def key(self, event: Envelope) -> str:
        return event.data.endpoint_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        data = event.data
        if isinstance(data, d.EndpointDeployed):
            return {
                "id": data.endpoint_id,
                "space_id": data.space_id,
                "name": data.name,
                **_spec(data.spec),
                "serving": "",
                "targets": [],
                "url": "",
                "phase": PENDING,
            }
        if doc is None or isinstance(data, d.EndpointRemoved):
            return None
        if isinstance(data, d.EndpointReconfigured):
            kept = data.spec.get("served_name") == doc["served_name"]
            phase = RUNNING if kept and doc["targets"] else PENDING
            return {**doc, **_spec(data.spec), "phase": phase}
        if isinstance(data, d.EndpointRolledOut):
            running = bool(data.targets or data.url)
            return {
                **doc,
                "serving": data.served_name,
                "targets": data.targets,
                "url": data.url,
                "phase": RUNNING if running else PENDING,
            }
        return {**doc, "phase": FAILED}  # EndpointFailed


def _spec(spec: dict[str, Any]) -> Doc:
    return {
        "model_id": spec["model_id"],
        "version": str(spec["version"]),
        "served_name": spec["served_name"],
    }


class Servers(Projection):
    name = SERVERS
    handles = _types(s.ServerRegistered, s.ServerUpdated, s.ServerDeleted, s.ServerHealthChanged)

    def key(self, event: Envelope) -> str:
        return event.data.server_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        data = event.data
        if isinstance(data, s.ServerRegistered):
            return {
                "id": data.server_id,
                "host": data.host,
                "port": data.port,
                "kind": data.kind,
                "ready": False,
            }
        if doc is None or isinstance(data, s.ServerDeleted):
            return None
        if isinstance(data, s.ServerHealthChanged):
            return {**doc, "ready": data.ready}
        moved = {k: getattr(data, k) for k in ("host", "port") if getattr(data, k) is not None}
        return {**doc, **moved}  # ServerUpdated


class ModelConfigs(Projection):
    name = MODEL_CONFIGS
    handles = _types(s.ModelCreated, s.ModelDeleted, s.ModelVersionAdded, s.ModelVersionDeleted)

    def key(self, event: Envelope) -> str:
        return event.data.model_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        data = event.data
        if isinstance(data, s.ModelDeleted):
            return None
        versions = dict((doc or {}).get("versions", {}))
        if isinstance(data, s.ModelVersionAdded):
            versions[str(data.version)] = data.config
        elif isinstance(data, s.ModelVersionDeleted):
            versions.pop(str(data.version), None)
        return {"id": data.model_id, "versions": versions}


def projections() -> list[Projection]:
    return [Endpoints(), Servers(), ModelConfigs()]
