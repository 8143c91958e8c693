"""Commands the gateway decides on: imperative, validated, carrying everything a pure decision
needs (ids, hashes of fresh secrets, the current time), so `handlers.decide` does no I/O."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

UserRole = Literal["designer", "developer"]


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateSpace(Command):
    space_id: str
    name: str
    description: str
    owner_id: str


class UpdateSpace(Command):
    space_id: str
    name: str | None = None
    description: str | None = None


class DeleteSpace(Command):
    space_id: str


class RestoreSpace(Command):
    space_id: str


class Invitation(BaseModel):
    model_config = ConfigDict(frozen=True)

    invite_id: str
    user_id: str
    email: str
    token_hash: str


class InviteUsers(Command):
    space_id: str
    invitations: list[Invitation]
    permissions: list[str]
    expires_at: datetime


class AcceptInvite(Command):
    space_id: str
    invite_id: str
    token_hash: str
    now: datetime


class GrantPermissions(Command):
    space_id: str
    user_id: str
    permissions: list[str]


class RegisterUser(Command):
    user_id: str
    name: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    password_hash: str | None = None
    external_id: str = ""
    role: str = "developer"
    tags: str = ""
    admin: bool = False


class UpdateUser(Command):
    user_id: str
    first_name: str | None = None
    last_name: str | None = None
    password_hash: str | None = None
    role: str | None = None
    tags: str | None = None
    admin: bool | None = None


class DeleteUser(Command):
    user_id: str


class IssueToken(Command):
    user_id: str
    token_id: str
    token_hash: str
    name: str = ""
    expires_at: datetime | None = None


class RevokeToken(Command):
    user_id: str
    token_id: str


class AuthorizeApp(Command):
    user_id: str
    app: str


class UnauthorizeApp(Command):
    user_id: str
    app: str
