"""Pure decisions of the gateway: state is a fold of a stream, a command becomes events.

Two kinds of streams: `space:<id>` (the space, its members and its invites, so accepting an
invite and becoming a member is one atomic append) and `user:<id>` (profile, tokens, apps).
Nothing here does I/O; `Kernel.execute` loads, decides and appends, through the table at the
foot (`COMMAND_HANDLERS`).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from mlplane.aggregates import Aggregate, State, stamp
from mlplane.auth import same_secret
from mlplane.commands import Handler, decider
from mlplane.errors import Conflict, MlplaneError, NotFound
from mlplane.events import Envelope, Event
from pydantic import Field

from . import commands as c
from . import events as e


class InviteExpired(MlplaneError):
    status = 410
    title = "Invite expired"


def user_id_for(name: str) -> str:
    """The id of the user with this login name (an email for invited users): one name, one
    stream, so two concurrent registrations of a name cannot both succeed."""
    return "u" + hashlib.sha256(f"mlplane-user:{name.strip().lower()}".encode()).hexdigest()[:24]


# ---------------------------------------------------------------- spaces


class Invite(State):
    invite_id: str
    user_id: str
    email: str | None = None
    permissions: list[str]
    token_hash: str
    expires_at: datetime
    accepted: bool = False


class SpaceState(State):
    id: str = ""
    name: str = ""
    description: str = ""
    owner_id: str = ""
    created_at: str = ""
    created_by: str = ""
    updated_at: str = ""
    updated_by: str = ""
    deleted: bool = False
    members: dict[str, list[str]] = {}
    invites: dict[str, Invite] = {}

    @property
    def live(self) -> bool:
        return bool(self.id) and not self.deleted


def evolve_space(state: SpaceState, env: Envelope) -> SpaceState:
    touched = {"updated_at": stamp(env), "updated_by": env.actor or ""}
    match env.data:
        case e.SpaceCreated(space_id=sid, name=name, description=desc, owner_id=owner):
            return SpaceState(
                id=sid,
                name=name,
                description=desc,
                owner_id=owner,
                created_at=stamp(env),
                created_by=env.actor or "",
                members={owner: []},
                **touched,
            )
        case e.SpaceUpdated() as ev:
            changes = {
                k: v
                for k, v in (("name", ev.name), ("description", ev.description))
                if v is not None
            }
            return state.model_copy(update={**changes, **touched})
        case e.SpaceDeleted():
            return state.model_copy(update={"deleted": True, **touched})
        case e.SpaceRestored():
            return state.model_copy(update={"deleted": False, **touched})
        case e.UserInvited() as ev:
            invite = Invite(**ev.model_dump(exclude={"space_id"}))
            return state.model_copy(update={"invites": {**state.invites, ev.invite_id: invite}})
        case e.InviteAccepted() as ev:
            invite = state.invites[ev.invite_id].model_copy(update={"accepted": True})
            members = _with_permissions(state.members, ev.user_id, ev.permissions)
            invites = {**state.invites, ev.invite_id: invite}
            return state.model_copy(update={"invites": invites, "members": members})
        case e.PermissionGranted() as ev:
            members = _with_permissions(state.members, ev.user_id, ev.permissions)
            return state.model_copy(update={"members": members})
    return state


def _with_permissions(members: dict[str, list[str]], user_id: str, granted: list[str]) -> dict:
    return {**members, user_id: sorted(set(members.get(user_id, [])) | set(granted))}


def _live_space(state: SpaceState) -> SpaceState:
    if not state.live:
        raise NotFound(f"space {state.id!r} not found" if state.id else "space not found")
    return state


def create_space(state: SpaceState, cmd: c.CreateSpace) -> list[Event]:
    if state.id:
        raise Conflict(f"space {cmd.space_id!r} already exists")
    return [e.SpaceCreated(**cmd.model_dump())]


def update_space(state: SpaceState, cmd: c.UpdateSpace) -> list[Event]:
    _live_space(state)
    name = cmd.name if cmd.name not in (None, state.name) else None
    desc = cmd.description if cmd.description not in (None, state.description) else None
    if name is None and desc is None:
        return []
    return [e.SpaceUpdated(space_id=state.id, name=name, description=desc)]


def delete_space(state: SpaceState, cmd: c.DeleteSpace) -> list[Event]:
    return [e.SpaceDeleted(space_id=_live_space(state).id)]


def restore_space(state: SpaceState, cmd: c.RestoreSpace) -> list[Event]:
    if not state.id:
        raise NotFound(f"space {cmd.space_id!r} not found")
    return [e.SpaceRestored(space_id=state.id)] if state.deleted else []


def invite_users(state: SpaceState, cmd: c.InviteUsers) -> list[Event]:
    _live_space(state)
    return [
        e.UserInvited(
            space_id=state.id,
            invite_id=inv.invite_id,
            user_id=inv.user_id,
            email=inv.email,
            permissions=sorted(set(cmd.permissions)),
            token_hash=inv.token_hash,
            expires_at=cmd.expires_at,
        )
        for inv in cmd.invitations
    ]


def accept_invite(state: SpaceState, cmd: c.AcceptInvite) -> list[Event]:
    _live_space(state)
    invite = state.invites.get(cmd.invite_id)
    if invite is None or not same_secret(cmd.token_hash, invite.token_hash):
        raise NotFound("no such invite")
    if invite.accepted:
        raise Conflict("this invite has already been accepted")
    if cmd.now >= invite.expires_at:
        raise InviteExpired("this invite has expired; ask for a new one")
    return [
        e.InviteAccepted(
            space_id=state.id,
            invite_id=invite.invite_id,
            user_id=invite.user_id,
            permissions=invite.permissions,
        )
    ]


def grant_permissions(state: SpaceState, cmd: c.GrantPermissions) -> list[Event]:
    _live_space(state)
    if cmd.user_id not in state.members:
        raise NotFound(f"user {cmd.user_id!r} is not a member of this space")
    new = sorted(set(cmd.permissions) - set(state.members[cmd.user_id]))
    return (
        [e.PermissionGranted(space_id=state.id, user_id=cmd.user_id, permissions=new)]
        if new
        else []
    )


# ---------------------------------------------------------------- users


class TokenState(State):
    token_id: str
    token_hash: str
    name: str = ""
    expires_at: datetime | None = None
    created_at: str = ""
    revoked: bool = False


class UserState(State):
    id: str = ""
    name: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    external_id: str = ""
    role: str = "developer"
    tags: str = ""
    admin: bool = False
    apps: list[str] = []
    tokens: dict[str, TokenState] = {}
    password_hash: str | None = Field(None, exclude=True)  # never in a read model
    created_at: str = ""
    updated_at: str = ""
    deleted: bool = False

    @property
    def live(self) -> bool:
        return bool(self.id) and not self.deleted


PROFILE = ("first_name", "last_name", "role", "tags", "admin")


def evolve_user(state: UserState, env: Envelope) -> UserState:
    touched = {"updated_at": stamp(env)}
    match env.data:
        case e.UserRegistered() as ev:
            profile = ev.model_dump(exclude={"user_id"})
            return UserState(id=ev.user_id, created_at=stamp(env), **profile, **touched)
        case e.UserUpdated() as ev:
            changes = {
                k: getattr(ev, k) for k in (*PROFILE, "password_hash") if getattr(ev, k) is not None
            }
            return state.model_copy(update={**changes, **touched})
        case e.UserDeleted():
            return state.model_copy(update={"deleted": True, "tokens": {}, **touched})
        case e.TokenIssued() as ev:
            token = TokenState(**ev.model_dump(exclude={"user_id"}), created_at=stamp(env))
            return state.model_copy(update={"tokens": {**state.tokens, ev.token_id: token}})
        case e.TokenRevoked() as ev:
            token = state.tokens[ev.token_id].model_copy(update={"revoked": True})
            return state.model_copy(update={"tokens": {**state.tokens, ev.token_id: token}})
        case e.UserAppAuthorized(app=app):
            return state.model_copy(update={"apps": sorted({*state.apps, app}), **touched})
        case e.UserAppUnauthorized(app=app):
            return state.model_copy(update={"apps": [a for a in state.apps if a != app], **touched})
    return state


def _live_user(state: UserState) -> UserState:
    if not state.live:
        raise NotFound("user not found")
    return state


def register_user(state: UserState, cmd: c.RegisterUser) -> list[Event]:
    if state.live:
        raise Conflict(f"a user named {cmd.name!r} already exists")
    return [e.UserRegistered(**cmd.model_dump())]


def update_user(state: UserState, cmd: c.UpdateUser) -> list[Event]:
    _live_user(state)
    changes = {
        k: getattr(cmd, k) for k in PROFILE if getattr(cmd, k) not in (None, getattr(state, k))
    }
    if cmd.password_hash:
        changes["password_hash"] = cmd.password_hash
    return [e.UserUpdated(user_id=state.id, **changes)] if changes else []


def delete_user(state: UserState, cmd: c.DeleteUser) -> list[Event]:
    return [e.UserDeleted(user_id=_live_user(state).id)]


def issue_token(state: UserState, cmd: c.IssueToken) -> list[Event]:
    _live_user(state)
    return [e.TokenIssued(**cmd.model_dump())]


def revoke_token(state: UserState, cmd: c.RevokeToken) -> list[Event]:
    token = _live_user(state).tokens.get(cmd.token_id)
    if token is None:
        raise NotFound(f"token {cmd.token_id!r} not found")
    if token.revoked:
        return []
    return [e.TokenRevoked(user_id=state.id, token_id=token.token_id, token_hash=token.token_hash)]


def authorize_app(state: UserState, cmd: c.AuthorizeApp) -> list[Event]:
    if cmd.app in _live_user(state).apps:
        return []
    return [e.UserAppAuthorized(user_id=state.id, app=cmd.app)]


def unauthorize_app(state: UserState, cmd: c.UnauthorizeApp) -> list[Event]:
    if cmd.app not in _live_user(state).apps:
        return []
    return [e.UserAppUnauthorized(user_id=state.id, app=cmd.app)]


# ---------------------------------------------------------------- dispatch

SPACES = Aggregate("space", SpaceState(), evolve_space)
USERS = Aggregate("user", UserState(), evolve_user)

COMMAND_HANDLERS = {
    c.CreateSpace: Handler(SPACES, create_space, "space_id"),
    c.UpdateSpace: Handler(SPACES, update_space, "space_id"),
    c.DeleteSpace: Handler(SPACES, delete_space, "space_id"),
    c.RestoreSpace: Handler(SPACES, restore_space, "space_id"),
    c.InviteUsers: Handler(SPACES, invite_users, "space_id"),
    c.AcceptInvite: Handler(SPACES, accept_invite, "space_id"),
    c.GrantPermissions: Handler(SPACES, grant_permissions, "space_id"),
    c.RegisterUser: Handler(USERS, register_user, "user_id"),
    c.UpdateUser: Handler(USERS, update_user, "user_id"),
    c.DeleteUser: Handler(USERS, delete_user, "user_id"),
    c.IssueToken: Handler(USERS, issue_token, "user_id"),
    c.RevokeToken: Handler(USERS, revoke_token, "user_id"),
    c.AuthorizeApp: Handler(USERS, authorize_app, "user_id"),
    c.UnauthorizeApp: Handler(USERS, unauthorize_app, "user_id"),
}

decide = decider(COMMAND_HANDLERS)
"""The events a command causes on a state already held (a SpaceState or a UserState): for
use cases that check a decision before they write (`services.accept_invite`) and for tests."""
