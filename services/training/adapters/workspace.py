"""A training's job as a runtime runs it: the `JobSpec` (argv, environment, limits) and, for a
local job, its working folder laid out before it starts: the bundle's code and data (or a
built-in's config), its parameters, its connectors' files under `data/<connector name>/`, and
its requirements installed beside it (`.deps`).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sys
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from mlplane.artifacts import ArtifactStore
from mlplane.settings import Settings

from ..bundles import fetch_parts
from ..connectors import folder_name
from ..handlers import ConnectorState, TrainingState
from ..settings import TrainingSettings
from .logs import LogWriter
from .outputs import model_name
from .runtime import JobSpec, supervise
from .sources import open_source

PACKAGES = ("numpy", "scikit-learn", "skl2onnx", "onnx", "onnxruntime", "joblib")
KUBERNETES = "kubernetes://"

ConnectorLookup = Callable[[str], Awaitable[ConnectorState]]
"""connector id -> its state as its stream holds it (credentials decrypted in memory)."""


def environment(runtime: str, job: JobSpec) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    env = {
        "runtime": runtime,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "cpu": job.cpu,
        "memory_mb": job.memory_mb,
        "gpu": job.gpu,
        "timeout_s": job.timeout_s,
    }
    return {**env, "image": job.image} if job.image else env


def model_slug(name: str) -> str:
    return model_name(name.lower().replace(" ", "-"))


class Workspace:
    """Where this runner lays out its jobs (`<home>/training/jobs/<training id>`)."""

    def __init__(
        self,
        store: ArtifactStore,
        settings: Settings,
        training: TrainingSettings,
        connector_of: ConnectorLookup,
    ) -> None:
        self.store = store
        self.settings = settings
        self.training = training
        self.connector_of = connector_of
        self.jobs_dir = (settings.home / "training" / "jobs").resolve()

    async def prepare(self, state: TrainingState, logs: LogWriter) -> JobSpec:
        workdir = self.jobs_dir / state.id
        shutil.rmtree(workdir, ignore_errors=True)
        src = workdir / "src"
        for folder in (src / "data", workdir / "output"):
            folder.mkdir(parents=True, exist_ok=True)
        job = self.job_spec(state, workdir)
        if state.source == "bundle":
            await fetch_parts(
                self.store, state.code_hash, state.data_hash, src, self.training.limits
            )
        else:
            spec = {
                "architecture": state.architecture,
                "configuration": state.configuration,
                "name": model_slug(state.name),
            }
            (src / "config.json").write_text(json.dumps(spec))
        (workdir / "params.json").write_text(
            json.dumps({**state.parameters, **state.configuration})
        )
        await self.fetch_data(state, src / "data", logs)
        if state.requirements and state.runtime == "local://":
            await self.install(state, job, logs)
        return job

    def job_spec(self, state: TrainingState, workdir: Path) -> JobSpec:
        resources = state.resources or {}
        src = workdir / "src"
        if state.source == "bundle":
            entry = state.entrypoint
            argv = (
                [sys.executable, entry, *state.args]
                if entry.endswith(".py")
                else [sys.executable, "-m", entry, *state.args]
            )
        else:
            argv = [sys.executable, "-m", "services.training.builtin", "config.json"]
        paths = [str(src), str(src / ".deps")]
        env = {
            "MLPLANE_OUTPUT_DIR": str(workdir / "output"),
            "MLPLANE_METRICS_FILE": str(workdir / "metrics.jsonl"),
            "MLPLANE_PARAMS_FILE": str(workdir / "params.json"),
            "MLPLANE_DATA_DIR": str(src / "data"),
            "MLPLANE_TRAINING_ID": state.id,
            "PYTHONPATH": os.pathsep.join(paths),
        }
        return JobSpec(
            training_id=state.id,
            space_id=state.space_id,
            workdir=src,
            argv=argv,
            env=env,
            timeout_s=float(resources.get("timeout_s", self.training.timeout_s)),
            cpu=float(resources.get("cpu", 1.0)),
            memory_mb=int(resources.get("memory_mb", self.training.memory_mb)),
            gpu=state.gpu_count,
            image=self.training.image if state.runtime == KUBERNETES else "",
        )

    async def fetch_data(self, state: TrainingState, dest: Path, logs: LogWriter) -> None:
        for ref in state.connectors:
            connector = await self.connector_of(ref["connector_id"])
            if not connector.live or connector.space_id != state.space_id:
                raise LookupError(f"connector {ref['connector_id']!r} not found in this space")
            source = open_source(
                connector.type,
                connector.config,
                connector.credentials,
                self.training.datasets(self.settings.home),
                egress=self.settings.egress,
            )
            keys = ref.get("files") or [
                f.key for f in await source.list(ref.get("prefix", ""), 1000)
            ]
            try:
                folder = dest / folder_name(connector.name)
            except ValueError as exc:
                raise ValueError(f"connector {connector.name!r}: {exc}") from None
            for key in keys:
                await source.fetch(key, folder / key)
            await logs.line("build", f"fetched {len(keys)} file(s) from connector {connector.name}")

    async def install(self, state: TrainingState, job: JobSpec, logs: LogWriter) -> None:
        argv = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-input",
            "--disable-pip-version-check",
            "--target",
            str(job.workdir / ".deps"),
            *state.requirements,
        ]
        build = JobSpec(
            job.training_id, job.space_id, job.workdir, argv, timeout_s=900, memory_mb=4096
        )
        exit_ = await supervise(build, argv, logs.line, stream_name="build")
        if exit_.code != 0:
            raise RuntimeError(
                f"installing requirements failed ({exit_.reason or f'exit code {exit_.code}'})"
            )
