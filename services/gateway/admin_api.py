"""Seed 002's `/api/users`: the platform administrators' view of the same users as /api/v1.

A user is addressed by id or by login name. Passwords are stored as scrypt hashes inside the
(personal, encrypted) events and never returned; the `password` field stays in the answer's
shape as null.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status
from mlplane.auth import hash_password
from mlplane.deps import ContextDep, KernelDep, admin_only
from mlplane.errors import NotFound
from mlplane.history import (
    AsOfParams,
    HistoryAfter,
    HistoryLimit,
    HistoryPage,
    document_at,
    entity_history,
)
from mlplane.http import PROBLEM_RESPONSES, PageParams, list_page
from mlplane.kernel import Kernel

from . import commands as c
from . import schemas as m
from .handlers import user_id_for
from .projections import USERS as USER_DOCS

USER_KIND = "user"

admin = APIRouter(
    prefix="/api/users",
    tags=["admin: users"],
    responses=PROBLEM_RESPONSES,
    dependencies=[Depends(admin_only)],
)
Identity = Annotated[str, Path(description="The user's id or login name")]
App = Annotated[str, Path(min_length=1, max_length=200)]


async def find(kernel: Kernel, identity: str) -> dict:
    for key in (identity, user_id_for(identity)):
        doc = await kernel.docs.get(USER_DOCS, key)
        if doc is not None:
            return doc
    raise NotFound(f"user {identity!r} not found")


async def _hashed(password: str | None) -> str | None:
    """scrypt is slow on purpose: off the event loop, so other requests keep flowing."""
    return await asyncio.to_thread(hash_password, password) if password else None


@admin.get("")
async def list_users(kernel: KernelDep, page: PageParams) -> m.AdminUserList:
    """List users."""
    found = await list_page(kernel.docs, USER_DOCS, m.AdminUserPublic, page)
    return m.AdminUserList(users=found.data, count=found.count, has_more=found.has_more)


@admin.post("", status_code=status.HTTP_201_CREATED)
async def create_user(
    body: m.AdminUserCreate, kernel: KernelDep, ctx: ContextDep
) -> m.AdminUserWritten:
    """Create a user."""
    command = c.RegisterUser(
        user_id=user_id_for(body.name),
        admin=body.role == "admin",
        password_hash=await _hashed(body.password),
        **body.model_dump(exclude={"password"}),
    )
    return m.AdminUserWritten.model_validate((await kernel.execute(command, ctx)).state.to_doc())


async def find_any(kernel: Kernel, identity: str) -> str:
    """The id of the user with this id or name, live or not (for their history), or NotFound."""
    for key in (identity, user_id_for(identity)):
        if await kernel.log.read_stream(kernel.entities[USER_KIND].stream(key), to_version=1):
            return key
    raise NotFound(f"user {identity!r} not found")


@admin.get("/{identity}")
async def get_user(identity: Identity, kernel: KernelDep, at: AsOfParams) -> m.AdminUserPublic:
    """Get a user, as they are or as they were (`as_of`, `version`)."""
    if at.now:
        return m.AdminUserPublic.model_validate(await find(kernel, identity))
    user_id = await find_any(kernel, identity)
    doc = await document_at(kernel.log, kernel.entities[USER_KIND], user_id, at)
    return m.AdminUserPublic.model_validate(doc)


@admin.get("/{identity}/history")
async def user_history(
    identity: Identity,
    kernel: KernelDep,
    limit: HistoryLimit = 20,
    after: HistoryAfter = 0,
) -> HistoryPage:
    """A user's changes, oldest first: version, time, actor, event and the fields it changed."""
    user_id = await find_any(kernel, identity)
    return await entity_history(
        kernel.log, kernel.entities[USER_KIND], user_id, limit=limit, after=after
    )


@admin.patch("/{identity}")
async def update_user(
    identity: Identity, body: m.AdminUserUpdate, kernel: KernelDep, ctx: ContextDep
) -> m.AdminUserWritten:
    """Change a user's password, role or tags."""
    doc = await find(kernel, identity)
    command = c.UpdateUser(
        user_id=doc["id"],
        role=body.role,
        tags=body.tags,
        admin=None if body.role is None else body.role == "admin",
        password_hash=await _hashed(body.password),
    )
    return m.AdminUserWritten.model_validate((await kernel.execute(command, ctx)).state.to_doc())


@admin.delete("/{identity}")
async def delete_user(
    identity: Identity,
    kernel: KernelDep,
    ctx: ContextDep,
    forget: Annotated[bool, Query(description="Also erase their personal data for good")] = False,
) -> m.Status:
    """Delete a user; their tokens stop working at once."""
    doc = await find(kernel, identity)
    await kernel.execute(c.DeleteUser(user_id=doc["id"]), ctx)
    if forget:
        await kernel.forget(doc["id"])
    return m.Status(id=doc["id"])


@admin.get("/{identity}/apps")
async def list_user_apps(identity: Identity, kernel: KernelDep) -> m.AppsPublic:
    """List the applications a user is authorised for."""
    return m.AppsPublic(apps=(await find(kernel, identity))["apps"])


@admin.post("/{identity}/apps/{app}/auth")
async def authorize_app(
    identity: Identity, app: App, kernel: KernelDep, ctx: ContextDep
) -> m.Status:
    """Authorise a user for an application."""
    doc = await find(kernel, identity)
    await kernel.execute(c.AuthorizeApp(user_id=doc["id"], app=app), ctx)
    return m.Status(id=doc["id"])


@admin.post("/{identity}/apps/{app}/unauth")
async def unauthorize_app(
    identity: Identity, app: App, kernel: KernelDep, ctx: ContextDep
) -> m.Status:
    """Withdraw a user's authorisation for an application."""
    doc = await find(kernel, identity)
    await kernel.execute(c.UnauthorizeApp(user_id=doc["id"], app=app), ctx)
    return m.Status(id=doc["id"])
