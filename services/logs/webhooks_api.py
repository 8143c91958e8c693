"""Routes of seed 003's `webhooks` tag, under /api/v1/webhooks.

`POST /api/v1/webhooks` is the seed's "webhook to receive status updates": an outside system
reports on one of its space's entities. It carries no bearer token; it is signed with the
space's inbound secret (Standard Webhooks headers, see `signing`), and names its space with
X-Space-ID. Each accepted update is an `EntityStatusReported` event on the entity's own stream;
a repeated `webhook-id` is accepted again and changes nothing.

The subscription routes manage webhooks out (see `delivery`); they, and the inbound secret,
belong to the space's owners.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Request, status
from mlplane import aggregates
from mlplane.auth import Principal
from mlplane.deps import (
    ContextDep,
    KernelDep,
    PrincipalDep,
    in_space,
    permitted,
    request_context,
)
from mlplane.errors import Invalid, NotFound, Unauthorized
from mlplane.eventlog import Context
from mlplane.events import new_id
from mlplane.eventstore import EventStore
from mlplane.http import PROBLEM_RESPONSES, ListPage, PageParams, field_errors, list_page
from mlplane.kernel import Kernel
from pydantic import ValidationError

from . import commands as c
from . import models as m
from .api import SPACE_HEADER, SpaceDep
from .delivery import checkpoint
from .handlers import INBOUND, SUBSCRIPTIONS, decide, entity
from .projections import DEAD_LETTERS
from .projections import SUBSCRIPTIONS as SUBSCRIPTION_DOCS
from .settings import SETTINGS, LogsSettings
from .signing import BadSignature, new_secret, verify

webhooks = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], responses=PROBLEM_RESPONSES)


def settings_of(kernel: Kernel) -> LogsSettings:
    return kernel.extensions[SETTINGS]


# ---------------------------------------------------------------- webhooks in


@webhooks.post("")
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
    outcome = await aggregates.execute(
        kernel.log, entity(update.object), update.id, decide, command, ctx
    )
    return m.StatusAccepted(id=webhook_id, duplicate=not outcome.events)


@webhooks.post("/inbound-secret", status_code=status.HTTP_201_CREATED)
async def rotate_inbound_secret(
    kernel: KernelDep, principal: PrincipalDep, space: SpaceDep, ctx: ContextDep
) -> m.InboundSecretPublic:
    """Issue the space's secret for signing status updates (owners); shown once, the old one stops working."""
    await owned_space(kernel, principal, space)
    previous, _ = await aggregates.load(kernel.log, INBOUND, space)
    command = c.RotateInboundSecret(space_id=space, secret_id=new_id(), secret=new_secret())
    await aggregates.execute(kernel.log, INBOUND, space, decide, command, in_space(ctx, space))
    if previous.secret_id:
        await kernel.log.forget(previous.secret_id)
    return m.InboundSecretPublic(space_id=space, secret_id=command.secret_id, secret=command.secret)


# ---------------------------------------------------------------- webhooks out


async def owned_space(kernel: Kernel, principal: Principal, space: str) -> str:
    """The space, if it exists and the caller owns it (or administers the platform)."""
    principal.require(space, owner=True)
    found, _ = await aggregates.load(kernel.log, entity("space"), space)
    if not found.exists:
        raise NotFound(f"space {space!r} not found")
    return space


async def subscription_doc(kernel: Kernel, space: str, subscription_id: str) -> dict:
    doc = await kernel.docs.get(SUBSCRIPTION_DOCS, subscription_id)
    if doc is None:
        await kernel.catch_up(SUBSCRIPTION_DOCS)
        doc = await kernel.docs.get(SUBSCRIPTION_DOCS, subscription_id)
    if doc is None or doc["space_id"] != space:
        raise NotFound(f"webhook subscription {subscription_id!r} not found")
    return doc


async def public_subscription(
    kernel: Kernel, doc: dict, model: type[m.SubscriptionPublic] = m.SubscriptionPublic, **extra
):
    position = max(await kernel.docs.get_checkpoint(checkpoint(doc["id"])), doc["start_position"])
    return model.model_validate({**doc, "position": position, **extra})


async def write(kernel: Kernel, command: c.Command, ctx: Context, space: str):
    outcome = await aggregates.execute(
        kernel.log,
        SUBSCRIPTIONS,
        command.subscription_id,
        decide,
        command,  # type: ignore[attr-defined]
        in_space(ctx, space),
    )
    await kernel.catch_up(SUBSCRIPTION_DOCS, DEAD_LETTERS)
    return outcome


async def check_destination(kernel: Kernel, url: str) -> str:
    """A webhook URL's shape and every address of its host (see `mlplane.egress`), or 422."""
    return await kernel.settings.egress.check_destination(url, "url", "a webhook URL")


async def position_at(store: EventStore, moment: datetime) -> int:
    """The position just before the first event appended at or after `moment`."""
    low, high = 1, await store.head_position() + 1
    while low < high:
        middle = (low + high) // 2
        found = await store.read_all(middle, 1)
        if not found or found[0].time >= moment:
            high = middle
        else:
            low = min(found[0].position + 1, high)
    return low - 1


