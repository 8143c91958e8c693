"""Routes of seed 003's `data-models`, `connectors` and `clusters` tags, under /api/v1.

Connector credentials and cluster tokens are accepted, stored encrypted in the event log (as
personal fields of their own subject) and never answered; deleting a connector or a cluster
destroys its key, so the secret is unreadable from then on, in replays too.

The URLs the platform will call (an S3 connector's endpoint, a cluster's manager URL) are checked
against the outbound-address policy when they are given (422 if their host is, or resolves to,
an address outside it; see `mlplane.egress`), and again by each connection. A status is probed
when a connector or cluster is created or changed, and refreshed by a worker (`refresh`);
reading one calls nothing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from mlplane import aggregates
from mlplane.auth import Principal
from mlplane.deps import SPACE_PARAMETERS, ContextDep, KernelDep, PrincipalDep, in_space, permitted
from mlplane.errors import Invalid
from mlplane.events import new_id
from mlplane.history import AsOfParams, HistoryAfter, HistoryLimit, HistoryPage
from mlplane.http import PROBLEM_RESPONSES, ListPage, PageParams, list_page

from . import commands as c
from . import schemas as m
from .adapters.sources import open_source, probe
from .api import CLUSTER, CONNECTOR, DATA_MODEL, doc_at, history, not_found, scoped, space_of
from .connectors import file_dicts, scan
from .handlers import CONNECTORS
from .projections import CLUSTERS as CLUSTER_DOCS
from .projections import CONNECTORS as CONNECTOR_DOCS
from .projections import DATA_MODELS as DATA_MODEL_DOCS
from .refresh import refresh_cluster
from .services import training_service

data_models = APIRouter(
    prefix="/api/v1/data-models",
    tags=["data-models"],
    responses=PROBLEM_RESPONSES,
    dependencies=[SPACE_PARAMETERS],
)
connectors = APIRouter(
    prefix="/api/v1/connectors",
    tags=["connectors"],
    responses=PROBLEM_RESPONSES,
    dependencies=[SPACE_PARAMETERS],
)
clusters = APIRouter(
    prefix="/api/v1/clusters",
    tags=["clusters"],
    responses=PROBLEM_RESPONSES,
    dependencies=[SPACE_PARAMETERS],
)


# ---------------------------------------------------------------- data models


@data_models.get("")
async def list_data_models(
    request: Request, kernel: KernelDep, principal: PrincipalDep, page: PageParams
) -> ListPage[m.DataModelPublic]:
    """List data models (limit, after)."""
    space = space_of(request, principal, "data-models:list")
    return await list_page(
        kernel.docs, DATA_MODEL_DOCS, m.DataModelPublic, page, {"space_id": space}
    )


@data_models.post("", status_code=status.HTTP_201_CREATED)
async def create_data_model(
    body: m.DataModelCreate,
    space: Annotated[str, permitted("data-models:create")],
    kernel: KernelDep,
    ctx: ContextDep,
) -> m.DataModelPublic:
    """Create a data model."""
    command = c.CreateDataModel(data_model_id=new_id(), space_id=space, **body.model_dump())
    outcome = await kernel.execute(command, in_space(ctx, space))
    return m.DataModelPublic.model_validate(outcome.state.to_doc())


@data_models.get("/{id}")
async def get_data_model(
    id: str, request: Request, kernel: KernelDep, principal: PrincipalDep, at: AsOfParams
) -> m.DataModelPublic:
    """Get a data model by id, as it is or as it was (`as_of`, `version`)."""
    space = space_of(request, principal, "data-models:get")
    if not at.now:
        return m.DataModelPublic.model_validate(await doc_at(kernel, DATA_MODEL, id, space, at))
    return m.DataModelPublic.model_validate(
        await scoped(kernel, DATA_MODEL_DOCS, "data model", id, space)
    )


@data_models.get("/{id}/history")
async def data_model_history(
    id: str,
    request: Request,
    kernel: KernelDep,
    principal: PrincipalDep,
    limit: HistoryLimit = 20,
    after: HistoryAfter = 0,
) -> HistoryPage:
    """A data model's changes, oldest first: version, time, actor, event, fields changed."""
    space = space_of(request, principal, "data-models:get")
    return await history(kernel, DATA_MODEL, id, space, limit, after)


@data_models.patch("/{id}")
async def update_data_model(
    id: str,
    body: m.DataModelUpdate,
    request: Request,
    kernel: KernelDep,
    principal: PrincipalDep,
    ctx: ContextDep,
) -> m.DataModelPublic:
    """Rename a data model or change its description."""
    space = space_of(request, principal, "data-models:update")
    await scoped(kernel, DATA_MODEL_DOCS, "data model", id, space)
    command = c.UpdateDataModel(data_model_id=id, **body.model_dump())
    outcome = await kernel.execute(command, in_space(ctx, space))
    return m.DataModelPublic.model_validate(outcome.state.to_doc())


