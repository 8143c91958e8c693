"""The login route throttles failed logins per account and per client address: 429 problems
with Retry-After, on the gateway in this process (each test its own home and limits)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from mlplane.service import load
from mlplane.settings import Settings

from services.gateway.bootstrap import create_app

ADMIN_TOKEN = "admin-token-for-the-login-tests"
PROBLEM = "application/problem+json"
Client = Callable[[str], httpx.AsyncClient]


@asynccontextmanager
async def gateway(home, monkeypatch, **limits: str) -> AsyncIterator[Client]:
    """The gateway with `MLPLANE_GATEWAY_LOGIN_FAILURES_*` from `limits`; a factory of clients,
    each calling from the address it is given."""
    for name, value in limits.items():
        monkeypatch.setenv(f"MLPLANE_GATEWAY_LOGIN_FAILURES_{name.upper()}", value)
    app = create_app(Settings(home=home, admin_token=ADMIN_TOKEN), load("gateway"))
    async with app.router.lifespan_context(app):

        def client(address: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(address, 40000))
            return httpx.AsyncClient(transport=transport, base_url="http://mlplane")

        async with client("127.0.0.1") as admin:
            for name in ("kim", "lee"):
                created = await admin.post(
                    "/api/users",
                    json={"name": name, "password": f"{name}-password"},
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                )
                assert created.status_code == 201, created.text
        yield client


async def login(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/users/login", json={"name": name, "password": password})


async def test_after_many_wrong_passwords_the_right_one_is_refused_too(tmp_path, monkeypatch):
    async with gateway(tmp_path, monkeypatch) as client, client("10.0.0.1") as guesser:
        answers = [(await login(guesser, "kim", f"guess-{i}")).status_code for i in range(30)]
        assert answers[:5] == [401] * 5 and set(answers[5:]) == {429}
        right = await login(guesser, "kim", "kim-password")
        assert right.status_code == 429
        assert right.headers["content-type"] == PROBLEM
        assert 1 <= int(right.headers["retry-after"]) <= 60
        assert right.json()["status"] == 429 and right.json()["retry_after"] >= 1
        async with client("10.0.0.2") as elsewhere:  # the account is locked, not the address
            assert (await login(elsewhere, "kim", "kim-password")).status_code == 429
            assert (await login(elsewhere, "lee", "lee-password")).status_code == 201


async def test_one_address_guessing_many_accounts_is_throttled(tmp_path, monkeypatch):
    async with (
        gateway(tmp_path, monkeypatch, per_address="3/minute") as client,
        client("10.0.0.3") as guesser,
    ):
        for name in ("kim", "lee", "nobody"):
            assert (await login(guesser, name, "wrong-password")).status_code == 401
        refused = await login(guesser, "lee", "lee-password")
        assert refused.status_code == 429 and "address" in refused.json()["detail"]
        async with client("10.0.0.4") as other:
            assert (await login(other, "lee", "lee-password")).status_code == 201


async def test_logging_in_often_with_the_right_password_is_never_throttled(tmp_path, monkeypatch):
    async with (
        gateway(tmp_path, monkeypatch, per_account="2/minute", per_address="2/minute") as client,
        client("10.0.0.5") as kim,
    ):
        for _ in range(6):
            assert (await login(kim, "kim", "kim-password")).status_code == 201


async def test_the_login_route_documents_its_429(tmp_path, monkeypatch):
    app = create_app(Settings(home=tmp_path), load("gateway"))
    answers = app.openapi()["paths"]["/api/v1/users/login"]["post"]["responses"]
    assert PROBLEM in answers["429"]["content"] and "Retry-After" in answers["429"]["headers"]
