"""Routes of seed 003's `webhooks` tag that manage webhooks out, under
/api/v1/webhooks/subscriptions (the status updates sent in are `webhooks_in_api`).

A subscription is a cursor over the event log (see `delivery`); its routes belong to the
space's owners. Every write is one command through `Kernel.execute`; `GET …/{id}` reads the
subscription as it is or as it was (`as_of`, `version`), `…/history` lists its changes, and
neither ever shows its secret.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, status
from mlplane.auth import Principal
from mlplane.deps import ContextDep, KernelDep, PrincipalDep, in_space, permitted
from mlplane.errors import Invalid, NotFound
from mlplane.events import new_id
from mlplane.eventstore import EventStore
from mlplane.history import (
    AsOf,
    AsOfParams,
    HistoryAfter,
    HistoryLimit,
    HistoryPage,
    document_at,
    entity_history,
)
from mlplane.http import PROBLEM_RESPONSES, ListPage, PageParams, list_page
from mlplane.kernel import Kernel

from . import commands as c
from . import schemas as m
from .api import SpaceDep
from .delivery import checkpoint
from .handlers import SUBSCRIPTIONS
from .projections import DEAD_LETTERS
from .projections import SUBSCRIPTIONS as SUBSCRIPTION_DOCS
from .services import entity_space
from .signing import new_secret

SUBSCRIPTION_KIND = "webhook-subscription"

webhooks = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], responses=PROBLEM_RESPONSES)

# ---------------------------------------------------------------- webhooks out


async def owned_space(kernel: Kernel, principal: Principal, space: str) -> str:
    """The space, if it exists and the caller owns it (or administers the platform)."""
    principal.require(space, owner=True)
    if await entity_space(kernel.log.store, "space", space) != space:
        raise NotFound(f"space {space!r} not found")
    return space


async def subscription_doc(kernel: Kernel, space: str, subscription_id: str) -> dict:
    doc = await kernel.doc(
        SUBSCRIPTION_DOCS, subscription_id, SUBSCRIPTIONS.stream(subscription_id)
    )
    if doc is None or doc["space_id"] != space:
        raise NotFound(f"webhook subscription {subscription_id!r} not found")
    return doc


async def public_subscription(
    kernel: Kernel, doc: dict, model: type[m.SubscriptionPublic] = m.SubscriptionPublic, **extra
):
    position = max(await kernel.docs.get_checkpoint(checkpoint(doc["id"])), doc["start_position"])
    return model.model_validate({**doc, "position": position, **extra})


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
    await kernel.execute(command, in_space(ctx, space))
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
    id: str, kernel: KernelDep, principal: PrincipalDep, space: SpaceDep, at: AsOfParams
) -> m.SubscriptionPublic:
    """Get a webhook subscription, with how far it has delivered, as it is or was (`as_of`)."""
    await owned_space(kernel, principal, space)
    doc = await subscription_doc(kernel, space, id) if at.now else await past(kernel, space, id, at)
    return await public_subscription(kernel, doc)


async def past(kernel: Kernel, space: str, subscription_id: str, at: AsOf) -> dict:
    """The subscription as of `at`, if it was this space's then (a deleted one still has a past)."""
    kind = kernel.entities[SUBSCRIPTION_KIND]
    unknown = NotFound(f"webhook subscription {subscription_id!r} not found")
    try:
        doc = await document_at(kernel.log, kind, subscription_id, at)
    except NotFound:
        raise unknown from None
    if doc["space_id"] != space:  # another space's: answered as an unknown id is
        raise unknown
    return doc


@webhooks.get("/subscriptions/{id}/history")
async def subscription_history(
    id: str,
    kernel: KernelDep,
    principal: PrincipalDep,
    space: SpaceDep,
    limit: HistoryLimit = 20,
    after: HistoryAfter = 0,
) -> HistoryPage:
    """A subscription's changes, oldest first (its secret never shows)."""
    await owned_space(kernel, principal, space)
    await past(kernel, space, id, AsOf(version=1))
    kind = kernel.entities[SUBSCRIPTION_KIND]
    return await entity_history(kernel.log, kind, id, limit=limit, after=after)


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
    command = c.UpdateSubscription(subscription_id=id, url=url, **changes)
    await kernel.execute(command, in_space(ctx, space))
    return await public_subscription(kernel, await subscription_doc(kernel, space, id))


@webhooks.delete("/subscriptions/{id}")
async def delete_subscription(
    id: str, kernel: KernelDep, principal: PrincipalDep, space: SpaceDep, ctx: ContextDep
) -> m.Ref:
    """Delete a subscription: deliveries stop and its secret is destroyed."""
    await owned_space(kernel, principal, space)
    await subscription_doc(kernel, space, id)
    await kernel.execute(c.Unsubscribe(subscription_id=id), in_space(ctx, space))
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
    command = c.RequestRedelivery(subscription_id=id, event_id=event_id)
    await kernel.execute(command, in_space(ctx, space))
    return m.RedeliveryAccepted(id=f"{id}:{event_id}", status="redelivering")
