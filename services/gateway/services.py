"""Use cases of the gateway that take more than one command or a lookup first.

Each is a function of the kernel and plain values, so its rules are tested without HTTP against
an in-memory kernel (tests/integration/test_gateway_services.py); the routes only parse,
authorise and answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache

from mlplane import aggregates
from mlplane.auth import Principal, check_password, hash_password, hash_token, new_token
from mlplane.deps import in_space
from mlplane.errors import Forbidden, NotFound, Unauthorized
from mlplane.eventlog import Context
from mlplane.events import new_id
from mlplane.kernel import Kernel

from . import commands as c
from .auth import issue_token
from .handlers import SPACES, USERS, UserState, decide, user_id_for
from .throttle import THROTTLE, LoginThrottle

INVITE_TTL = timedelta(days=7)
INVITE_PREFIX = "inv_"


# ---------------------------------------------------------------- invites


@dataclass(frozen=True)
class IssuedInvite:
    email: str
    user_id: str
    token: str
    """The invite's secret: shown once, to the owner who invited."""
    expires_at: datetime


async def invite_users(
    kernel: Kernel,
    space_id: str,
    emails: list[str],
    permissions: list[str],
    ctx: Context,
    *,
    now: datetime | None = None,
) -> list[IssuedInvite]:
    """One invite (and one secret token) per distinct address; only the tokens' hashes are
    appended. The token names its space and invite, so accepting it is one stream read."""
    expires = (now or datetime.now(UTC)) + INVITE_TTL
    issued, invitations = [], []
    for email in dict.fromkeys(address.strip().lower() for address in emails):
        invite_id = new_id()
        token = f"{INVITE_PREFIX}{space_id}.{invite_id}.{new_token('')}"
        invitation = c.Invitation(
            invite_id=invite_id,
            user_id=user_id_for(email),
            email=email,
            token_hash=hash_token(token),
        )
        invitations.append(invitation)
        issued.append(IssuedInvite(email, invitation.user_id, token, expires))
    command = c.InviteUsers(
        space_id=space_id, invitations=invitations, permissions=permissions, expires_at=expires
    )
    await kernel.execute(command, in_space(ctx, space_id))
    return issued


def parse_invite(token: str) -> tuple[str, str]:
    """(space id, invite id) of an invite token; NotFound for anything else."""
    parts = token.removeprefix(INVITE_PREFIX).split(".")
    if not token.startswith(INVITE_PREFIX) or len(parts) != 3:
        raise NotFound("no such invite")
    return parts[0], parts[1]


@dataclass(frozen=True)
class Acceptance:
    space_id: str
    user: UserState
    permissions: list[str]
    token: str | None
    """A first API token when accepting created the user; None for an existing one."""


async def accept_invite(
    kernel: Kernel,
    token: str,
    caller: Principal | None,
    ctx: Context,
    *,
    now: datetime | None = None,
) -> Acceptance:
    """Accept an invite: register the invitee if they are new, make them a member, and give a
    new user their first token.

    Only the invitee accepts: signed out when the invite creates their account, with their own
    token when the account exists, so a signed-in user is never handed someone else's account.
    A wrong, used or expired invite is refused before anything is written.
    """
    space_id, invite_id = parse_invite(token)
    space, _ = await aggregates.load(kernel.log, SPACES, space_id)
    accept = c.AcceptInvite(
        space_id=space_id,
        invite_id=invite_id,
        token_hash=hash_token(token),
        now=now or datetime.now(UTC),
    )
    decide(space, accept)  # raises for a wrong, used or expired invite
    invite = space.invites[invite_id]
    if caller is not None and caller.user_id != invite.user_id:
        raise Forbidden(
            "this invite is for another user: accept it signed out (no Authorization header), "
            "or signed in as its invitee"
        )
    user, _ = await aggregates.load(kernel.log, USERS, invite.user_id)
    if user.live and caller is None:
        raise Forbidden("this invite is for an existing user: accept it with their token")
    ctx = replace(ctx, actor=invite.user_id)
    created = not user.live
    if created:
        register = c.RegisterUser(
            user_id=invite.user_id, name=invite.email or invite.user_id, email=invite.email
        )
        user = (await kernel.execute(register, ctx)).state
    joined = (await kernel.execute(accept, in_space(ctx, space_id))).state
    secret = (await issue_token(kernel, user.id, ctx, name="invite"))[0] if created else None
    return Acceptance(space_id, user, joined.members[user.id], secret)


# ---------------------------------------------------------------- logins


@cache
def dummy_password() -> str:
    """Checked when the user is unknown, so the answer takes as long as for a wrong password."""
    return hash_password("no user has this password")


async def login(
    kernel: Kernel,
    name: str,
    password: str,
    address: str,
    ctx: Context,
    *,
    ttl: timedelta | None = None,
) -> tuple[str, c.IssueToken]:
    """A new token for the user with this name and password, counted by the login throttle
    per account and per address (docs/gateway.md); returns the secret, once."""
    throttle: LoginThrottle = kernel.extensions[THROTTLE]
    account = user_id_for(name)
    async with throttle.attempt(account, address):
        user, _ = await aggregates.load(kernel.log, USERS, account)
        stored = user.password_hash if user.live else None
        matched = await asyncio.to_thread(check_password, password, stored or dummy_password())
        if not (stored and matched):
            raise Unauthorized("wrong name or password")
    return await issue_token(kernel, user.id, replace(ctx, actor=user.id), name="login", ttl=ttl)
