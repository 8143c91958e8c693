"""The runtime port (where a training's process runs) and its local adapter.

`local://` runs each job as a supervised subprocess of the platform: its own working directory
and process group, resource limits applied by `sandbox`, a wall-clock timeout, stdout and stderr
read as they come and handed to a sink line by line, and a stop that terminates the whole
process group (SIGTERM, then SIGKILL after a grace period). The job sees only a small, explicit
environment: none of the platform's variables, tokens or credentials leak into it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LineSink = Callable[[str, str], Awaitable[None]]
"""(stream, text) for each line of output."""

PASS_THROUGH = (
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "SSL_CERT_FILE",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
)
MAX_LINE = 8192
GRACE_S = 3.0


@dataclass
class JobSpec:
    training_id: str
    space_id: str
    workdir: Path
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 3600.0
    cpu: float = 1.0
    memory_mb: int = 2048
    gpu: int = 0
    image: str = ""


@dataclass(frozen=True)
class Exit:
    code: int | None
    reason: str = ""
    """Empty when the job exited by itself; otherwise why it was stopped."""


class JobHooks(abc.ABC):
    """What a runtime reports while it runs a job."""

    @abc.abstractmethod
    async def line(self, stream: str, text: str) -> None: ...

    @abc.abstractmethod
    async def started(self, pid: int | None, job_name: str) -> bool:
        """The job's process runs; False means it must not (it was killed meanwhile)."""

    async def tick(self) -> None:
        """Called about every half second while the job runs (flush logs, read metrics)."""


class Runtime(abc.ABC):
    scheme: str

    @abc.abstractmethod
    async def run(self, job: JobSpec, hooks: JobHooks) -> Exit:
        """Run the job to its end (or its stop)."""

    @abc.abstractmethod
    async def stop(self, training_id: str) -> bool:
        """Stop the job if this runtime runs it; True if it did."""

    @abc.abstractmethod
    def running(self) -> list[str]: ...

    def resources(self) -> dict[str, Any]:
        return {}

    async def outputs(self, job: JobSpec, store: Any) -> Path:
        """The folder holding what a finished job left (its models, their metrics)."""
        return job.workdir.parent / "output"


def job_env(job: JobSpec) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in PASS_THROUGH}
    threads = str(max(1, int(job.cpu)))
    return {
        **env,
        "HOME": str(job.workdir),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        **job.env,
    }


def sandboxed(job: JobSpec, argv: list[str]) -> list[str]:
    limits = {
        "memory_bytes": job.memory_mb << 20,
        "open_files": 1024,
        "file_bytes": 8 << 30,
        "cpu_seconds": int(job.timeout_s * max(job.cpu, 1)) + 5,
    }
    return [sys.executable, "-m", "services.training.sandbox", json.dumps(limits), "--", *argv]


async def pump(stream: asyncio.StreamReader, name: str, sink: LineSink) -> None:
    """Hand each line to `sink`; lines longer than MAX_LINE are cut into pieces."""
    pending = b""
    while chunk := await stream.read(1 << 14):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            for start in range(0, max(len(raw), 1), MAX_LINE):
                await sink(
                    name, raw[start : start + MAX_LINE].decode("utf-8", "replace").rstrip("\r")
                )
        while len(pending) > MAX_LINE:
            await sink(name, pending[:MAX_LINE].decode("utf-8", "replace"))
            pending = pending[MAX_LINE:]
    if pending:
        await sink(name, pending.decode("utf-8", "replace"))


def kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def supervise(
    job: JobSpec,
    argv: list[str],
    sink: LineSink,
    *,
    stream_name: str = "",
    on_start: Callable[[int], Awaitable[bool]] | None = None,
    tick: Callable[[], Awaitable[None]] | None = None,
    register: Callable[[asyncio.subprocess.Process | None], None] | None = None,
) -> Exit:
    """Run `argv` sandboxed in `job.workdir` until it exits, times out or is cancelled.

    Cancelling the calling task terminates the process group before the cancellation goes on,
    so a killed build or job leaves no process behind.
    """
    proc = await asyncio.create_subprocess_exec(
        *sandboxed(job, argv),
        cwd=job.workdir,
        env=job_env(job),
        start_new_session=True,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    if register:
        register(proc)
    pumps = [
        asyncio.create_task(pump(proc.stdout, stream_name or "stdout", sink)),  # type: ignore[arg-type]
        asyncio.create_task(pump(proc.stderr, stream_name or "stderr", sink)),
    ]  # type: ignore[arg-type]
    try:
        if on_start and not await on_start(proc.pid):
            await terminate(proc)
            return Exit(None, "killed before it started")
        code = await wait(proc, job.timeout_s, tick)
        await asyncio.gather(*pumps)
        if code is None:
            return Exit(None, f"timed out after {job.timeout_s:g}s")
        return Exit(code)
    finally:
        if proc.returncode is None:
            await asyncio.shield(terminate(proc))
        for task in pumps:
            task.cancel()
        if register:
            register(None)


async def wait(
    proc: asyncio.subprocess.Process, timeout_s: float, tick: Callable[[], Awaitable[None]] | None
) -> int | None:
    """The exit code, or None after terminating a process that ran past `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    waiter = asyncio.ensure_future(proc.wait())
    try:
        while not waiter.done():
            left = deadline - loop.time()
            if left <= 0:
                await terminate(proc)
                return None
            await asyncio.wait([waiter], timeout=min(0.5, left))
            if tick:
                await tick()
        return waiter.result()
    finally:
        waiter.cancel()


async def terminate(proc: asyncio.subprocess.Process) -> None:
    kill_group(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), GRACE_S)
    except TimeoutError:
        kill_group(proc.pid, signal.SIGKILL)
        await proc.wait()
    kill_group(proc.pid, signal.SIGKILL)  # anything the job left behind in its group


class LocalRuntime(Runtime):
    """Jobs as subprocesses of this process, at most `slots` at a time (the worker queues)."""

    scheme = "local://"

    def __init__(self, slots: int = 2) -> None:
        self.slots = slots
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._stopped: set[str] = set()

    async def run(self, job: JobSpec, hooks: JobHooks) -> Exit:
        self._stopped.discard(job.training_id)

        def register(proc: asyncio.subprocess.Process | None) -> None:
            if proc is None:
                self._procs.pop(job.training_id, None)
            else:
                self._procs[job.training_id] = proc

        async def on_start(pid: int) -> bool:
            return await hooks.started(pid, "")

        exit_ = await supervise(
            job, job.argv, hooks.line, on_start=on_start, tick=hooks.tick, register=register
        )
        if job.training_id in self._stopped:
            return Exit(exit_.code, "stopped")
        return exit_

    async def stop(self, training_id: str) -> bool:
        proc = self._procs.get(training_id)
        if proc is None or proc.returncode is not None:
            return False
        self._stopped.add(training_id)
        await terminate(proc)
        return True

    def running(self) -> list[str]:
        return sorted(tid for tid, proc in self._procs.items() if proc.returncode is None)

    def resources(self) -> dict[str, Any]:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return {
            "runtime": self.scheme,
            "slots": self.slots,
            "slots_busy": len(self.running()),
            "cpus": os.cpu_count() or 1,
            "memory_mb": pages * page_size >> 20,
            "gpus": 0,
            "load_average": list(os.getloadavg()),
        }
