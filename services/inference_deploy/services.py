"""Use cases of endpoints beyond one command: the specification a deployment or a change of
version is made from (a lookup in this context's projections of the registry and of training
first), an endpoint's provenance graph, its bundle, and a space's cluster. Every write goes
through `kernel.execute`; tests drive these without HTTP against an in-memory kernel.

A deployment names a registered model or a training checkpoint. A checkpoint that is not yet a
model is deployed as the model it will be registered as (`checkpoint_model_id`, version 1): the
model-serving context sees the `EndpointDeployed`, registers the checkpoint itself and announces
`ModelVersionAdded`; the endpoint answers `pending` until a server serves it (or `failed` on a
`ModelImportFailed`).
"""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from typing import Any

from mlplane.deps import in_space
from mlplane.errors import NotFound
from mlplane.eventlog import Context
from mlplane.events import new_id
from mlplane.kernel import Kernel

from services.triton_manager.events import checkpoint_model_id, served_name

from . import commands as c
from .events import endpoint_id
from .handlers import not_found
from .projections import CHECKPOINTS, CLUSTER_EVENTS, ENDPOINTS, MODELS, SERVERS, evolve_cluster
from .schemas import (
    EndpointCreate,
    EndpointPublic,
    EndpointUpdate,
    Graph,
    GraphEdge,
    GraphNode,
    ModelVersionRef,
    ProvenancePublic,
    ServerRef,
    endpoint_public,
)

Doc = dict[str, Any]


def new_revision_id() -> str:
    return str(uuid.UUID(hex=new_id()))


async def endpoint_doc(kernel: Kernel, space: str, name: str) -> Doc:
    key = endpoint_id(space, name)
    doc = await kernel.doc(ENDPOINTS, key, f"endpoint:{key}")
    if doc is None or doc.get("removed"):
        raise not_found(name)
    return doc


async def model_doc(kernel: Kernel, space: str, model_id: str) -> Doc | None:
    """A registered model of the space, as this context knows it from the registry's events."""
    doc = await kernel.doc(MODELS, model_id, f"model:{model_id}")
    return doc if doc is not None and doc["space_id"] == space else None


async def checkpoint_doc(kernel: Kernel, space: str, checkpoint_id: str) -> Doc | None:
    doc = await kernel.docs.get(CHECKPOINTS, checkpoint_id)
    if doc is None:
        await kernel.catch_up(CHECKPOINTS)
        doc = await kernel.docs.get(CHECKPOINTS, checkpoint_id)
    return doc if doc is not None and doc["space_id"] == space else None


def version_spec(model: Doc, version: int) -> Doc:
    """The part of a specification one model version decides."""
    record = model["versions"].get(str(version))
    if record is None:
        raise NotFound(f"model {model['id']!r} has no version {version}")
    return {
        "model_id": model["id"],
        "model_name": model["name"],
        "version": version,
        "served_name": served_name(model["id"], version),
        "format": record["format"],
        "checkpoint_id": record.get("checkpoint_id"),
    }


async def source_spec(kernel: Kernel, space: str, model_id: str, version: int | None) -> Doc:
    """What an endpoint serves: a model of the space (its latest version, or `version`), or a
    checkpoint of the space (registered as a model on the way, by the registry)."""
    model = await model_doc(kernel, space, model_id)
    if model is not None:
        latest = max((int(v) for v in model["versions"]), default=None)
        return version_spec(model, version or latest or 1)
    checkpoint = await checkpoint_doc(kernel, space, model_id)
    if checkpoint is None:
        raise NotFound(f"no model or checkpoint {model_id!r} in this workspace")
    registered = await model_doc(kernel, space, checkpoint_model_id(model_id))
    if registered is not None:
        return {**version_spec(registered, version or 1), "checkpoint_id": model_id}
    if version not in (None, 1):
        raise NotFound(f"checkpoint {model_id!r} has only version 1")
    model = checkpoint_model_id(model_id)
    return {
        "model_id": model,
        "model_name": checkpoint["name"],
        "version": 1,
        "served_name": served_name(model, 1),
        "format": checkpoint["format"],
        "checkpoint_id": model_id,
    }


def default_name(model_name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() else "-" for ch in model_name.lower()).strip("-")
    return (cleaned or "endpoint")[:63].rstrip("-")


async def deploy(
    kernel: Kernel,
    ctx: Context,
    space: str,
    model_id: str,
    body: EndpointCreate,
    owner: str,
    default_runtime: str,
) -> EndpointPublic:
    """Deploy an endpoint from a model or a checkpoint of `space`; answers it as it is now."""
    spec = await source_spec(kernel, space, model_id, body.version)
    name = body.name or default_name(spec["model_name"])
    spec |= {
        "replicas": body.replicas or 1,
        "selector": body.selector or {},
        "resources": body.resources or {},
        "runtime": body.runtime or default_runtime,
    }
    command = c.DeployEndpoint(
        endpoint_id=endpoint_id(space, name),
        space_id=space,
        name=name,
        revision_id=new_revision_id(),
        spec=spec,
        owner=owner,
    )
    await kernel.execute(command, in_space(ctx, space))
    return endpoint_public(await endpoint_doc(kernel, space, name))


