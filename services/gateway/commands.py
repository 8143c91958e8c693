"""Commands the gateway decides on: imperative, validated, carrying everything a pure decision
needs (ids, hashes of fresh secrets, the current time), so the decisions in `handlers` do no
I/O. `handlers.COMMAND_HANDLERS` says which stream each one acts on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from mlplane.commands import Command

UserRole = Literal["designer", "developer"]


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


@dataclass(frozen=True)
class Invitation:
    """One invitee of an `InviteUsers` (a value, not a command)."""

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