@data_models.delete("/{id}")
async def delete_data_model(
    id: str, request: Request, kernel: KernelDep, principal: PrincipalDep, ctx: ContextDep
) -> m.Ref:
    """Delete a data model."""
    space = space_of(request, principal, "data-models:delete")
    await scoped(kernel, DATA_MODEL_DOCS, "data model", id, space)
    await kernel.execute(c.DeleteDataModel(data_model_id=id), in_space(ctx, space))
    return m.Ref(id=id)


# ---------------------------------------------------------------- connectors


def public_connector(doc: dict) -> m.ConnectorPublic:
    config = doc.get("config", {})
    provider = "aws" if doc["type"] == "aws-s3" else "local"
    return m.ConnectorPublic.model_validate(
        {**doc, **config, "provider": provider, "region": config.get("region", "")}
    )


@connectors.get("")
async def list_connectors(
    request: Request, kernel: KernelDep, principal: PrincipalDep, page: PageParams
) -> ListPage[m.ConnectorPublic]:
    """List connectors (limit, after)."""
    space = space_of(request, principal, "data-models:list")
    found = await list_page(kernel.docs, CONNECTOR_DOCS, m.Ref, page, {"space_id": space})
    docs = await kernel.docs.get_many(CONNECTOR_DOCS, [r.id for r in found.data])
    data = [public_connector(docs[r.id]) for r in found.data if r.id in docs]
    return ListPage[m.ConnectorPublic](count=found.count, data=data, has_more=found.has_more)


@connectors.post("", status_code=status.HTTP_201_CREATED)
async def create_connector(
    body: m.ConnectorCreate,
    space: Annotated[str, permitted("data-models:create")],
    kernel: KernelDep,
    ctx: ContextDep,
) -> m.ConnectorPublic:
    """Create a connector (`aws-s3` with an `s3` config, or `local` with a folder); its
    storage is reached once to set its status."""
    config, credentials = split_config(body)
    egress = kernel.settings.egress
    if config.get("endpoint_url"):
        await egress.check_destination(
            config["endpoint_url"], "s3.endpoint_url", "the connector's S3 endpoint"
        )
    training = training_service(kernel)
    source = open_source(
        body.type,
        config,
        credentials,
        training.settings.datasets(kernel.settings.home),
        egress=egress,
    )
    command = c.CreateConnector(
        connector_id=new_id(),
        space_id=space,
        name=body.name,
        type=body.type,
        config=config,
        credentials=credentials,
        status=await probe(source),
    )
    await kernel.execute(command, in_space(ctx, space))
    return public_connector(
        await scoped(kernel, CONNECTOR_DOCS, "connector", command.connector_id, space)
    )


def split_config(body: m.ConnectorCreate) -> tuple[dict, dict | None]:
    """Where the files are (kept in clear) and the credentials (encrypted, write-only)."""
    if body.type == "aws-s3":
        if body.s3 is None:
            raise Invalid("an aws-s3 connector needs an 's3' config", field="s3")
        s3 = body.s3.model_dump()
        secrets = {k: s3.pop(k) for k in ("access_key_id", "secret_access_key")}
        return s3, ({k: v for k, v in secrets.items() if v} or None)
    return {"path": (body.local or m.LocalConfig()).path}, None


async def connector_source(kernel, space: str, connector_id: str):
    await scoped(kernel, CONNECTOR_DOCS, "connector", connector_id, space)
    state, _ = await aggregates.load(kernel.log, CONNECTORS, connector_id)
    training = training_service(kernel)
    return open_source(
        state.type,
        state.config,
        state.credentials,
        training.settings.datasets(kernel.settings.home),
        egress=kernel.settings.egress,
    )


@connectors.get("/{id}")
async def get_connector(
    id: str, request: Request, kernel: KernelDep, principal: PrincipalDep, at: AsOfParams
) -> m.ConnectorPublic:
    """Get a connector by id, as it is or as it was (`as_of`, `version`)."""
    space = space_of(request, principal, "data-models:get")
    if not at.now:
        return public_connector(await doc_at(kernel, CONNECTOR, id, space, at))
    return public_connector(await scoped(kernel, CONNECTOR_DOCS, "connector", id, space))


@connectors.get("/{id}/history")
async def connector_history(
    id: str,
    request: Request,
    kernel: KernelDep,
    principal: PrincipalDep,
    limit: HistoryLimit = 20,
    after: HistoryAfter = 0,
) -> HistoryPage:
    """A connector's changes, oldest first (its credentials never appear, masked or not)."""
    space = space_of(request, principal, "data-models:get")
    return await history(kernel, CONNECTOR, id, space, limit, after)


@connectors.delete("/{id}")
async def delete_connector(
    id: str, request: Request, kernel: KernelDep, principal: PrincipalDep, ctx: ContextDep
) -> m.Ref:
    """Delete a connector; its credentials' key is destroyed."""
    space = space_of(request, principal, "data-models:delete")
    await scoped(kernel, CONNECTOR_DOCS, "connector", id, space)
    await kernel.execute(c.DeleteConnector(connector_id=id), in_space(ctx, space))
    await kernel.log.forget(id)
    return m.Ref(id=id)


