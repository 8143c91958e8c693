"""The managed local model server: MLServer in its own virtualenv, started and supervised here.

MLServer's pins clash with mlplane's (it wants fastapi<0.116), so it runs from a virtualenv of
its own, made once by `deploy/local/mlserver.sh` (MLServer, its scikit-learn runtime and
onnxruntime, pinned to the scikit-learn and numpy mlplane uses, so both unpickle alike). ONNX
models run on mlplane's own runtime (`mlserver_runtime/mlplane_onnx.py`), put on the server's
PYTHONPATH. The server binds 127.0.0.1, loads nothing at start (the platform decides what is
loaded), dies with the platform (PR_SET_PDEATHSIG through the training sandbox launcher) and is
restarted when it exits; the fleet worker then sees the models gone and reloads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sys
from pathlib import Path

import aiohttp

log = logging.getLogger("mlplane.serving.mlserver")

ROOT = Path(__file__).resolve().parents[2]
INSTALLER = ROOT / "deploy" / "local" / "mlserver.sh"
RUNTIMES = Path(__file__).resolve().parent / "mlserver_runtime"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_free(port: int) -> bool:
    """Nothing listens there (connections of a killed server lingering in TIME_WAIT do not count,
    as the server binds with SO_REUSEADDR too)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def ensure_venv(venv: Path | None = None) -> Path:
    """The python of MLServer's virtualenv, installed on first use (a minute, once)."""
    argv = ["bash", str(INSTALLER), *([str(venv)] if venv else [])]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"installing MLServer failed:\n{err.decode()[-2000:]}")
    return Path(out.decode().strip().splitlines()[-1])


class ManagedMLServer:
    def __init__(
        self, root: Path, port: int = 0, *, workers: int = 0, venv: Path | None = None
    ) -> None:
        self.root = root.resolve()
        self.repository = self.root / "repository"
        self.port = port or free_port()
        self.workers = workers
        self.venv = venv
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = False
        self._ready = asyncio.Event()
        self._supervisor: asyncio.Task | None = None
        self._log = self.root / "mlserver.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _settings(self) -> dict:
        return {
            "host": "127.0.0.1",
            "http_port": self.port,
            "grpc_port": free_port(),
            "metrics_endpoint": None,
            "load_models_at_startup": False,
            "parallel_workers": self.workers,
            "debug": False,
            "gzip_enabled": False,
            "model_repository_root": str(self.repository),
            "server_name": "mlplane-mlserver",
        }

    async def _spawn(self) -> None:
        python = await ensure_venv(self.venv)
        self.repository.mkdir(parents=True, exist_ok=True)
        if not port_free(self.port):
            raise RuntimeError(f"port {self.port} of the local model server is taken")
        (self.repository / "settings.json").write_text(json.dumps(self._settings(), indent=2))
        argv = [
            sys.executable,
            "-m",
            "services.training.sandbox",
            "{}",
            "--",
            str(python),
            str(python.parent / "mlserver"),
            "start",
            str(self.repository),
        ]
        env = {
            "PYTHONPATH": str(RUNTIMES),
            "PATH": f"{python.parent}:/usr/bin:/bin",
            "OMP_NUM_THREADS": "1",
            "HOME": str(self.root),
            "PYTHONUNBUFFERED": "1",
        }
        out = self._log.open("ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                *argv,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=str(ROOT),
                start_new_session=True,
            )
        finally:
            out.close()
        (self.root / "mlserver.pid").write_text(str(self.process.pid))

    async def start(self, timeout_s: float = 120) -> None:
        """Start (installing MLServer first if needed) and wait until it answers ready."""
        self.root.mkdir(parents=True, exist_ok=True)
        await self._spawn()
        await self.wait_ready(timeout_s)
        self._supervisor = asyncio.create_task(self._supervise(), name="mlserver-supervisor")

    async def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while asyncio.get_running_loop().time() < deadline:
                if self.process is not None and self.process.returncode is not None:
                    raise RuntimeError(
                        f"MLServer exited with {self.process.returncode}:\n{self.tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                    async with session.get(f"{self.url}/v2/health/ready") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"MLServer was not ready in {timeout_s:g}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def _supervise(self) -> None:
        delay = 0.5
        while not self._stopping:
            assert self.process is not None
            code = await self.process.wait()
            if self._stopping:
                return
            log.warning(
                "the local model server exited with %s; restarting it in %.1fs", code, delay
            )
            await asyncio.sleep(delay)
            try:
                await self._spawn()
                await self.wait_ready(60)
                self.restarts += 1
                delay = 0.5
            except Exception as exc:  # noqa: BLE001 - keep supervising; the fleet reports it down
                log.error("restarting the local model server failed: %s", exc)
                delay = min(delay * 2, 10)

    def kill(self) -> None:
        """SIGKILL the server (the supervisor restarts it): what a crash looks like."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    async def stop(self) -> None:
        self._stopping = True
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
