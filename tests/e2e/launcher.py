"""`mlplane up` as a real subprocess on a free port, and HTTP clients for it.

The server's output goes to a file, read for the one-time admin token and shown when a start
fails, so a broken start explains itself instead of timing out silently.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

MLPLANE = [sys.executable, "-m", "mlplane.cli"]
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("MLPLANE_")}
    return {**keep, "MLPLANE_HOME": str(home), "PYTHONUNBUFFERED": "1", **(extra or {})}


class Platform:
    def __init__(self, home: Path, env: dict[str, str] | None = None, service: str = "all") -> None:
        self.home = home
        self.env = cli_env(home, env)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.service = service
        self.admin_token: str | None = None
        self.process: subprocess.Popen | None = None
        self.log = home / "server.log"
        home.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                [*MLPLANE, "up", "--port", str(self.port), "--service", self.service],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()
        found = re.search(r"Admin token \(shown once, keep it\): (\S+)", self.log.read_text())
        self.admin_token = self.admin_token or (found.group(1) if found else None)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mlplane up exited {self.process.returncode}:\n{self.log.read_text()}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"mlplane up not ready in {START_TIMEOUT}s:\n{self.log.read_text()}")

    def stop(self) -> int:
        """SIGTERM, as an orchestrator would; the server drains and exits."""
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code

    def restart(self) -> None:
        drained = self.log.read_text().count("Application shutdown complete")
        code = self.stop()
        # uvicorn re-raises the SIGTERM once it has drained, so a clean exit reads as -SIGTERM
        assert code in (0, -signal.SIGTERM), self.log.read_text()
        assert self.log.read_text().count("Application shutdown complete") == drained + 1
        self.start()

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers={**auth, **headers}, timeout=60)

    def admin(self) -> httpx.Client:
        return self.client(self.admin_token)

    def cli(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
        env = {
            **self.env,
            "MLPLANE_URL": self.url,
            "MLPLANE_TOKEN": token or self.admin_token or "",
        }
        return subprocess.run(
            [*MLPLANE, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )


def drop_collections(mongo_url: str, prefix: str) -> None:
    """Drop the collections a distributed run kept under its `MLPLANE_PREFIX`."""
    from pymongo import MongoClient

    client = MongoClient(mongo_url.rsplit("/", 1)[0], serverSelectionTimeoutMS=5000)
    db = client[mongo_url.rsplit("/", 1)[1] or "mlplane"]
    for name in db.list_collection_names():
        if name.startswith(prefix):
            db.drop_collection(name)
    client.close()


def new_space(admin: httpx.Client, name: str) -> str:
    response = admin.post("/api/v1/spaces", json={"name": name, "description": f"{name} team"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def join(
    platform: Platform,
    admin: httpx.Client,
    space_id: str,
    email: str,
    roles: tuple[str, ...] = ("trainings:get",),
) -> httpx.Client:
    """Invite `email` to the space, accept as a new user, and return a client with their token."""
    invited = admin.post(
        f"/api/v1/spaces/{space_id}/invite", json={"emails": [email], "roles": list(roles)}
    )
    assert invited.status_code == 200, invited.text
    with platform.client() as anonymous:
        accepted = anonymous.post(
            "/api/v1/users/invites/accept", json={"token": invited.json()["invites"][0]["token"]}
        )
    assert accepted.status_code == 200, accepted.text
    return platform.client(accepted.json()["token"])
