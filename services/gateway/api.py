"""Routes of seed 003's `spaces` and `users` tags, under /api/v1.

Every route checks the caller's membership of the space it touches (an id from another space is a
404), writes go through the pure decisions in `handlers`, and a write answers with the state its
own events produced after the read models have caught up, so the next read sees it too.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from mlplane import aggregates
from mlplane.auth import Principal, check_password, hash_password, hash_token, new_token
from mlplane.deps import (
    ContextDep,
    KernelDep,
    OptionalPrincipalDep,
    PrincipalDep,
    in_space,
    request_context,
)
from mlplane.errors import Forbidden, NotFound, Unauthorized
from mlplane.eventlog import Context
from mlplane.events import new_id
from mlplane.http import PROBLEM_RESPONSES, ListPage, PageParams, list_page
from mlplane.kernel import Kernel

from . import commands as c
from . import models as m
from .auth import issue_token
from .handlers import SPACES, USERS, SpaceState, UserState, decide, user_id_for
from .projections import MEMBERSHIPS, READ_MODELS
from .projections import SPACES as SPACE_DOCS
from .projections import USERS as USER_DOCS

INVITE_TTL = timedelta(days=7)
INVITE_PREFIX = "inv_"
DUMMY_PASSWORD = hash_password("no user has this password")
"""Checked when the user is unknown, so the answer takes as long as for a wrong password."""

spaces = APIRouter(prefix="/api/v1/spaces", tags=["spaces"], responses=PROBLEM_RESPONSES)
users = APIRouter(prefix="/api/v1/users", tags=["users"], responses=PROBLEM_RESPONSES)


async def write_space(kernel: Kernel, command: c.Command, ctx: Context) -> SpaceState:
    space_id = command.space_id  # type: ignore[attr-defined]
    outcome = await aggregates.execute(
        kernel.log, SPACES, space_id, decide, command, in_space(ctx, space_id)
    )
    await kernel.catch_up(*READ_MODELS)
    return outcome.state


async def write_user(kernel: Kernel, command: c.Command, ctx: Context) -> UserState:
    outcome = await aggregates.execute(kernel.log, USERS, command.user_id, decide, command, ctx)  # type: ignore[attr-defined]
    await kernel.catch_up(*READ_MODELS)
    return outcome.state


async def visible_space(
    kernel: Kernel,
    principal: Principal,
    space_id: str,
    *,
    owner: bool = False,
    deleted: bool = False,
) -> dict:
    """The space's document if the caller may see it (and act as owner, when asked)."""
    principal.require(space_id, owner=owner)
    doc = await kernel.docs.get(SPACE_DOCS, space_id)
    if doc is None or doc["deleted"] != deleted:
        raise NotFound(f"space {space_id!r} not found")
    return doc


def public_space(state: SpaceState | dict) -> m.SpacePublic:
    return m.SpacePublic.model_validate(state.to_doc() if isinstance(state, SpaceState) else state)


# ---------------------------------------------------------------- spaces


@spaces.get("")
async def list_spaces(
    kernel: KernelDep,
    principal: PrincipalDep,
    page: PageParams,
    deleted: Annotated[
        bool, Query(description="List deleted spaces instead (to restore one)")
    ] = False,
) -> ListPage[m.SpacePublic]:
    """List the spaces the caller belongs to."""
    scope = None if principal.admin else principal.space_ids()
    return await list_page(
        kernel.docs, SPACE_DOCS, m.SpacePublic, page, {"deleted": deleted, "_key": scope}
    )


@spaces.post("", status_code=status.HTTP_201_CREATED)
async def create_space(
    body: m.SpaceCreate, kernel: KernelDep, principal: PrincipalDep, ctx: ContextDep
) -> m.SpacePublic:
    """Create a space owned by the caller."""
    command = c.CreateSpace(space_id=new_id(), owner_id=principal.user_id, **body.model_dump())
    return public_space(await write_space(kernel, command, ctx))


@spaces.get("/{id}")
async def get_space(id: str, kernel: KernelDep, principal: PrincipalDep) -> m.SpacePublic:
    """Get a space by id."""
    return public_space(await visible_space(kernel, principal, id))


@spaces.patch("/{id}")
async def update_space(
    id: str, body: m.SpaceUpdate, kernel: KernelDep, principal: PrincipalDep, ctx: ContextDep
) -> m.SpacePublic:
    """Rename a space or change its description (owners)."""
    await visible_space(kernel, principal, id, owner=True)
    return public_space(
        await write_space(kernel, c.UpdateSpace(space_id=id, **body.model_dump()), ctx)
    )


