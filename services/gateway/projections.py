"""Read models of the gateway, each a pure fold that can be dropped and rebuilt from the log.

Spaces and users reuse the aggregates' folds (`handlers.evolve_*`), so the list a client reads and
the state a decision is taken on cannot drift apart. Memberships answer "which spaces may this
caller see" with one query; tokens answer "who holds this token" by its hash. The data plane's
routing tables (`dataplane.projections`) are registered with these.
"""

from __future__ import annotations

from typing import Any

from mlplane.auth import MEMBER, OWNER
from mlplane.events import Envelope
from mlplane.projections import Projection

from . import events as e
from .handlers import SpaceState, UserState, evolve_space, evolve_user, stamp

Doc = dict[str, Any]

SPACES = "gateway_spaces"
USERS = "gateway_users"
MEMBERSHIPS = "gateway_memberships"
TOKENS = "gateway_tokens"
READ_MODELS = (SPACES, USERS, MEMBERSHIPS, TOKENS)


def _types(*classes: type) -> frozenset[str]:
    return frozenset(cls.type_name for cls in classes)


class Spaces(Projection):
    name = SPACES
    handles = _types(
        e.SpaceCreated,
        e.SpaceUpdated,
        e.SpaceDeleted,
        e.SpaceRestored,
        e.UserInvited,
        e.InviteAccepted,
        e.PermissionGranted,
    )

    def key(self, event: Envelope) -> str:
        return event.data.space_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc:
        state = SpaceState.model_validate(doc) if doc else SpaceState()
        return evolve_space(state, event).to_doc()


class Users(Projection):
    """Live users; a deleted user is a tombstone, so their tokens stop authenticating."""

    name = USERS
    handles = _types(
        e.UserRegistered,
        e.UserUpdated,
        e.UserDeleted,
        e.TokenIssued,
        e.TokenRevoked,
        e.UserAppAuthorized,
        e.UserAppUnauthorized,
    )

    def key(self, event: Envelope) -> str:
        return event.data.user_id

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        state = evolve_user(UserState.model_validate(doc) if doc else UserState(), event)
        return None if state.deleted else state.to_doc()


class Memberships(Projection):
    """One document per (space, user): the user's role and permissions in that space."""

    name = MEMBERSHIPS
    handles = _types(e.SpaceCreated, e.InviteAccepted, e.PermissionGranted)

    def key(self, event: Envelope) -> str:
        data = event.data
        user = data.owner_id if isinstance(data, e.SpaceCreated) else data.user_id
        return f"{data.space_id}:{user}"

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc:
        data = event.data
        if isinstance(data, e.SpaceCreated):
            return {
                "space_id": data.space_id,
                "user_id": data.owner_id,
                "role": OWNER,
                "permissions": [],
                "created_at": stamp(event),
            }
        doc = doc or {
            "space_id": data.space_id,
            "user_id": data.user_id,
            "role": MEMBER,
            "permissions": [],
            "created_at": stamp(event),
        }
        return {**doc, "permissions": sorted({*doc["permissions"], *data.permissions})}


class Tokens(Projection):
    """Tokens by the SHA-256 of their secret: the one lookup every authenticated request makes."""

    name = TOKENS
    handles = _types(e.TokenIssued, e.TokenRevoked)

    def key(self, event: Envelope) -> str:
        return event.data.token_hash

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc:
        data = event.data
        if isinstance(data, e.TokenRevoked):
            return {**(doc or {}), "revoked": True}
        expires = data.expires_at.isoformat() if data.expires_at else None
        return {
            "id": data.token_id,
            "user_id": data.user_id,
            "name": data.name,
            "expires_at": expires,
            "created_at": stamp(event),
            "revoked": False,
        }


def projections() -> list[Projection]:
    from .dataplane.projections import projections as routing

    return [Spaces(), Users(), Memberships(), Tokens(), *routing()]
