"""Routes of seed 003's `spaces` tag under /api/v1/spaces.

Every route checks the caller's membership of the space it touches (an id from another space is a
404); a write is one `kernel.execute` of a command and answers with the state its own events
produced after the read models have caught up, so the next read sees it too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from mlplane.auth import Principal
from mlplane.deps import (
    ContextDep,
    KernelDep,
    PrincipalDep,
    in_space,
    permitted,
)
from mlplane.errors import Conflict, NotFound
from mlplane.events import new_id
from mlplane.history import (
    AsOfParams,
    HistoryAfter,
    HistoryLimit,
    HistoryPage,
    document_at,
    entity_history,
)
from mlplane.http import (
    PROBLEM_RESPONSES,
    ListPage,
    PageAfter,
    PageLimit,
    PageParams,
    Pagination,
    json_answer,
    list_page,
)
from mlplane.kernel import Kernel

from . import commands as c
from . import schemas as m
from . import services
from .handlers import SpaceState
from .projections import MEMBERSHIPS
from .projections import SPACES as SPACE_DOCS

SPACE_KIND = "space"

spaces = APIRouter(prefix="/api/v1/spaces", tags=["spaces"], responses=PROBLEM_RESPONSES)


async def visible_space(
    kernel: Kernel,
    principal: Principal,
    space_id: str,
    *,
    owner: bool = False,
    deleted: bool | None = False,
) -> dict:
    """The space's document if the caller may see it (and act as owner, when asked), deleted
    or live as asked (`deleted=None`: either)."""
    principal.require(space_id, owner=owner)
    doc = await kernel.docs.get(SPACE_DOCS, space_id)
    if doc is None or deleted is not None and doc["deleted"] != deleted:
        raise NotFound(f"space {space_id!r} not found")
    return doc


def public_space(state: SpaceState | dict) -> m.SpacePublic:
    return m.SpacePublic.model_validate(state.to_doc() if isinstance(state, SpaceState) else state)


# ---------------------------------------------------------------- spaces


@spaces.get("", response_model=ListPage[m.SpacePublic])
async def list_spaces(
    request: Request,
    principal: PrincipalDep,
    deleted: Annotated[
        bool, Query(description="List deleted spaces instead (to restore one)")
    ] = False,
    limit: PageLimit = 10,
    after: PageAfter = None,
) -> Response:
    """List the spaces the caller belongs to."""
    # The most frequent read: the kernel is taken from the app rather than through KernelDep,
    # the page's parameters are declared here rather than through PageParams, and the page is
    # answered as its JSON bytes, since each dependency FastAPI solves and its re-validation
    # of a returned model cost more than the read itself (bench_gateway).
    kernel: Kernel = request.app.state.kernel
    scope = None if principal.admin else principal.space_ids()
    found = await list_page(
        kernel.docs,
        SPACE_DOCS,
        m.SpacePublic,
        Pagination(limit, after),
        {"deleted": deleted, "_key": scope},
    )
    return json_answer(found)


@spaces.post("", status_code=status.HTTP_201_CREATED)
async def create_space(
    body: m.SpaceCreate, kernel: KernelDep, principal: PrincipalDep, ctx: ContextDep
) -> m.SpacePublic:
    """Create a space owned by the caller."""
    command = c.CreateSpace(space_id=new_id(), owner_id=principal.user_id, **body.model_dump())
    outcome = await kernel.execute(command, in_space(ctx, command.space_id))
    return public_space(outcome.state)


@spaces.get("/{id}")
async def get_space(
    id: str, kernel: KernelDep, principal: PrincipalDep, at: AsOfParams
) -> m.SpacePublic:
    """Get a space by id, as it is or as it was (`as_of`, `version`)."""
    doc = await visible_space(kernel, principal, id, deleted=False if at.now else None)
    if not at.now:
        doc = await document_at(kernel.log, kernel.entities[SPACE_KIND], id, at)
    return public_space(doc)


@spaces.get("/{id}/history")
async def space_history(
    id: str,
    kernel: KernelDep,
    principal: PrincipalDep,
    limit: HistoryLimit = 20,
    after: HistoryAfter = 0,
) -> HistoryPage:
    """A space's changes, oldest first: version, time, actor, event and the fields it changed."""
    await visible_space(kernel, principal, id, deleted=None)
    return await entity_history(
        kernel.log, kernel.entities[SPACE_KIND], id, limit=limit, after=after
    )


@spaces.patch("/{id}")
async def update_space(
    id: str, body: m.SpaceUpdate, kernel: KernelDep, principal: PrincipalDep, ctx: ContextDep
) -> m.SpacePublic:
    """Rename a space or change its description (owners)."""
    await visible_space(kernel, principal, id, owner=True)
    outcome = await kernel.execute(
        c.UpdateSpace(space_id=id, **body.model_dump()), in_space(ctx, id)
    )
    return public_space(outcome.state)


@spaces.delete("/{id}")
async def delete_space(
    id: str, kernel: KernelDep, principal: PrincipalDep, ctx: ContextDep
) -> m.SpaceRef:
    """Delete a space (owners); it can be restored."""
    await visible_space(kernel, principal, id, owner=True)
    await kernel.execute(c.DeleteSpace(space_id=id), in_space(ctx, id))
    return m.SpaceRef(id=id)


@spaces.post("/{id}/restore")
async def restore_space(
    id: str, kernel: KernelDep, principal: PrincipalDep, ctx: ContextDep
) -> m.SpaceRef:
    """Restore a deleted space (owners)."""
    if not (await visible_space(kernel, principal, id, owner=True, deleted=None))["deleted"]:
        raise Conflict(f"space {id!r} is not deleted; only a deleted space can be restored")
    await kernel.execute(c.RestoreSpace(space_id=id), in_space(ctx, id))
    return m.SpaceRef(id=id)


@spaces.post("/{id}/invite", dependencies=[permitted(owner=True, path="id")])
async def invite_users(
    id: str, body: m.InviteCreate, kernel: KernelDep, principal: PrincipalDep, ctx: ContextDep
) -> m.InvitePublic:
    """Invite users by email with the given permissions (owners); answers one token per invite."""
    await visible_space(kernel, principal, id, owner=True)
    issued = await services.invite_users(kernel, id, body.emails, body.roles, ctx)
    invites = [
        m.InviteIssued(email=i.email, user_id=i.user_id, token=i.token, expires_at=i.expires_at)
        for i in issued
    ]
    return m.InvitePublic(emails=[i.email for i in issued], invites=invites)


@spaces.get("/{id}/members")
async def list_members(
    id: str, kernel: KernelDep, principal: PrincipalDep, page: PageParams
) -> ListPage[m.MemberPublic]:
    """List the members of a space and their permissions."""
    await visible_space(kernel, principal, id)
    if page.after:
        page.after = f"{id}:{page.after}"
    return await list_page(kernel.docs, MEMBERSHIPS, m.MemberPublic, page, {"space_id": id})