@spaces.delete("/{id}")
async def delete_space(
    id: str, kernel: KernelDep, principal: PrincipalDep, ctx: ContextDep
) -> m.SpaceRef:
    """Delete a space (owners); it can be restored."""
    await visible_space(kernel, principal, id, owner=True)
    await write_space(kernel, c.DeleteSpace(space_id=id), ctx)
    return m.SpaceRef(id=id)


@spaces.post("/{id}/restore")
async def restore_space(
    id: str, kernel: KernelDep, principal: PrincipalDep, ctx: ContextDep
) -> m.SpaceRef:
    """Restore a deleted space (owners)."""
    await visible_space(kernel, principal, id, owner=True, deleted=True)
    await write_space(kernel, c.RestoreSpace(space_id=id), ctx)
    return m.SpaceRef(id=id)


@spaces.post("/{id}/invite")
async def invite_users(
    id: str, body: m.InviteCreate, kernel: KernelDep, principal: PrincipalDep, ctx: ContextDep
) -> m.InvitePublic:
    """Invite users by email with the given permissions (owners); answers one token per invite."""
    await visible_space(kernel, principal, id, owner=True)
    expires = datetime.now(UTC) + INVITE_TTL
    tokens, invitations = {}, []
    for email in dict.fromkeys(address.strip().lower() for address in body.emails):
        invite_id = new_id()
        tokens[email] = f"{INVITE_PREFIX}{id}.{invite_id}.{new_token('')}"
        invitations.append(
            c.Invitation(
                invite_id=invite_id,
                user_id=user_id_for(email),
                email=email,
                token_hash=hash_token(tokens[email]),
            )
        )
    command = c.InviteUsers(
        space_id=id, invitations=invitations, permissions=body.roles, expires_at=expires
    )
    await write_space(kernel, command, ctx)
    issued = [
        m.InviteIssued(email=i.email, user_id=i.user_id, token=tokens[i.email], expires_at=expires)
        for i in invitations
    ]
    return m.InvitePublic(emails=list(tokens), invites=issued)


@spaces.get("/{id}/members")
async def list_members(
    id: str, kernel: KernelDep, principal: PrincipalDep, page: PageParams
) -> ListPage[m.MemberPublic]:
    """List the members of a space and their permissions."""
    await visible_space(kernel, principal, id)
    if page.after:
        page.after = f"{id}:{page.after}"
    return await list_page(kernel.docs, MEMBERSHIPS, m.MemberPublic, page, {"space_id": id})


# ---------------------------------------------------------------- users


def public_user(state: UserState | dict, model: type[m.Output] = m.UserPublic):
    return model.model_validate(state.to_doc() if isinstance(state, UserState) else state)


async def user_doc(kernel: Kernel, user_id: str) -> dict:
    doc = await kernel.docs.get(USER_DOCS, user_id)
    if doc is None:
        raise NotFound("user not found")
    return doc


@users.get("/me")
async def get_me(kernel: KernelDep, principal: PrincipalDep) -> m.UserMe:
    """Get the calling user, with their spaces and permissions."""
    doc = await user_doc(kernel, principal.user_id)
    found = await kernel.docs.get_many(SPACE_DOCS, principal.space_ids())
    spaces_ = [
        m.SpaceMembership(
            id=sid, name=found[sid]["name"], role=ms.role, permissions=sorted(ms.permissions)
        )
        for sid, ms in principal.memberships.items()
        if sid in found and not found[sid]["deleted"]
    ]
    granted = sorted({p for s in spaces_ for p in s.permissions})
    return m.UserMe(**public_user(doc).model_dump(), permissions=granted, spaces=spaces_)


@users.patch("/me")
async def update_me(
    body: m.UserUpdate, kernel: KernelDep, principal: PrincipalDep, ctx: ContextDep
) -> m.UserPublic:
    """Update the calling user's name or role."""
    await user_doc(kernel, principal.user_id)
    state = await write_user(
        kernel, c.UpdateUser(user_id=principal.user_id, **body.model_dump()), ctx
    )
    return public_user(state)


@users.post("/{user_id}/permissions")
async def grant_permissions(
    user_id: str,
    body: m.PermissionsGrant,
    kernel: KernelDep,
    principal: PrincipalDep,
    ctx: ContextDep,
) -> m.PermissionsPublic:
    """Add permissions to a member of a space (the space's owners)."""
    await visible_space(kernel, principal, body.space_id, owner=True)
    command = c.GrantPermissions(
        space_id=body.space_id, user_id=user_id, permissions=list(body.permissions)
    )
    state = await write_space(kernel, command, ctx)
    return m.PermissionsPublic(permissions=state.members[user_id])


