"""Events of the gateway's bounded context: spaces, their members, users and their tokens.

Names, emails and password hashes are personal: they are encrypted under the user's key, so
`EventLog.forget(user_id)` erases them from every replay. A user's id is derived from their login
name (see `handlers.user_id_for`), which is why an invite can name its subject before the user
exists.
"""

from __future__ import annotations

from datetime import datetime

from mlplane.events import Event, registry

TOPIC = "gateway"


def _event(name: str, personal: tuple[str, ...] = ()):
    return registry.register(
        name, topic=TOPIC, personal=personal, subject_field="user_id" if personal else None
    )


@_event("SpaceCreated")
class SpaceCreated(Event):
    space_id: str
    name: str
    description: str
    owner_id: str


@_event("SpaceUpdated")
class SpaceUpdated(Event):
    space_id: str
    name: str | None = None
    description: str | None = None


@_event("SpaceDeleted")
class SpaceDeleted(Event):
    space_id: str


@_event("SpaceRestored")
class SpaceRestored(Event):
    space_id: str


@_event("UserInvited", personal=("email",))
class UserInvited(Event):
    space_id: str
    invite_id: str
    user_id: str
    email: str | None = None
    permissions: list[str]
    token_hash: str
    expires_at: datetime


@_event("InviteAccepted")
class InviteAccepted(Event):
    space_id: str
    invite_id: str
    user_id: str
    permissions: list[str]


@_event("PermissionGranted")
class PermissionGranted(Event):
    space_id: str
    user_id: str
    permissions: list[str]


@_event("UserRegistered", personal=("name", "email", "first_name", "last_name", "password_hash"))
class UserRegistered(Event):
    user_id: str
    name: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    password_hash: str | None = None
    external_id: str = ""
    role: str = "developer"
    tags: str = ""
    admin: bool = False


@_event("UserUpdated", personal=("first_name", "last_name", "password_hash"))
class UserUpdated(Event):
    """Changed fields only; a field left None is unchanged."""

    user_id: str
    first_name: str | None = None
    last_name: str | None = None
    password_hash: str | None = None
    role: str | None = None
    tags: str | None = None
    admin: bool | None = None


@_event("UserDeleted")
class UserDeleted(Event):
    user_id: str


@_event("TokenIssued")
class TokenIssued(Event):
    user_id: str
    token_id: str
    token_hash: str
    name: str = ""
    expires_at: datetime | None = None


@_event("TokenRevoked")
class TokenRevoked(Event):
    user_id: str
    token_id: str
    token_hash: str


@_event("UserAppAuthorized")
class UserAppAuthorized(Event):
    user_id: str
    app: str


@_event("UserAppUnauthorized")
class UserAppUnauthorized(Event):
    user_id: str
    app: str
