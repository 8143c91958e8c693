"""The MongoDB-wire server is SIGKILLed while eight writers create through the API, then started
again on the same data. Every write that answered 2xx is there exactly once, the log's positions
have no hole, and each read model equals its rebuild.

The server is this test's own FerretDB (SQLite backend, its own port and data), so killing it
touches no other test; the gateway runs against it as `docker compose` would run it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from launcher import Platform, free_port, new_space

ROOT = Path(__file__).resolve().parents[2]
FERRETDB = ROOT / ".mlplane" / "cache" / "ferretdb" / "v1.24.2" / "ferretdb"
WRITERS = 8
PER_WRITER = 12

pytestmark = pytest.mark.mongo


class Ferret:
    def __init__(self, data: Path) -> None:
        self.data, self.port = data, free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        (self.data / "db").mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                str(FERRETDB),
                "--handler=sqlite",
                f"--sqlite-url=file:{self.data / 'db'}/",
                f"--state-dir={self.data}",
                f"--listen-addr=127.0.0.1:{self.port}",
                "--debug-addr=-",
                "--telemetry=disable",
                "--log-level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.data / "ferretdb.log").open("ab"),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("FerretDB did not start")

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@pytest.fixture
def ferret(tmp_path: Path) -> Iterator[Ferret]:
    assert FERRETDB.exists(), "FerretDB is built by `make services-up` (deploy/local/services.sh)"
    server = Ferret(tmp_path / "ferret")
    server.start()
    yield server
    server.stop()


def writer(client: httpx.Client, space: str, n: int, acknowledged: list, failed: list) -> None:
    for i in range(PER_WRITER):
        try:
            response = client.post(
                "/api/v1/connectors",
                headers={"X-Space-ID": space},
                json={"name": f"w{n}-{i}", "type": "local", "local": {"path": "data"}},
            )
        except httpx.HTTPError as exc:
            failed.append(repr(exc))
            continue
        if response.status_code == 201:
            acknowledged.append(response.json()["id"])
        else:  # refused while the store is away: a 5xx, never a 4xx for a good request
            failed.append((response.status_code, response.text[:200]))


def test_every_acknowledged_write_survives_the_store_being_killed(ferret: Ferret, tmp_path: Path):
    env = {"MLPLANE_EVENT_STORE_URL": f"mongodb://127.0.0.1:{ferret.port}/mlplane"}
    platform = Platform(tmp_path / "home", env, service="gateway")
    platform.start()
    acknowledged: list[str] = []
    failed: list = []
    try:
        with platform.admin() as admin:
            space = new_space(admin, "kill-the-store")
        clients = [platform.client(platform.admin_token) for _ in range(WRITERS)]
        threads = [
            threading.Thread(target=writer, args=(c, space, n, acknowledged, failed))
            for n, c in enumerate(clients)
        ]
        for thread in threads:
            thread.start()
        while len(acknowledged) < WRITERS * 3:  # killed mid-flight, not before the first writes
            time.sleep(0.05)
        ferret.kill()
        time.sleep(1.0)
        ferret.start()
        for thread in threads:
            thread.join(timeout=300)
        for client in clients:
            client.close()
        assert acknowledged, failed
        assert all(status >= 500 for status, _ in (f for f in failed if isinstance(f, tuple)))

        with platform.admin() as admin:
            listed = _all(admin, "/api/v1/connectors", space)
        assert sorted(set(acknowledged)) == sorted(acknowledged)  # no id answered twice
        assert set(acknowledged) <= set(listed)
    finally:
        platform.stop()

    tail = platform.cli("events", "tail", "--json")
    assert tail.returncode == 0, tail.stderr
    events = [json.loads(line) for line in tail.stdout.splitlines()]
    positions = [int(e["position"]) for e in events]
    assert positions == list(range(1, len(positions) + 1))  # contiguous, no hole
    created = [e["subject"] for e in events if e["type"] == "ConnectorCreated"]
    assert len(created) == len(set(created))  # each stored once
    assert {f"connector:{i}" for i in acknowledged} <= set(created)
    for name in ("training_connectors", "gateway_spaces"):
        verified = platform.cli("projections", "verify", name)
        assert verified.returncode == 0, verified.stdout + verified.stderr


def _all(client: httpx.Client, path: str, space: str) -> list[str]:
    ids, after = [], None
    while True:
        params = {"limit": 100, **({"after": after} if after else {})}
        page = client.get(path, headers={"X-Space-ID": space}, params=params).json()
        ids += [item["id"] for item in page["data"]]
        if not page["has_more"]:
            return ids
        after = ids[-1]
