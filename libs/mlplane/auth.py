"""Who is calling and what they may touch: bearer tokens, principals, space-scoped access.

Tokens are random strings shown once; only their SHA-256 hash is ever stored, so a leaked read
model or event log gives no usable credential. Every resource belongs to a space; a caller who is
not a member of that space is told the resource does not exist (404), so ids cannot be probed
across tenants. A member lacking a permission gets 403: they already know the space exists.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args

from .errors import Forbidden, NotFound

TOKEN_PREFIX = "mlp_"

Permission = Literal[
    "benchmarks:create",
    "benchmarks:get",
    "benchmarks:list",
    "evaluations:create",
    "leaderboards:list",
    "trainings:create",
    "trainings:delete",
    "trainings:get",
    "trainings:list",
    "trainings:update",
    "data-models:create",
    "data-models:delete",
    "data-models:get",
    "data-models:list",
    "data-models:update",
    # serving: deploy, reconfigure or roll back, remove endpoints; register, change (rename,
    # add versions), delete registry models. Servers and placements are the administrators'.
    "endpoints:create",
    "endpoints:delete",
    "endpoints:update",
    "models:create",
    "models:delete",
    "models:update",
]
PERMISSIONS: tuple[str, ...] = get_args(Permission)

OWNER, MEMBER = "owner", "member"


def new_token(prefix: str = TOKEN_PREFIX) -> str:
    """A fresh secret with 256 bits of entropy; the prefix makes leaks easy to scan for."""
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison, so response timing says nothing about the secret."""
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True)
class Membership:
    space_id: str
    role: str = MEMBER
    permissions: frozenset[str] = frozenset()

    def allows(self, permission: str | None) -> bool:
        return self.role == OWNER or permission is None or permission in self.permissions


@dataclass(frozen=True)
class Principal:
    """An authenticated caller and the spaces they belong to."""

    user_id: str
    admin: bool = False
    memberships: Mapping[str, Membership] = field(default_factory=dict)
    token_id: str | None = None

    def space_ids(self) -> list[str]:
        return sorted(self.memberships)

    def require(self, space_id: str, permission: str | None = None, *, owner: bool = False) -> None:
        """Raise NotFound outside the space, Forbidden inside it without the right."""
        if self.admin:
            return
        membership = self.memberships.get(space_id)
        if membership is None:
            raise NotFound(f"space {space_id!r} not found")
        if owner and membership.role != OWNER:
            raise Forbidden("only the space's owners may do this")
        if not membership.allows(permission):
            raise Forbidden(f"missing permission {permission!r} in this space")

    def require_admin(self) -> None:
        if not self.admin:
            raise Forbidden("only platform administrators may do this")


class Authenticator(Protocol):
    """Turns a bearer token into a principal, or raises Unauthorized."""

    async def authenticate(self, token: str) -> Principal: ...


def hash_password(password: str) -> str:
    """scrypt with a random salt: slow to brute-force, and never the same twice."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt$16384$8$1${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    _, n, r, p, salt, digest = stored.split("$")
    given = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p)
    )
    return hmac.compare_digest(given.hex(), digest)
