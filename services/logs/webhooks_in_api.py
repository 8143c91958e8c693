"""Routes of seed 003's `webhooks` tag for status updates sent in, under /api/v1/webhooks.

`POST /api/v1/webhooks` is the seed's "webhook to receive status updates": an outside system
reports on one of its space's entities. It carries no bearer token; it is signed with the
space's inbound secret (Standard Webhooks headers, see `signing`), and names its space with
X-Space-ID. Each accepted update is an `EntityStatusReported` event on this service's own stream
`status-report:<object>:<id>` (the entity's stream belongs to its context; whoever cares follows
the event); a repeated `webhook-id` is accepted again and changes nothing.

The inbound secret and the status reports belong to the space's owners; both are entities with
a history (`as_of`, `version`, `…/history`), and no answer ever holds a secret but the one that
issues it.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Header, Request, status
from mlplane import aggregates
from mlplane.deps import (
    ContextDep,
    KernelDep,
    PrincipalDep,
    in_space,
    request_context,
)
from mlplane.errors import Invalid, NotFound, Unauthorized
from mlplane.events import new_id
from mlplane.history import (
    AsOfParams,
    HistoryAfter,
    HistoryLimit,
    HistoryPage,
    document_at,
    entity_history,
)
from mlplane.http import PROBLEM_RESPONSES, field_errors
from mlplane.kernel import Kernel
from pydantic import ValidationError

from . import commands as c
from . import schemas as m
from .api import SPACE_HEADER, SpaceDep
from .handlers import INBOUND, STATUS_REPORTS
from .projections import INBOUND_SECRETS
from .projections import STATUS_REPORTS as STATUS_REPORT_DOCS
from .services import report_status
from .settings import SETTINGS, LogsSettings
from .signing import BadSignature, new_secret, verify
from .webhooks_api import owned_space

INBOUND_KIND = "webhook-inbound-secret"
STATUS_REPORT_KIND = "status-report"

webhooks_in = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], responses=PROBLEM_RESPONSES)


def settings_of(kernel: Kernel) -> LogsSettings:
    return kernel.extensions[SETTINGS]


@webhooks_in.post("")
async def receive_status_update(
    request: Request,
    kernel: KernelDep,
    x_space_id: Annotated[str | None, Header(alias=SPACE_HEADER)] = None,
    webhook_id: Annotated[str | None, Header(alias="webhook-id", max_length=200)] = None,
    webhook_timestamp: Annotated[str | None, Header(alias="webhook-timestamp")] = None,
    webhook_signature: Annotated[str | None, Header(alias="webhook-signature")] = None,
) -> m.StatusAccepted:
    """Webhook to receive status updates about the sending space's entities (signed)."""
    body = await request.body()
    if not x_space_id:
        raise Unauthorized(f"name the sending space with an {SPACE_HEADER} header")
    inbound, _ = await aggregates.load(kernel.log, INBOUND, x_space_id)
    try:
        if not inbound.secret:
            raise BadSignature("webhook-signature does not match")
        verify(
            inbound.secret,
            webhook_id,
            webhook_timestamp,
            webhook_signature,
            body,
            now=time.time(),
            tolerance=settings_of(kernel).webhook_tolerance_s,
        )
    except BadSignature as exc:
        raise Unauthorized(str(exc)) from None
    try:
        update = m.StatusUpdate.model_validate_json(body)
    except ValidationError as exc:
        errors = field_errors(list(exc.errors()))
        raise Invalid(
            "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors
        ) from None
    assert webhook_id is not None
    command = c.ReportStatus(space_id=x_space_id, delivery_id=webhook_id, **update.model_dump())
    ctx = in_space(request_context(request, actor=f"webhook:{x_space_id}"), x_space_id)
    recorded = await report_status(kernel, command, ctx)
    return m.StatusAccepted(id=webhook_id, duplicate=not recorded)


