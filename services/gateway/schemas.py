"""The gateway's API models: what clients send (`*Create`, `*Update`: unknown fields refused) and
what they get back (`*Public`), with the field names of the API documents in seeds/ 002 and 003.
They are separate from events and commands so the wire format can evolve on its own."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from mlplane.auth import Permission
from mlplane.names import Name, NameOrEmpty
from pydantic import BaseModel, ConfigDict, Field

from .commands import UserRole

Text = Annotated[str, Field(max_length=4000)]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]
Secret = Annotated[str, Field(min_length=8, max_length=200)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Output(BaseModel):
    model_config = ConfigDict(extra="ignore")


# ---------------------------------------------------------------- spaces


class SpaceCreate(Input):
    name: Name
    description: Text


class SpaceUpdate(Input):
    name: Name | None = None
    description: Text | None = None


class SpacePublic(Output):
    id: str
    name: str
    description: str
    created_at: str
    created_by: str
    updated_at: str
    updated_by: str


class SpaceRef(Output):
    id: str


class MemberPublic(Output):
    user_id: str
    role: str
    permissions: list[str]
    created_at: str


class InviteCreate(Input):
    emails: Annotated[list[Email], Field(min_length=1, max_length=100)]
    roles: Annotated[list[Permission], Field(max_length=50)]


class InviteIssued(Output):
    email: str
    user_id: str
    token: str = Field(description="Give this to the invitee; it is shown once")
    expires_at: datetime


class InvitePublic(Output):
    emails: list[str]
    invites: list[InviteIssued]


# ---------------------------------------------------------------- users (v1)


class InviteAccept(Input):
    token: Annotated[str, Field(min_length=1, max_length=500)]


class UserPublic(Output):
    id: str
    email: str | None = None
    external_id: str = ""
    first_name: str | None = None
    last_name: str | None = None
    role: str


class SpaceMembership(Output):
    id: str
    name: str
    role: str
    permissions: list[str]


class UserMe(UserPublic):
    permissions: list[str]
    spaces: list[SpaceMembership]


class InviteAccepted(Output):
    space_id: str
    user: UserPublic
    permissions: list[str]
    token: str | None = Field(None, description="A new API token, when the invite created the user")


class UserUpdate(Input):
    first_name: NameOrEmpty | None = None
    last_name: NameOrEmpty | None = None
    role: UserRole | None = None


class PermissionsGrant(Input):
    space_id: str
    permissions: Annotated[list[Permission], Field(min_length=1, max_length=50)]


class PermissionsPublic(Output):
    permissions: list[str]


class TokenCreate(Input):
    name: NameOrEmpty = ""
    ttl_seconds: Annotated[int, Field(ge=1, le=10 * 365 * 86400)] | None = None


class Login(Input):
    name: Name
    password: Annotated[str, Field(min_length=1, max_length=200)]
    ttl_seconds: Annotated[int, Field(ge=1, le=10 * 365 * 86400)] | None = 86400


class TokenPublic(Output):
    id: str
    name: str
    created_at: str
    expires_at: str | None
    revoked: bool


class TokenIssuedPublic(TokenPublic):
    token: str = Field(description="The secret; shown once, stored only as a hash")


# ---------------------------------------------------------------- users (admin, seed 002)

AdminRole = Literal["designer", "developer", "admin"]


class AdminUserCreate(Input):
    name: Name
    password: Secret | None = None
    role: AdminRole = "developer"
    tags: Annotated[str, Field(max_length=1000)] = ""
    email: Email | None = None
    first_name: NameOrEmpty | None = None
    last_name: NameOrEmpty | None = None


class AdminUserUpdate(Input):
    password: Secret | None = None
    role: AdminRole | None = None
    tags: Annotated[str, Field(max_length=1000)] | None = None


class AdminUserPublic(Output):
    id: str
    name: str | None
    password: None = Field(None, description="Never returned; kept for the shape of the seed API")
    role: str
    tags: str
    apps: list[str]
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    admin: bool
    created_at: str


class AdminUserWritten(AdminUserPublic):
    status: Literal["ok"] = "ok"


class AdminUserList(Output):
    users: list[AdminUserPublic]
    count: int
    has_more: bool


class Status(Output):
    status: Literal["ok"] = "ok"
    id: str | None = None


class AppsPublic(Output):
    apps: list[str]
