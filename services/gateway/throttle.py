"""Login throttling: failed logins are counted per account and per client address in a moving
window (the `limits` package's `MovingWindowRateLimiter`).

While either count is at its limit, every login for that account or from that address answers
429 with Retry-After, the right password included: guessing gains nothing from speed. Only
failures count, so logging in often is never refused; a success clears its account's failures
(not its address's: one's own account must not reset a guesser's budget). Attempts still being
checked count as failures until they end, so a burst of parallel guesses cannot slip past the
limit before the first of them is counted.

The counts live in this process's memory: with several gateway processes behind a balancer the
limits hold per process.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from mlplane.errors import TooManyRequests, Unauthorized

from .settings import GatewaySettings

THROTTLE = "gateway.login_throttle"
"""Where the gateway's start-up leaves its throttle in `Kernel.extensions`."""


class LoginThrottle:
    def __init__(self, per_account: RateLimitItem, per_address: RateLimitItem) -> None:
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.per = {"account": per_account, "address": per_address}
        self.pending: Counter[tuple[str, str]] = Counter()

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> LoginThrottle:
        return cls(
            parse(settings.login_failures_per_account), parse(settings.login_failures_per_address)
        )

    @asynccontextmanager
    async def attempt(self, account: str, address: str) -> AsyncIterator[None]:
        """One login: refused at once while its account or address is at its limit; counted as
        a failure if the body raises `Unauthorized`; clears the account's failures if not."""
        keys = [("account", account), ("address", address)]
        self.pending.update(keys)
        try:
            for kind, key in keys:
                await self._allow(kind, key)
            yield
        except Unauthorized:
            for kind, key in keys:
                await self.limiter.hit(self.per[kind], kind, key)
            raise
        else:
            await self.limiter.clear(self.per["account"], "account", account)
        finally:
            self.pending.subtract(keys)
            self.pending -= Counter()  # drop the keys at zero

    async def _allow(self, kind: str, key: str) -> None:
        item = self.per[kind]
        if await self.limiter.test(item, kind, key, cost=self.pending[(kind, key)]):
            return
        stats = await self.limiter.get_window_stats(item, kind, key)
        wait = 1 if stats.remaining > 0 else max(1, math.ceil(stats.reset_time - time.time()))
        raise TooManyRequests(
            f"too many failed logins for this {kind}: try again in {wait} s", retry_after=wait
        )
