"""Bearer-token authentication against the gateway's read models, and the first administrator.

A token is looked up by its SHA-256 hash. A token or user that is unknown may simply be newer than
its projection (issued a moment ago by another process), so that projection is brought level once
before the token is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mlplane import aggregates
from mlplane.auth import Membership, Principal, hash_token, new_token, same_secret
from mlplane.errors import Unauthorized
from mlplane.eventlog import Context
from mlplane.events import new_id
from mlplane.kernel import Kernel

from . import commands as c
from .handlers import USERS, decide, user_id_for
from .projections import MEMBERSHIPS, TOKENS
from .projections import USERS as USER_DOCS

ADMIN_NAME = "admin"
ADMIN_ID = user_id_for(ADMIN_NAME)


class TokenAuthenticator:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def authenticate(self, token: str) -> Principal:
        admin_token = self.kernel.settings.admin_token
        if admin_token and same_secret(token, admin_token):
            return Principal(
                user_id=ADMIN_ID, admin=True, memberships=await memberships(self.kernel, ADMIN_ID)
            )
        record = await self._fresh(TOKENS, hash_token(token))
        if record is None or record.get("revoked"):
            raise Unauthorized("the token is unknown or revoked")
        expires = record.get("expires_at")
        if expires and datetime.fromisoformat(expires) <= datetime.now(UTC):
            raise Unauthorized("the token has expired")
        user = await self._fresh(USER_DOCS, record["user_id"])
        if user is None:
            raise Unauthorized("the token's user no longer exists")
        return Principal(
            user_id=user["id"],
            admin=bool(user.get("admin")),
            memberships=await memberships(kernel=self.kernel, user_id=user["id"]),
            token_id=record["id"],
        )


    async def _fresh(self, collection: str, key: str) -> dict | None:
        """A document, or None once its projection has caught up with the log and still lacks it.

        Each projection follows the log on its own, so a token may already be known while its
        user is not yet (at start-up, or when another process issued it a moment ago).
        """
        doc = await self.kernel.docs.get(collection, key)
        if doc is None:
            await self.kernel.catch_up(collection)
            doc = await self.kernel.docs.get(collection, key)
        return doc


async def memberships(kernel: Kernel, user_id: str) -> dict[str, Membership]:
    page = await kernel.docs.query(MEMBERSHIPS, {"user_id": user_id}, limit=10_000)
    return {
        d["space_id"]: Membership(d["space_id"], d["role"], frozenset(d["permissions"]))
        for d in page.data
    }


async def issue_token(
    kernel: Kernel, user_id: str, ctx: Context, *, name: str = "", ttl: timedelta | None = None
) -> tuple[str, c.IssueToken]:
    """A new secret for `user_id`; only its hash is appended. Returns the secret, once."""
    secret = new_token()
    expires = datetime.now(UTC) + ttl if ttl else None
    command = c.IssueToken(
        user_id=user_id,
        token_id=new_id(),
        token_hash=hash_token(secret),
        name=name,
        expires_at=expires,
    )
    await aggregates.execute(kernel.log, USERS, user_id, decide, command, ctx)
    return secret, command


async def ensure_admin(kernel: Kernel, *, with_token: bool) -> str | None:
    """Register the administrator on an empty store; with `with_token`, return its first token.

    Returns None when the administrator already existed (its token was shown back then).
    """
    ctx = Context(actor="system", source="mlplane/gateway")
    command = c.RegisterUser(user_id=ADMIN_ID, name=ADMIN_NAME, role="developer", admin=True)
    state, _ = await aggregates.load(kernel.log, USERS, ADMIN_ID)
    if state.live:
        return None
    outcome = await aggregates.execute(
        kernel.log, USERS, ADMIN_ID, lambda s, cmd: [] if s.live else decide(s, cmd), command, ctx
    )
    if not outcome.events or not with_token:
        return None
    secret, _ = await issue_token(kernel, ADMIN_ID, ctx, name="bootstrap")
    return secret