async def start_position(kernel: Kernel, start: m.StartAt) -> int:
    head = await kernel.log.store.head_position()
    if start.position is not None:
        if start.position > head:
            raise Invalid(
                f"start.position {start.position} is beyond the event log's head ({head})",
                field="start.position",
            )
        return start.position
    if start.time is not None:
        moment = start.time if start.time.tzinfo else start.time.replace(tzinfo=UTC)
        return await position_at(kernel.log.store, moment)
    return head


@webhooks.post(
    "/subscriptions", status_code=status.HTTP_201_CREATED, dependencies=[permitted(owner=True)]
)
async def create_subscription(
    body: m.SubscriptionCreate,
    kernel: KernelDep,
    principal: PrincipalDep,
    space: SpaceDep,
    ctx: ContextDep,
) -> m.SubscriptionCreated:
    """Subscribe a URL to the space's events (owners); a generated secret is shown once."""
    await owned_space(kernel, principal, space)
    url = await check_destination(kernel, str(body.url))
    secret = body.secret or new_secret()
    command = c.Subscribe(
        subscription_id=new_id(),
        space_id=space,
        url=url,
        event_types=body.event_types,
        secret=secret,
        start_position=await start_position(kernel, body.start),
        description=body.description,
    )
    await write(kernel, command, ctx, space)
    doc = await subscription_doc(kernel, space, command.subscription_id)
    shown = None if body.secret else secret
    return await public_subscription(kernel, doc, m.SubscriptionCreated, secret=shown)


@webhooks.get("/subscriptions")
async def list_subscriptions(
    kernel: KernelDep, principal: PrincipalDep, space: SpaceDep, page: PageParams
) -> ListPage[m.SubscriptionPublic]:
    """List the space's webhook subscriptions (owners)."""
    await owned_space(kernel, principal, space)
    found = await list_page(
        kernel.docs, SUBSCRIPTION_DOCS, m.SubscriptionPublic, page, {"space_id": space}
    )
    for item in found.data:
        item.position = max(
            await kernel.docs.get_checkpoint(checkpoint(item.id)), item.start_position
        )
    return found


@webhooks.get("/subscriptions/{id}")
async def get_subscription(
    id: str, kernel: KernelDep, principal: PrincipalDep, space: SpaceDep
) -> m.SubscriptionPublic:
    """Get a webhook subscription, with how far it has delivered."""
    await owned_space(kernel, principal, space)
    return await public_subscription(kernel, await subscription_doc(kernel, space, id))


@webhooks.patch("/subscriptions/{id}")
async def update_subscription(
    id: str,
    body: m.SubscriptionUpdate,
    kernel: KernelDep,
    principal: PrincipalDep,
    space: SpaceDep,
    ctx: ContextDep,
) -> m.SubscriptionPublic:
    """Change a subscription's URL, event types or description, or pause and resume it."""
    await owned_space(kernel, principal, space)
    await subscription_doc(kernel, space, id)
    url = await check_destination(kernel, str(body.url)) if body.url is not None else None
    changes = body.model_dump(exclude={"url"})
    await write(kernel, c.UpdateSubscription(subscription_id=id, url=url, **changes), ctx, space)
    return await public_subscription(kernel, await subscription_doc(kernel, space, id))


@webhooks.delete("/subscriptions/{id}")
async def delete_subscription(
    id: str, kernel: KernelDep, principal: PrincipalDep, space: SpaceDep, ctx: ContextDep
) -> m.Ref:
    """Delete a subscription: deliveries stop and its secret is destroyed."""
    await owned_space(kernel, principal, space)
    await subscription_doc(kernel, space, id)
    await write(kernel, c.Unsubscribe(subscription_id=id), ctx, space)
    await kernel.log.forget(id)
    return m.Ref(id=id)


@webhooks.get("/subscriptions/{id}/dead-letters")
async def list_dead_letters(
    id: str, kernel: KernelDep, principal: PrincipalDep, space: SpaceDep, page: PageParams
) -> ListPage[m.DeadLetterPublic]:
    """List the events a subscription could not deliver, newest first."""
    await owned_space(kernel, principal, space)
    await subscription_doc(kernel, space, id)
    return await list_page(
        kernel.docs, DEAD_LETTERS, m.DeadLetterPublic, page, {"subscription_id": id}
    )


@webhooks.post(
    "/subscriptions/{id}/dead-letters/{event_id}/redeliver", status_code=status.HTTP_202_ACCEPTED
)
async def redeliver_dead_letter(
    id: str,
    event_id: str,
    kernel: KernelDep,
    principal: PrincipalDep,
    space: SpaceDep,
    ctx: ContextDep,
) -> m.RedeliveryAccepted:
    """Send a dead-lettered event again; its status tells how it went."""
    await owned_space(kernel, principal, space)
    await subscription_doc(kernel, space, id)
    await write(kernel, c.RequestRedelivery(subscription_id=id, event_id=event_id), ctx, space)
    return m.RedeliveryAccepted(id=f"{id}:{event_id}", status="redelivering")