@connectors.get("/{id}/files")
async def list_files(
    id: str,
    request: Request,
    kernel: KernelDep,
    principal: PrincipalDep,
    prefix: Annotated[str, Query(max_length=1000)] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[m.FilePublic]:
    """List the files of a connector (prefix, limit)."""
    space = space_of(request, principal, "data-models:get")
    source = await connector_source(kernel, space, id)
    return [m.FilePublic.model_validate(f) for f in file_dicts(await source.list(prefix, limit))]


@connectors.post("/{id}/scan")
async def scan_connector(
    id: str,
    body: m.ScanRequest,
    request: Request,
    kernel: KernelDep,
    principal: PrincipalDep,
    ctx: ContextDep,
) -> m.ScanPublic:
    """Scan files of a connector (all, or those named): format, columns and column types."""
    space = space_of(request, principal, "data-models:update")
    source = await connector_source(kernel, space, id)
    files = await scan(source, body.files)
    await kernel.execute(c.RecordScan(connector_id=id, files=files), in_space(ctx, space))
    return m.ScanPublic(id=id, files=files)


# ---------------------------------------------------------------- clusters


async def cluster_doc(kernel, space: str) -> dict:
    doc = await kernel.docs.get(CLUSTER_DOCS, space)
    if doc is None:
        raise not_found("cluster of space", space)
    return doc


def insecure_http_by_admin(principal: Principal, allow_insecure_http: bool | None) -> None:
    """Only a platform administrator lets a cluster's token travel over plain http."""
    if allow_insecure_http:
        principal.require_admin()


async def check_manager_url(kernel, url: str | None) -> None:
    if url is not None:
        await kernel.settings.egress.check_destination(
            url, "manager_url", "the cluster's manager URL"
        )


async def probed(kernel, space: str) -> m.ClusterPublic:
    """Probe the cluster just written and answer it, with the status that probe recorded."""
    await refresh_cluster(kernel, space)  # a change it records is caught up by its execute
    return m.ClusterPublic.model_validate(await cluster_doc(kernel, space))


@clusters.get("")
async def get_cluster(
    request: Request, kernel: KernelDep, principal: PrincipalDep, at: AsOfParams
) -> m.ClusterStatus:
    """The space's cluster, with its nodes and resources as its last probe found them (or as
    it was: `as_of`, `version`)."""
    space = space_of(request, principal)
    found = (
        await cluster_doc(kernel, space)
        if at.now
        else await doc_at(kernel, CLUSTER, space, space, at)
    )
    doc = {"status": "unknown", "nodes": [], "resources": {}, **found}
    return m.ClusterStatus.model_validate(
        {
            **doc,
            "inference": {"manager_url": doc["manager_url"], "status": doc["status"]},
            "ingress": {"url": doc["ingress_url"]},
        }
    )


@clusters.get("/history")
async def cluster_history(
    request: Request,
    kernel: KernelDep,
    principal: PrincipalDep,
    limit: HistoryLimit = 20,
    after: HistoryAfter = 0,
) -> HistoryPage:
    """The space's cluster's changes, oldest first (its token never appears, masked or not)."""
    space = space_of(request, principal)
    return await history(kernel, CLUSTER, space, space, limit, after)


@clusters.post("", status_code=status.HTTP_201_CREATED)
async def create_cluster(
    body: m.ClusterCreate,
    space: Annotated[str, permitted(owner=True)],
    kernel: KernelDep,
    principal: PrincipalDep,
    ctx: ContextDep,
) -> m.ClusterPublic:
    """Register the space's cluster (owners); the token is stored encrypted, never returned."""
    insecure_http_by_admin(principal, body.allow_insecure_http)
    await check_manager_url(kernel, body.manager_url)
    command = c.RegisterCluster(space_id=space, cluster_id=new_id(), **body.model_dump())
    await kernel.execute(command, in_space(ctx, space))
    return await probed(kernel, space)


@clusters.patch("")
async def update_cluster(
    body: m.ClusterUpdate,
    request: Request,
    kernel: KernelDep,
    principal: PrincipalDep,
    ctx: ContextDep,
) -> m.ClusterPublic:
    """Change the space's cluster URLs or token (owners); a new manager URL withdraws an
    administrator's leave for plain http unless an administrator gives it."""
    space = space_of(request, principal)
    principal.require(space, owner=True)
    insecure_http_by_admin(principal, body.allow_insecure_http)
    await check_manager_url(kernel, body.manager_url)
    changes = body.model_dump()
    if body.manager_url is not None and not principal.admin:
        changes["allow_insecure_http"] = False
    await kernel.execute(c.UpdateCluster(space_id=space, **changes), in_space(ctx, space))
    return await probed(kernel, space)


@clusters.delete("")
async def delete_cluster(
    request: Request, kernel: KernelDep, principal: PrincipalDep, ctx: ContextDep
) -> m.Ref:
    """Delete the space's cluster (owners); its token's key is destroyed."""
    space = space_of(request, principal)
    principal.require(space, owner=True)
    doc = await cluster_doc(kernel, space)
    await kernel.execute(c.DeleteCluster(space_id=space), in_space(ctx, space))
    await kernel.log.forget(doc["id"])
    return m.Ref(id=doc["id"])
