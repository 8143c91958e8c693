"""Routes of seed 003's `users` tag under /api/v1/users: the caller's profile, invites, logins
and API tokens. Token secrets appear in exactly one answer, the one that issues them."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, status
from mlplane.deps import (
    ContextDep,
    KernelDep,
    OptionalPrincipalDep,
    PrincipalDep,
    in_space,
    request_context,
)
from mlplane.errors import NotFound
from mlplane.http import PROBLEM, PROBLEM_RESPONSES, ListPage
from mlplane.kernel import Kernel

from . import commands as c
from . import schemas as m
from . import services
from .api import visible_space
from .auth import issue_token
from .handlers import UserState
from .projections import SPACES as SPACE_DOCS
from .projections import USERS as USER_DOCS

users = APIRouter(prefix="/api/v1/users", tags=["users"], responses=PROBLEM_RESPONSES)

THROTTLED = {
    429: {
        "description": "Too many failed logins for this account or from this address",
        "content": {PROBLEM: {}},
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before the next attempt",
                "schema": {"type": "integer"},
            }
        },
    }
}


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
    outcome = await kernel.execute(
        c.UpdateUser(user_id=principal.user_id, **body.model_dump()), ctx
    )
    return public_user(outcome.state)


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
    outcome = await kernel.execute(command, in_space(ctx, body.space_id))
    return m.PermissionsPublic(permissions=outcome.state.members[user_id])


@users.post("/invites/accept")
async def accept_invite(
    body: m.InviteAccept, request: Request, kernel: KernelDep, caller: OptionalPrincipalDep
) -> m.InviteAccepted:
    """Accept an invite; a new user gets their first API token in the answer.

    Only the invitee accepts: signed out when the invite creates their account, with their own
    token when the account exists. Another user's token is refused (403), so a signed-in user
    can never be handed someone else's account.
    """
    done = await services.accept_invite(
        kernel, body.token, caller, request_context(request, actor=None)
    )
    return m.InviteAccepted(
        space_id=done.space_id,
        user=public_user(done.user),
        permissions=done.permissions,
        token=done.token,
    )


@users.post("/login", status_code=status.HTTP_201_CREATED, responses=THROTTLED)
async def login(body: m.Login, request: Request, kernel: KernelDep) -> m.TokenIssuedPublic:
    """Exchange a user's name and password (set through /api/users) for an API token.

    Failed logins are counted per account and per client address; past either limit the route
    answers 429 with Retry-After, whatever the password (docs/gateway.md).
    """
    address = request.client.host if request.client else "-"
    ttl = timedelta(seconds=body.ttl_seconds) if body.ttl_seconds else None
    ctx = request_context(request, actor=None)
    secret, command = await services.login(kernel, body.name, body.password, address, ctx, ttl=ttl)
    doc = await user_doc(kernel, command.user_id)
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
    doc = await user_doc(kernel, principal.user_id)
    return m.TokenIssuedPublic(
        **public_token(doc["tokens"][command.token_id]).model_dump(), token=secret
    )


@users.delete("/me/tokens/{token_id}")
async def revoke_token(
    token_id: str, kernel: KernelDep, principal: PrincipalDep, ctx: ContextDep
) -> m.TokenPublic:
    """Revoke one of the calling user's API tokens."""
    outcome = await kernel.execute(c.RevokeToken(user_id=principal.user_id, token_id=token_id), ctx)
    return public_token(outcome.state.tokens[token_id].to_doc())


def public_token(doc: dict) -> m.TokenPublic:
    return m.TokenPublic(
        id=doc["token_id"],
        name=doc["name"],
        created_at=doc["created_at"],
        expires_at=doc["expires_at"],
        revoked=doc["revoked"],
    )