async def reconfigure(
    kernel: Kernel, ctx: Context, space: str, name: str, body: EndpointUpdate
) -> EndpointPublic:
    """Change an endpoint's configuration: a new revision (none when nothing changes)."""
    doc = await endpoint_doc(kernel, space, name)
    changes = body.model_dump(exclude_none=True)
    if "version" in changes:
        model = await model_doc(kernel, space, doc["spec"]["model_id"])
        if model is None:
            raise NotFound(f"model {doc['spec']['model_id']!r} not found")
        changes |= version_spec(model, changes["version"])
        changes.pop("model_name")
    command = c.ReconfigureEndpoint(
        endpoint_id=doc["id"], revision_id=new_revision_id(), changes=changes
    )
    await kernel.execute(command, in_space(ctx, space))
    return endpoint_public(await endpoint_doc(kernel, space, name))


# ---------------------------------------------------------------- provenance


def node(kind: str, entity: str, name: str | None) -> GraphNode:
    return GraphNode(id=f"{kind}:{entity}", kind=kind, type=kind, name=name)


def edge(source: GraphNode, target: GraphNode, kind: str) -> GraphEdge:
    return GraphEdge(from_=source.id, to=target.id, kind=kind, type=kind)


def provenance_graph(
    doc: Doc, version: ModelVersionRef, servers: list[ServerRef], origin: Doc | None
) -> Graph:
    """bundle → training → checkpoint → model version → endpoint → servers, keyed
    `<kind>:<id>` as the training context keys its graph of a checkpoint."""
    endpoint = node("endpoint", doc["id"], doc["name"])
    served = node(
        "model_version",
        f"{version.model_id}:{version.version}",
        f"{version.name} v{version.version}",
    )
    nodes, edges = [endpoint, served], [edge(served, endpoint, "served_by")]
    for server in servers:
        on = node("server", server.id, server.name)
        nodes.append(on)
        edges.append(edge(endpoint, on, "runs_on"))
    if origin:
        checkpoint = node("checkpoint", origin["checkpoint"]["id"], origin["checkpoint"]["name"])
        training = node("training", origin["training"]["id"], origin["training"]["name"])
        nodes += [checkpoint, training]
        edges += [edge(checkpoint, served, "registered_as"), edge(training, checkpoint, "produced")]
        if origin.get("bundle"):
            bundle = node("bundle", origin["bundle"]["bundle_id"], origin["bundle"]["entrypoint"])
            nodes.append(bundle)
            edges.append(edge(bundle, training, "trained"))
    return Graph(nodes=nodes, edges=edges)


async def provenance(kernel: Kernel, space: str, name: str) -> ProvenancePublic:
    """Where an endpoint's model came from and where it serves, as a document and a graph."""
    doc = await endpoint_doc(kernel, space, name)
    spec = doc["spec"]
    model = await model_doc(kernel, space, spec["model_id"]) or {
        "id": spec["model_id"],
        "name": spec.get("model_name") or "",
        "versions": {},
    }
    record = model["versions"].get(str(spec["version"]), {})
    version = ModelVersionRef(
        model_id=model["id"],
        name=model["name"],
        version=spec["version"],
        format=record.get("format"),
        files=record.get("files", {}),
        source=record.get("source"),
        created_at=record.get("created_at"),
    )
    origin = None
    if spec.get("checkpoint_id"):
        origin = await kernel.docs.get(CHECKPOINTS, spec["checkpoint_id"])
    servers = [
        ServerRef(**{k: found[k] for k in ("id", "name", "host", "port", "kind")})
        for target in doc["targets"]
        if (found := await kernel.docs.get(SERVERS, target))
    ]
    return ProvenancePublic(
        endpoint=endpoint_public(doc),
        model_version=version,
        checkpoint=origin["checkpoint"] if origin else None,
        training=origin["training"] if origin else None,
        bundle=origin["bundle"] if origin else None,
        environment=origin["environment"] if origin else None,
        servers=servers,
        graph=provenance_graph(doc, version, servers, origin),
    )


# ---------------------------------------------------------------- bundle, logs, clusters


async def bundle(kernel: Kernel, store: Any, space: str, name: str) -> bytes:
    """The endpoint's model version in the model-repository layout and its configuration."""
    doc = await endpoint_doc(kernel, space, name)
    spec = doc["spec"]
    model = await model_doc(kernel, space, spec["model_id"])
    record = (model or {}).get("versions", {}).get(str(spec["version"]))
    if model is None or record is None:
        raise NotFound(f"model version {spec['version']} is gone")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for relative in sorted(record["files"]):
            data = await store.get_bytes(f"{record['key']}/{relative}")
            _add(tar, f"model/{model['name']}/{relative}", data)
        public = endpoint_public(doc).model_dump(mode="json")
        _add(tar, "endpoint.json", json.dumps(public, indent=2).encode())
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


async def log_lines(kernel: Kernel, endpoint: str) -> list[Doc]:
    out = []
    for env in await kernel.log.read_stream(f"endpointlog:{endpoint}"):
        out += [
            {"time": env.time.isoformat(), "build_id": env.data.build_id, "text": text}
            for text in env.data.lines
        ]
    return out


async def cluster_of(kernel: Kernel, space_id: str) -> Doc | None:
    """A space's cluster, folded from the training context's events on its stream (its token
    stays in the event store, never in a read model of this context)."""
    cluster: Doc | None = None
    handled = {cls.type_name for cls in CLUSTER_EVENTS}
    for env in await kernel.log.read_stream(f"cluster:{space_id}"):
        if env.type in handled:
            cluster = evolve_cluster(cluster, env)
    return cluster
