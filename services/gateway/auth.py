"""Bearer-token authentication against the gateway's read models, and the first administrator.

A token is looked up by its SHA-256 hash. A token or user that is unknown may simply be newer than
its projection (issued a moment ago by another process), so that projection is brought level once
before the token is refused.

The caller a token names is kept for `PRINCIPAL_TTL_S`, so a burst of requests reads the tokens,
users and memberships tables once. The cache is dropped whenever this process folds an event into
one of those tables (`watch`), so a revocation, a deleted user or a new membership takes effect at
once here; a change made by another process is seen within the TTL.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from mlplane import aggregates
from mlplane.auth import Membership, Principal, hash_token, new_token, same_secret
from mlplane.errors import Unauthorized
from mlplane.eventlog import Context
from mlplane.events import new_id
from mlplane.kernel import Kernel

from . import commands as c
from .handlers import COMMAND_HANDLERS, USERS, user_id_for
from .projections import MEMBERSHIPS, TOKENS
from .projections import USERS as USER_DOCS
from .workers import watch_callers

ADMIN_NAME = "admin"
ADMIN_ID = user_id_for(ADMIN_NAME)
PRINCIPAL_TTL_S = 2.0
MAX_CACHED = 10_000


class TokenAuthenticator:
    def __init__(self, kernel: Kernel, ttl: float = PRINCIPAL_TTL_S) -> None:
        self.kernel = kernel
        self.ttl = ttl
        self._cached: dict[str, tuple[float, Principal]] = {}
        self._generation = 0

    def watch(self, kernel: Kernel) -> None:
        """Drop every cached caller whenever `kernel` folds into a table a caller is read from
        (`workers.watch_callers`; call before `kernel.start()`)."""
        watch_callers(kernel, self.invalidate)

    def invalidate(self) -> None:
        self._generation += 1
        self._cached.clear()

    async def authenticate(self, token: str) -> Principal:
        key, now = hash_token(token), time.monotonic()
        hit = self._cached.get(key)
        if hit and hit[0] > now:
            return hit[1]
        generation = self._generation
        principal, valid_for = await self._lookup(token, key)
        if generation == self._generation:  # nothing was folded while we read
            if len(self._cached) >= MAX_CACHED:
                self._cached.clear()
            self._cached[key] = (now + min(self.ttl, valid_for), principal)
        return principal

    async def _lookup(self, token: str, key: str) -> tuple[Principal, float]:
        """The caller, and for how many seconds the token stays valid (infinite if no expiry)."""
        admin_token = self.kernel.settings.admin_token
        if admin_token and same_secret(token, admin_token):
            found = await memberships(self.kernel, ADMIN_ID)
            return Principal(user_id=ADMIN_ID, admin=True, memberships=found), float("inf")
        record = await self._fresh(TOKENS, key)
        if record is None or record.get("revoked"):
            raise Unauthorized("the token is unknown or revoked")
        valid_for = float("inf")
        if expires := record.get("expires_at"):
            valid_for = (datetime.fromisoformat(expires) - datetime.now(UTC)).total_seconds()
            if valid_for <= 0:
                raise Unauthorized("the token has expired")
        user = await self._fresh(USER_DOCS, record["user_id"])
        if user is None:
            raise Unauthorized("the token's user no longer exists")
        principal = Principal(
            user_id=user["id"],
            admin=bool(user.get("admin")),
            memberships=await memberships(kernel=self.kernel, user_id=user["id"]),
            token_id=record["id"],
        )
        return principal, valid_for

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
    await kernel.execute(command, ctx)
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
    # decided only if still absent: two processes starting at once register it once, quietly
    register = COMMAND_HANDLERS[c.RegisterUser].decide
    outcome = await aggregates.execute(
        kernel.log, USERS, ADMIN_ID, lambda s, cmd: [] if s.live else register(s, cmd), command, ctx
    )
    if not outcome.events or not with_token:
        return None
    secret, _ = await issue_token(kernel, ADMIN_ID, ctx, name="bootstrap")
    return secret


async def admin_token(
    kernel: Kernel, *, first_start: bool, name: str = "cli", ttl: timedelta | None = None
) -> str | None:
    """The administrator's token for the CLI: on `first_start`, the one-time token of an empty
    store (None when the administrator exists); otherwise a new token, registering the
    administrator first if needed."""
    if first_start:
        return await ensure_admin(kernel, with_token=True)
    await ensure_admin(kernel, with_token=False)
    ctx = Context(actor="cli", source="mlplane/cli")
    secret, _ = await issue_token(kernel, ADMIN_ID, ctx, name=name, ttl=ttl)
    return secret
