"""FastAPI dependencies every route uses: the kernel, the caller, the context of their writes.

Everything comes from `app.state`, set by the app's lifespan, so routers import no globals and a
test can hand an app any kernel or authenticator it likes.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .auth import Authenticator, Permission, Principal
from .errors import Invalid, Unauthorized
from .eventlog import Context
from .kernel import Kernel

BEARER_DESCRIPTION = "A token from `mlplane admin token` or an invite"


class BearerPrincipal(HTTPBearer):
    """The caller a bearer token names, as one dependency.

    It is FastAPI's `HTTPBearer` (so the OpenAPI document declares the same `HTTPBearer`
    scheme) that also authenticates: one dependency to solve per request instead of two, since
    each one FastAPI solves costs about as much as the route's own work on a short read.
    `required=False` answers None for a request without a bearer token.
    """

    def __init__(self, *, required: bool) -> None:
        super().__init__(auto_error=False, scheme_name="HTTPBearer", description=BEARER_DESCRIPTION)
        self.required = required

    async def __call__(self, request: Request) -> Principal | None:  # type: ignore[override]
        credentials: HTTPAuthorizationCredentials | None = await super().__call__(request)
        if credentials is None or not credentials.credentials:
            if self.required:
                raise Unauthorized("send an 'Authorization: Bearer <token>' header")
            return None
        authenticator: Authenticator = request.app.state.authenticator
        return await authenticator.authenticate(credentials.credentials)


get_principal = BearerPrincipal(required=True)
get_optional_principal = BearerPrincipal(required=False)


async def get_kernel(request: Request) -> Kernel:
    """A coroutine, as every dependency here: FastAPI runs plain functions in a thread pool."""
    return request.app.state.kernel


KernelDep = Annotated[Kernel, Depends(get_kernel)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


def request_context(request: Request, actor: str | None) -> Context:
    """Who caused a write and under which request, copied into every event appended."""
    return Context(
        actor=actor,
        correlation_id=getattr(request.state, "correlation_id", None),
        causation_id=getattr(request.state, "request_id", None),
        source=request.app.state.event_source,
    )


async def get_context(
    request: Request, principal: Annotated[Principal, Depends(get_principal)]
) -> Context:
    return request_context(request, principal.user_id)


SPACE_HEADER = "X-Space-ID"


SPACE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


async def space_parameters(
    x_space_id: Annotated[
        str | None,
        Header(
            alias=SPACE_HEADER,
            pattern=f"^{SPACE_ID.pattern}$",
            description="The space the call acts in (a member of one space may leave it out)",
        ),
    ] = None,
    space_id: Annotated[
        str | None,
        Query(pattern=f"^{SPACE_ID.pattern}$", description="The space, when no X-Space-ID header"),
    ] = None,
) -> None:
    """How a call names its space, in the OpenAPI document and checked for form; a router whose
    routes act in a space lists it (`dependencies=[SPACE_PARAMETERS]`), `named_space` reads it."""


SPACE_PARAMETERS = Depends(space_parameters)


def named_space(request: Request) -> str | None:
    """The space a request names: the X-Space-ID header, else the `space_id` query parameter.

    A value no space id can have (other characters, over 128 of them) is a 422 naming where it
    came from, rather than a space that merely does not exist."""
    if named := request.headers.get(SPACE_HEADER):
        where = SPACE_HEADER
    else:
        named, where = request.query_params.get("space_id"), "space_id"
    if named and not SPACE_ID.fullmatch(named):
        raise Invalid(f"{where} is not a space id", field=where)
    return named or None


def acting_space(principal: Principal, named: str | None, permission: str | None = None) -> str:
    """The space a call acts in: the one it names, or the caller's only space; checked against
    the caller's memberships (another space is a 404)."""
    space = named
    if not space:
        spaces = principal.space_ids()
        if len(spaces) != 1:
            raise Invalid(
                f"name the space with an {SPACE_HEADER} header or a space_id parameter",
                field=SPACE_HEADER,
            )
        space = spaces[0]
    principal.require(space, permission)
    return space


def permitted(
    permission: Permission | None = None, *, owner: bool = False, path: str | None = None
) -> Any:
    """A dependency answering the space a call acts in, once the caller may act there with
    `permission` (or as one of its owners).

    FastAPI solves dependencies before it validates the body, so a caller without the right is
    refused (403 inside the space, 404 outside it) whatever they send, before any lookup: the
    answer never depends on the body or on whether an id exists. `path` names the path parameter
    that holds the space (`/inference/{workspace}`); otherwise the space is `named_space`'s.
    """

    async def space(request: Request, principal: PrincipalDep) -> str:
        named = request.path_params.get(path) if path else named_space(request)
        acting = acting_space(principal, named, permission)
        if owner:
            principal.require(acting, owner=True)
        return acting

    return Depends(space)


async def admin_only(principal: PrincipalDep) -> Principal:
    """The caller, if a platform administrator; as a dependency it refuses before the body."""
    principal.require_admin()
    return principal


def in_space(ctx: Context, space_id: str) -> Context:
    return replace(ctx, space=space_id)


OptionalPrincipalDep = Annotated[Principal | None, Depends(get_optional_principal)]
ContextDep = Annotated[Context, Depends(get_context)]
AdminDep = Annotated[Principal, Depends(admin_only)]
