"""The training runner: the process manager that turns queued trainings into running jobs.

What it does is decided by two pure functions, unit tested without servers
(`tests/unit/test_training_workers.py`): `policy(event, state)` says what a training event
asks of the runner (TrainingCreated: run the job; TrainingKilled or TrainingDeleted: stop it),
and `on_restart(state, runner)` what a training found active at start-up asks: a queued one is
run, one this runner held as building or running when the platform went down is recorded as
failed (interrupted), since its process died with the platform, except on Kubernetes, where
jobs keep running in their cluster and are watched again instead. `TrainingWorker` does the
I/O around them. Every step of a job is a command on the training's stream (`kernel.execute`),
so two runners racing for one training cannot both run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlplane import aggregates
from mlplane.artifacts import ArtifactStore
from mlplane.bus import topic_name
from mlplane.commands import Command
from mlplane.eventlog import Context
from mlplane.events import Event, StoredEvent, new_id
from mlplane.kernel import Kernel
from mlplane.settings import Settings

from . import commands as c
from . import events as e
from .adapters.logs import LogWriter
from .adapters.outputs import collect, read_metrics
from .adapters.runtime import Exit, JobHooks, JobSpec, LocalRuntime, Runtime
from .adapters.workspace import KUBERNETES, Workspace, environment, model_slug
from .handlers import ACTIVE, CONNECTORS, QUEUED, TRAININGS, ConnectorState, TrainingState
from .projections import TRAININGS as TRAINING_DOCS
from .services import WORKER
from .settings import TrainingSettings

log = logging.getLogger("mlplane.training")


# ---------------------------------------------------------------- policy


@dataclass(frozen=True)
class RunJob:
    """Build and run the training's job here (`resume`: watch again a job already started)."""

    training_id: str
    resume: bool = False


@dataclass(frozen=True)
class StopJob:
    """Stop the training's job if it runs here."""

    training_id: str


@dataclass(frozen=True)
class EndLeftover:
    """End a job process that outlived its supervisor (its working folder names it)."""

    training_id: str
    pid: int


Order = RunJob | StopJob | EndLeftover | Command
"""What the policy asks: a job to start or stop here, or a command on the training."""

WATCHED = {cls.type_name: cls for cls in (e.TrainingCreated, e.TrainingKilled, e.TrainingDeleted)}


def policy(event: Event, state: TrainingState) -> list[Order]:
    """What a training event asks of a runner, given the training's state now."""
    match event:
        case e.TrainingCreated() if state.live and state.status == QUEUED:
            return [RunJob(event.training_id)]
        case e.TrainingKilled() | e.TrainingDeleted():
            return [StopJob(event.training_id)]
    return []


def on_restart(state: TrainingState, runner: str) -> list[Order]:
    """What a training found active when `runner` starts asks of it."""
    if state.status == QUEUED:
        return [RunJob(state.id)]
    if state.runner != runner:
        return []  # another runner's
    if state.runtime == KUBERNETES:
        return [RunJob(state.id, resume=True)]
    reason = f"interrupted: the platform restarted while the training was {state.status}"
    leftover = [EndLeftover(state.id, state.pid)] if state.pid else []
    return [*leftover, c.FailTraining(training_id=state.id, reason=reason, runner=runner)]


def on_exit(state: TrainingState, exit_: Exit) -> list[Command]:
    """What the end of a job asks, unless it succeeded (then its outputs become checkpoints):
    nothing when it was stopped on request (its kill is recorded already), else its failure."""
    if exit_.reason == "stopped" or (exit_.code == 0 and not exit_.reason):
        return []
    reason = exit_.reason or f"the job exited with code {exit_.code}"
    return [c.FailTraining(training_id=state.id, reason=reason, exit_code=exit_.code)]


# ---------------------------------------------------------------- the I/O around it


class Hooks(JobHooks):
    def __init__(
        self,
        worker: TrainingWorker,
        state: TrainingState,
        job: JobSpec,
        logs: LogWriter,
        runtime: Runtime,
    ) -> None:
        self.worker, self.state, self.job, self.logs, self.runtime = (
            worker,
            state,
            job,
            logs,
            runtime,
        )

    async def line(self, stream: str, text: str) -> None:
        await self.logs.line(stream, text)

    async def tick(self) -> None:
        await self.logs.flush()

    async def started(self, pid: int | None, job_name: str) -> bool:
        command = c.StartTraining(
            training_id=self.state.id,
            runner=self.worker.runner,
            pid=pid,
            job_name=job_name,
            environment=environment(self.runtime.scheme, self.job),
        )
        return bool(await self.worker.decide(self.state, command))