@users.post("/invites/accept")
async def accept_invite(
    body: m.InviteAccept, request: Request, kernel: KernelDep, caller: OptionalPrincipalDep
) -> m.InviteAccepted:
    """Accept an invite; a new user gets their first API token in the answer."""
    space_id, invite_id = parse_invite(body.token)
    space, _ = await aggregates.load(kernel.log, SPACES, space_id)
    accept = c.AcceptInvite(
        space_id=space_id,
        invite_id=invite_id,
        token_hash=hash_token(body.token),
        now=datetime.now(UTC),
    )
    decide(space, accept)  # refuse a wrong, used or expired invite before anything is written
    invite = space.invites[invite_id]
    ctx = request_context(request, actor=invite.user_id)
    user, _ = await aggregates.load(kernel.log, USERS, invite.user_id)
    if user.live and (caller is None or caller.user_id != user.id):
        raise Forbidden("this invite is for an existing user: accept it with their token")
    created = not user.live
    if created:
        register = c.RegisterUser(
            user_id=invite.user_id, name=invite.email or invite.user_id, email=invite.email
        )
        user = (
            await aggregates.execute(kernel.log, USERS, invite.user_id, decide, register, ctx)
        ).state
    state = await write_space(kernel, accept, ctx)
    secret = None
    if created:
        secret, _ = await issue_token(kernel, user.id, ctx, name="invite")
        await kernel.catch_up(*READ_MODELS)
    return m.InviteAccepted(
        space_id=space_id, user=public_user(user), permissions=state.members[user.id], token=secret
    )


def parse_invite(token: str) -> tuple[str, str]:
    parts = token.removeprefix(INVITE_PREFIX).split(".")
    if not token.startswith(INVITE_PREFIX) or len(parts) != 3:
        raise NotFound("no such invite")
    return parts[0], parts[1]


@users.post("/login", status_code=status.HTTP_201_CREATED)
async def login(body: m.Login, request: Request, kernel: KernelDep) -> m.TokenIssuedPublic:
    """Exchange a user's name and password (set through /api/users) for an API token."""
    user, _ = await aggregates.load(kernel.log, USERS, user_id_for(body.name))
    stored = user.password_hash if user.live else None
    matched = await asyncio.to_thread(check_password, body.password, stored or DUMMY_PASSWORD)
    if not (stored and matched):
        raise Unauthorized("wrong name or password")
    ctx = request_context(request, actor=user.id)
    ttl = timedelta(seconds=body.ttl_seconds) if body.ttl_seconds else None
    secret, command = await issue_token(kernel, user.id, ctx, name="login", ttl=ttl)
    await kernel.catch_up(*READ_MODELS)
    doc = await user_doc(kernel, user.id)
    return m.TokenIssuedPublic(
        **public_token(doc["tokens"][command.token_id]).model_dump(), token=secret
    )


@users.get("/me/tokens")
async def list_tokens(kernel: KernelDep, principal: PrincipalDep) -> ListPage[m.TokenPublic]:
    """List the calling user's API tokens (never their secrets)."""
    doc = await user_doc(kernel, principal.user_id)
    tokens = [public_token(t) for t in doc["tokens"].values()]
    return ListPage[m.TokenPublic](count=len(tokens), data=tokens, has_more=False)


@users.post("/me/tokens", status_code=status.HTTP_201_CREATED)
async def create_token(
    body: m.TokenCreate, kernel: KernelDep, principal: PrincipalDep, ctx: ContextDep
) -> m.TokenIssuedPublic:
    """Issue an API token for the calling user; the secret is shown once."""
    ttl = timedelta(seconds=body.ttl_seconds) if body.ttl_seconds else None
    secret, command = await issue_token(kernel, principal.user_id, ctx, name=body.name, ttl=ttl)
    await kernel.catch_up(*READ_MODELS)
    doc = await user_doc(kernel, principal.user_id)
    return m.TokenIssuedPublic(
        **public_token(doc["tokens"][command.token_id]).model_dump(), token=secret
    )


@users.delete("/me/tokens/{token_id}")
async def revoke_token(
    token_id: str, kernel: KernelDep, principal: PrincipalDep, ctx: ContextDep
) -> m.TokenPublic:
    """Revoke one of the calling user's API tokens."""
    state = await write_user(
        kernel, c.RevokeToken(user_id=principal.user_id, token_id=token_id), ctx
    )
    return public_token(state.tokens[token_id].to_doc())


def public_token(doc: dict) -> m.TokenPublic:
    return m.TokenPublic(
        id=doc["token_id"],
        name=doc["name"],
        created_at=doc["created_at"],
        expires_at=doc["expires_at"],
        revoked=doc["revoked"],
    )
