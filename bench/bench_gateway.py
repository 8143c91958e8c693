"""gateway: `GET /api/v1/spaces` requests/s through `mlplane up` ÷ a bare FastAPI hello-world.

Both are subprocesses served by uvicorn the same way (one worker, access log on) and driven from
this process over keep-alive connections on 127.0.0.1 by a minimal HTTP/1.1 client, so the load
generator costs far less than either server. The gateway runs embedded, with a few spaces, and
the caller is the administrator with the stored token printed at first start (the normal token
path: hash lookup, user, memberships). Rounds alternate between the two servers.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import Result

HERE = Path(__file__).resolve().parent
PATH = "/api/v1/spaces"
SPACES = 5
ROUNDS = 4
WARMUP = 300
CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A subprocess serving HTTP on 127.0.0.1:port, its output in `log`."""

    def __init__(self, args: list[str], port: int, log: Path, env: dict[str, str] | None = None):
        self.port, self.log = port, log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                args,
                env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def ready(self, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited:\n{self.log.read_text()}")
                try:
                    if (await client.get(f"http://127.0.0.1:{self.port}{path}")).status_code < 500:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def _client(port: int, request: bytes, count: int, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            body = await reader.readexactly(int(CONTENT_LENGTH.search(head).group(1)))
            latencies.append(time.perf_counter() - start)
            if head[9:12] != b"200":
                raise RuntimeError(f"{head[:12]!r}: {body[:300]!r}")
    finally:
        writer.close()
        await writer.wait_closed()


async def _load(port: int, token: str, total: int, concurrency: int) -> tuple[float, list[float]]:
    """Seconds for `total` requests over `concurrency` connections, and each one's latency."""
    request = (
        f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: application/json\r\n\r\n"
    ).encode()
    latencies: list[float] = []
    shares = [total // concurrency + (i < total % concurrency) for i in range(concurrency)]
    start = time.perf_counter()
    await asyncio.gather(*(_client(port, request, n, latencies) for n in shares))
    return time.perf_counter() - start, latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(seconds: float, latencies: list[float]) -> dict[str, float]:
    return {
        "rps": round(len(latencies) / seconds),
        "p50_ms": round(_percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
    }


async def _start_gateway(home: Path) -> tuple[Server, str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPLANE_")}
    env["MLPLANE_HOME"] = str(home)
    gateway = Server(
        [sys.executable, "-m", "mlplane.cli", "up", "--port", str(port)],
        port,
        home / "gateway.log",
        env,
    )
    await gateway.ready("/readyz")
    found = re.search(r"Admin token \(shown once, keep it\): (\S+)", gateway.log.read_text())
    if not found:
        raise RuntimeError(f"no admin token printed:\n{gateway.log.read_text()}")
    token = found.group(1)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        for i in range(SPACES):
            created = await client.post(PATH, json={"name": f"bench-{i}", "description": "bench"})
            created.raise_for_status()
    return gateway, token


async def gateway_list_spaces(total: int, concurrency: int = 8) -> Result:
    with tempfile.TemporaryDirectory(prefix="mlplane-bench-") as tmp:
        home = Path(tmp)
        hello_port = _free_port()
        hello = Server(
            [sys.executable, str(HERE / "hello_app.py"), str(hello_port)],
            hello_port,
            home / "hello.log",
        )
        gateway = None
        try:
            await hello.ready(PATH)
            gateway, token = await _start_gateway(home)
            servers = {"hello": hello, "gateway": gateway}
            for server in servers.values():
                await _load(server.port, token, WARMUP, concurrency)
            seconds = dict.fromkeys(servers, 0.0)
            latencies: dict[str, list[float]] = {name: [] for name in servers}
            for _ in range(ROUNDS):
                for name, server in servers.items():
                    took, each = await _load(server.port, token, total // ROUNDS, concurrency)
                    seconds[name] += took
                    latencies[name] += each
        finally:
            hello.stop()
            if gateway is not None:
                gateway.stop()
    ours, bare = (_summary(seconds[n], latencies[n]) for n in ("gateway", "hello"))
    return Result(
        "gateway.list_spaces",
        ours["rps"] / bare["rps"],
        0.6,
        True,
        {
            "requests": len(latencies["gateway"]),
            "concurrency": concurrency,
            "spaces": SPACES,
            **{f"gateway_{k}": v for k, v in ours.items()},
            **{f"fastapi_hello_{k}": v for k, v in bare.items()},
        },
        ours=ours["rps"],
        raw=bare["rps"],
        unit="req/s",
    )


if __name__ == "__main__":
    print(
        asyncio.run(gateway_list_spaces(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)).record()
    )
