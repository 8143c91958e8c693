"""The login throttle: failed logins counted per account and per address, in a moving window."""

from __future__ import annotations

import asyncio

import pytest
from limits import parse
from mlplane.errors import TooManyRequests, Unauthorized
from pydantic import ValidationError

from services.gateway.settings import GatewaySettings
from services.gateway.throttle import LoginThrottle


def throttle(account: str = "3/minute", address: str = "5/minute") -> LoginThrottle:
    return LoginThrottle(parse(account), parse(address))


async def fail(limiter: LoginThrottle, account: str, address: str = "10.0.0.1") -> None:
    with pytest.raises(Unauthorized):
        async with limiter.attempt(account, address):
            raise Unauthorized("wrong name or password")


async def succeed(limiter: LoginThrottle, account: str, address: str = "10.0.0.1") -> None:
    async with limiter.attempt(account, address):
        pass


async def test_an_account_past_its_failures_is_refused_whatever_the_password():
    limiter = throttle()
    for _ in range(3):
        await fail(limiter, "kim")
    with pytest.raises(TooManyRequests) as refused:
        await succeed(limiter, "kim", "10.0.0.2")
    assert 0 < refused.value.retry_after <= 60
    assert "account" in refused.value.detail
    await succeed(limiter, "lee")  # another account from the same address is not locked


async def test_an_address_past_its_failures_is_refused_for_every_account():
    limiter = throttle(account="100/minute", address="5/minute")
    for i in range(5):
        await fail(limiter, f"user{i}")
    with pytest.raises(TooManyRequests, match="address"):
        await succeed(limiter, "someone-else")
    await succeed(limiter, "someone-else", "10.0.0.9")


async def test_successful_logins_are_never_counted():
    limiter = throttle(account="1/minute", address="1/minute")
    for _ in range(20):
        await succeed(limiter, "kim")


async def test_a_success_clears_its_accounts_failures_but_not_its_addresss():
    limiter = throttle(account="3/minute", address="4/minute")
    for _ in range(2):
        await fail(limiter, "kim")
    await succeed(limiter, "kim")
    for _ in range(2):
        await fail(limiter, "kim")
    with pytest.raises(TooManyRequests, match="address"):
        await succeed(limiter, "kim")


async def test_parallel_guesses_cannot_slip_past_the_limit():
    limiter = throttle(account="3/minute", address="100/minute")
    checked = asyncio.Event()

    async def guess() -> str:
        try:
            async with limiter.attempt("kim", "10.0.0.1"):
                await checked.wait()  # every guess is in flight before any is counted
                raise Unauthorized("wrong name or password")
        except TooManyRequests:
            return "throttled"
        except Unauthorized:
            return "checked"

    guesses = [asyncio.create_task(guess()) for _ in range(10)]
    await asyncio.sleep(0.01)
    checked.set()
    outcomes = await asyncio.gather(*guesses)
    assert outcomes.count("checked") == 3 and outcomes.count("throttled") == 7


def test_the_limits_are_settings_that_fail_fast(monkeypatch):
    monkeypatch.setenv("MLPLANE_GATEWAY_LOGIN_FAILURES_PER_ACCOUNT", "10 per hour")
    assert GatewaySettings().login_failures_per_account == "10 per hour"
    assert GatewaySettings().login_failures_per_address == "20/minute"
    for bad in ("often", "0/minute"):
        monkeypatch.setenv("MLPLANE_GATEWAY_LOGIN_FAILURES_PER_ADDRESS", bad)
        with pytest.raises(ValidationError):
            GatewaySettings()