@webhooks_in.post("/inbound-secret", status_code=status.HTTP_201_CREATED)
async def rotate_inbound_secret(
    kernel: KernelDep, principal: PrincipalDep, space: SpaceDep, ctx: ContextDep
) -> m.InboundSecretPublic:
    """Issue the space's secret for signing status updates (owners); shown once, the old one stops working."""
    await owned_space(kernel, principal, space)
    previous, _ = await aggregates.load(kernel.log, INBOUND, space)
    command = c.RotateInboundSecret(space_id=space, secret_id=new_id(), secret=new_secret())
    await kernel.execute(command, in_space(ctx, space))
    if previous.secret_id:
        await kernel.log.forget(previous.secret_id)
    return m.InboundSecretPublic(space_id=space, secret_id=command.secret_id, secret=command.secret)


@webhooks_in.get("/inbound-secrets/{id}")
async def get_inbound_secret(
    id: str, kernel: KernelDep, principal: PrincipalDep, space: SpaceDep, at: AsOfParams
) -> m.InboundSecretInfo:
    """Which inbound secret a space (`id`) signs with and since when, never the secret (owners)."""
    await owned_space(kernel, principal, space)
    if id != space:
        raise NotFound(f"no inbound secret for space {id!r}")
    if at.now:
        doc = await kernel.doc(INBOUND_SECRETS, id, INBOUND.stream(id))
        if doc is None:
            raise NotFound(f"no inbound secret for space {id!r}")
    else:
        doc = await document_at(kernel.log, kernel.entities[INBOUND_KIND], id, at)
    return m.InboundSecretInfo.model_validate(doc)


@webhooks_in.get("/inbound-secrets/{id}/history")
async def inbound_secret_history(
    id: str,
    kernel: KernelDep,
    principal: PrincipalDep,
    space: SpaceDep,
    limit: HistoryLimit = 20,
    after: HistoryAfter = 0,
) -> HistoryPage:
    """When the space's inbound secret was rotated, and by whom (owners)."""
    await owned_space(kernel, principal, space)
    if id != space:
        raise NotFound(f"no inbound secret for space {id!r}")
    kind = kernel.entities[INBOUND_KIND]
    return await entity_history(kernel.log, kind, id, limit=limit, after=after)


async def report_doc(kernel: Kernel, space: str, report_id: str, at) -> dict:
    """The status report, now or as of `at`; another space's reads exactly as an unknown one."""
    kind = kernel.entities[STATUS_REPORT_KIND]
    unknown = NotFound(f"no status report for {report_id!r}")
    if at is None or at.now:
        doc = await kernel.doc(STATUS_REPORT_DOCS, report_id, STATUS_REPORTS.stream(report_id))
    else:
        try:
            doc = await document_at(kernel.log, kind, report_id, at)
        except NotFound:
            raise unknown from None
    if doc is None or doc["space_id"] != space:
        raise unknown
    return doc


@webhooks_in.get("/status-reports/{id}")
async def get_status_report(
    id: str, kernel: KernelDep, principal: PrincipalDep, space: SpaceDep, at: AsOfParams
) -> m.StatusReportPublic:
    """The last status sent in about an entity (`id` is `<object>:<entity id>`) (owners)."""
    await owned_space(kernel, principal, space)
    return m.StatusReportPublic.model_validate(await report_doc(kernel, space, id, at))


@webhooks_in.get("/status-reports/{id}/history")
async def status_report_history(
    id: str,
    kernel: KernelDep,
    principal: PrincipalDep,
    space: SpaceDep,
    limit: HistoryLimit = 20,
    after: HistoryAfter = 0,
) -> HistoryPage:
    """Every status sent in about an entity, oldest first (owners)."""
    await owned_space(kernel, principal, space)
    await report_doc(kernel, space, id, None)
    kind = kernel.entities[STATUS_REPORT_KIND]
    return await entity_history(kernel.log, kind, id, limit=limit, after=after)