class TrainingWorker:
    def __init__(
        self,
        kernel: Kernel,
        settings: Settings,
        training: TrainingSettings,
        store: ArtifactStore,
        runtimes: dict[str, Runtime],
    ) -> None:
        self.kernel = kernel
        self.settings = settings
        self.training = training
        self.store = store
        self.runtimes = runtimes
        self.runner = training.runner(settings.home)
        self.workspace = Workspace(store, settings, training, self.connector)
        self.jobs_dir = self.workspace.jobs_dir
        self.slots = asyncio.Semaphore(training.slots)
        self.tasks: dict[str, asyncio.Task] = {}
        self.running_on: dict[str, Runtime] = {}
        self._stopping = asyncio.Event()

    # ------------------------------------------------------------ life cycle

    async def start(self) -> None:
        await self.kernel.bus.subscribe("training-runner", [topic_name(e.TOPIC)], self.on_event)
        await self.reconcile()
        self.kernel.extensions[WORKER] = self
        self.kernel.spawn("training-worker", self.run(), self)

    async def run(self) -> None:
        await self._stopping.wait()
        await self.shutdown()

    def stop(self) -> None:
        self._stopping.set()

    async def shutdown(self) -> None:
        """Stop local jobs (their process cannot outlive the platform) and record why."""
        local = [
            tid
            for tid, task in self.tasks.items()
            if not task.done() and isinstance(self.running_on.get(tid), LocalRuntime)
        ]
        for tid in list(self.tasks):
            self.tasks[tid].cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        for tid in local:
            reason = "interrupted: the platform stopped while the training ran"
            with contextlib.suppress(Exception):
                await self.execute(
                    tid, c.FailTraining(training_id=tid, reason=reason, runner=self.runner)
                )

    async def on_event(self, stored: StoredEvent) -> None:
        model = WATCHED.get(stored.type)
        if model is None:
            return
        event = stored.validate(model)
        await self.obey(policy(event, await self.current(event.training_id)))

    async def obey(self, orders: list[Order]) -> None:
        for order in orders:
            match order:
                case RunJob(training_id=tid, resume=resume):
                    self.submit(tid, resume=resume)
                case StopJob(training_id=tid):
                    await self.halt(tid)
                case EndLeftover(training_id=tid, pid=pid):
                    self.kill_leftover(tid, pid)
                case Command():
                    await self.execute(order.training_id, order)

    async def reconcile(self) -> None:
        """Pick up queued trainings; settle those this runner held when it went down."""
        await self.kernel.catch_up(TRAINING_DOCS)
        after = None
        while True:
            page = await self.kernel.docs.query(
                TRAINING_DOCS, {"status": list(ACTIVE)}, limit=100, after=after
            )
            for doc in page.data:
                await self.obey(on_restart(TrainingState.model_validate(doc), self.runner))
            if not page.has_more:
                return
            after = page.next_cursor

    def kill_leftover(self, training_id: str, pid: int) -> None:
        """A job process that somehow survived its supervisor is ended (its cwd names it)."""
        with contextlib.suppress(OSError):
            if Path(os.readlink(f"/proc/{pid}/cwd")).resolve() == (
                self.jobs_dir / training_id / "src"
            ):
                os.killpg(pid, signal.SIGKILL)

    # ------------------------------------------------------------ jobs

    def submit(self, training_id: str, *, resume: bool = False) -> None:
        task = self.tasks.get(training_id)
        if self._stopping.is_set() or (task is not None and not task.done()):
            return
        self.tasks[training_id] = asyncio.create_task(
            self._job(training_id, resume), name=f"training:{training_id}"
        )

    async def halt(self, training_id: str) -> bool:
        """Stop a job (building or running) that this runner has; True if it had it."""
        task = self.tasks.get(training_id)
        if task is None or task.done():
            return False
        runtime = self.running_on.pop(training_id, None)
        if runtime is not None:
            await runtime.stop(training_id)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return True

    async def _job(self, training_id: str, resume: bool) -> None:
        state, _ = await aggregates.load(self.kernel.log, TRAININGS, training_id)
        runtime = self.runtimes.get(state.runtime)
        if runtime is None:
            await self.execute(
                training_id,
                c.FailTraining(
                    training_id=training_id, reason=f"no runtime {state.runtime!r} on this runner"
                ),
            )
            return
        self.running_on[training_id] = runtime
        try:
            if resume:
                await self._attach(state, runtime)
            elif isinstance(runtime, LocalRuntime):
                async with self.slots:
                    await self._run(state, runtime)
            else:
                await self._run(state, runtime)
        finally:
            self.running_on.pop(training_id, None)

    async def _run(self, state: TrainingState, runtime: Runtime) -> None:
        if not await self.decide(state, c.ClaimTraining(training_id=state.id, runner=self.runner)):
            return
        logs = self.log_writer(state)
        try:
            await logs.line("runner", f"building on {self.runner} ({runtime.scheme})")
            if isinstance(runtime, LocalRuntime):
                job = await self.workspace.prepare(state, logs)
            else:
                job = self.workspace.job_spec(state, self.jobs_dir / state.id)
            await logs.line("runner", "starting")
            exit_ = await runtime.run(job, Hooks(self, state, job, logs, runtime))
            await logs.flush()
            await self.finish(state, job, exit_, logs, runtime)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(logs.flush())
            raise
        except Exception as exc:
            log.exception("training %s failed in the runner", state.id)
            reason = f"{type(exc).__name__}: {getattr(exc, 'detail', exc)}"
            await logs.line("runner", f"failed: {reason}")
            await logs.flush()
            await self.execute(state.id, c.FailTraining(training_id=state.id, reason=reason))

    async def _attach(self, state: TrainingState, runtime: Runtime) -> None:
        """Watch again a Kubernetes job started before this runner restarted."""
        logs = self.log_writer(state)
        job = self.workspace.job_spec(state, self.jobs_dir / state.id)
        exit_ = await runtime.run(job, Hooks(self, state, job, logs, runtime))
        await logs.flush()
        await self.finish(await self.current(state.id), job, exit_, logs, runtime)

    def log_writer(self, state: TrainingState) -> LogWriter:
        ctx = self.context(state)
        return LogWriter(
            self.kernel.log,
            state.id,
            ctx,
            flush_s=self.training.log_flush_s,
            metrics_file=self.jobs_dir / state.id / "metrics.jsonl",
        )

    async def finish(
        self, state: TrainingState, job: JobSpec, exit_: Exit, logs: LogWriter, runtime: Runtime
    ) -> None:
        if exit_.reason == "stopped":
            return
        failed = on_exit(state, exit_)
        if failed:
            await logs.line("runner", f"failed: {failed[0].reason}")
            await logs.flush()
            await self.obey(failed)
            return
        output = await runtime.outputs(job, self.store)
        metrics = logs.metrics or read_metrics(output / "metrics.json")
        models = collect(output, job.workdir.parent / "repository", metrics)
        state = await self.current(state.id)
        for model in models:
            key = f"checkpoints/{new_id()}/{model.name}"
            cid = key.split("/")[1]
            await self.store.put_tree(key, model.root)
            await self.decide(
                state,
                c.RecordCheckpoint(
                    training_id=state.id,
                    checkpoint_id=cid,
                    name=model.name,
                    version=1,
                    format=model.format,
                    uri=self.store.uri(key),
                    key=key,
                    files=model.files(),
                    metrics=model.metrics,
                    signature=model.signature,
                ),
            )
            await logs.line(
                "runner", f"checkpoint {cid}: {model.name} ({model.format}) {model.metrics}"
            )
        if not models:
            await logs.line("runner", "the job left no model in its output folder")
        await logs.line("runner", "succeeded")
        await logs.flush()
        await self.execute(state.id, c.FinishTraining(training_id=state.id, metrics=metrics))

    # ------------------------------------------------------------ decisions

    def context(self, state: TrainingState) -> Context:
        return Context(
            space=state.space_id, actor=f"runner:{self.runner}", source="mlplane/training"
        )

    async def current(self, training_id: str) -> TrainingState:
        return (await aggregates.load(self.kernel.log, TRAININGS, training_id))[0]

    async def connector(self, connector_id: str) -> ConnectorState:
        return (await aggregates.load(self.kernel.log, CONNECTORS, connector_id))[0]

    async def decide(self, state: TrainingState, command: Command) -> list:
        """Execute `command` on the training held as `state`; the events it caused."""
        return (await self.kernel.execute(command, self.context(state))).events

    async def execute(self, training_id: str, command: Command) -> list:
        state = await self.current(training_id)
        return await self.decide(state, command) if state.id else []

    async def spec(self, training_id: str) -> dict[str, Any]:
        """What a Kubernetes pod needs to run a training (see `adapters.pod`)."""
        state = await self.current(training_id)
        return {
            "source": state.source,
            "code_hash": state.code_hash,
            "data_hash": state.data_hash,
            "entrypoint": state.entrypoint,
            "args": state.args,
            "parameters": state.parameters,
            "architecture": state.architecture,
            "configuration": state.configuration,
            "name": model_slug(state.name),
        }

    def inspect(self) -> dict[str, Any]:
        return {
            "runner": self.runner,
            "resources": {scheme: rt.resources() for scheme, rt in self.runtimes.items()},
            "running_here": sorted(t for t, task in self.tasks.items() if not task.done()),
        }
