"""The gateway and the logs service in this process (embedded stores, in-process bus), an HTTP
client for them, and a real local HTTP server to receive webhooks."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from mlplane.kernel import Kernel
from mlplane.service import load
from mlplane.settings import Settings

from services.gateway.bootstrap import create_app

ADMIN_TOKEN = "admin-token-for-the-logs-tests"


@dataclass
class Platform:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def kernel(self) -> Kernel:
        return self.app.state.kernel

    async def new_space(self, name: str = "analytics") -> str:
        response = await self.client.post(
            "/api/v1/spaces", json={"name": name, "description": name}
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    async def member_client(self, space: str, email: str) -> httpx.AsyncClient:
        """A client with the token of a new member of `space` (not an administrator)."""
        invited = await self.client.post(
            f"/api/v1/spaces/{space}/invite", json={"emails": [email], "roles": []}
        )
        assert invited.status_code == 200, invited.text
        token = invited.json()["invites"][0]["token"]
        accepted = await self.client.post(
            "/api/v1/users/invites/accept", json={"token": token}, headers={"Authorization": ""}
        )
        assert accepted.status_code == 200, accepted.text
        return httpx.AsyncClient(
            transport=self.client._transport,
            base_url="http://mlplane",
            headers={"Authorization": f"Bearer {accepted.json()['token']}"},
        )


@asynccontextmanager
async def platform(home: Path, monkeypatch, **logs_env: str) -> AsyncIterator[Platform]:
    """Start the platform with `MLPLANE_LOGS_*` settings from `logs_env`; stop it after."""
    for name, value in logs_env.items():
        monkeypatch.setenv(f"MLPLANE_LOGS_{name.upper()}", value)
    settings = Settings(home=home, admin_token=ADMIN_TOKEN)
    app = create_app(settings, load("gateway,logs"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://mlplane", headers=headers
        ) as client:
            yield Platform(app, client)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def data(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: `up()` and `down()` start and stop listening on its
    port; it answers 500 to bodies for which `refuse` is true, 204 to the rest."""

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    refuse: Callable[[Any], bool] = field(default=lambda data: False)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                item = Received({k.lower(): v for k, v in self.headers.items()}, body)
                refused = receiver.refuse(item.data)
                if not refused:
                    receiver.received.append(item)
                self.send_response(500 if refused else 204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
