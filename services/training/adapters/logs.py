"""A training's output as events, and reading it back (once, or following it as it grows).

Lines are batched into TrainingLogged events on the `trainlog:<id>` stream (at most every
`flush_s` seconds or `batch` lines), so a chatty job costs a few appends a second, not one per
line. Metrics a job logs (`mlplane.train.log_metric` writes JSON lines to its metrics file) are
read as the file grows and appended as MetricLogged events on the same stream.

This is the one append of the service that is not a `kernel.execute`: the stream is output,
not an entity. Its one writer is the runner holding the job, there is nothing to decide (a line
is never refused), and no read model folds it, so a command per flush would only add a load of
the stream and a catch-up of every projection, several times a second per job.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mlplane.eventlog import Context, EventLog
from mlplane.eventstore.base import ANY

from .. import events as e
from ..handlers import FINISHED, TRAININGS

MAX_BATCH = 200


def log_stream(training_id: str) -> str:
    return f"trainlog:{training_id}"


class LogWriter:
    def __init__(
        self,
        log: EventLog,
        training_id: str,
        ctx: Context,
        *,
        flush_s: float = 0.3,
        metrics_file: Path | None = None,
    ) -> None:
        self.log = log
        self.training_id = training_id
        self.ctx = ctx
        self.flush_s = flush_s
        self.metrics_file = metrics_file
        self._lines: list[dict[str, str]] = []
        self._last = time.monotonic()
        self._metrics_offset = 0
        self.metrics: dict[str, float] = {}
        self._lock = asyncio.Lock()

    async def line(self, stream: str, text: str) -> None:
        self._lines.append({"stream": stream, "text": text})
        if len(self._lines) >= MAX_BATCH or time.monotonic() - self._last >= self.flush_s:
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            self._last = time.monotonic()
            events: list[e.Event] = []
            if self._lines:
                lines, self._lines = self._lines, []
                events.append(e.TrainingLogged(training_id=self.training_id, lines=lines))
            events += self._new_metrics()
            if events:
                await self.log.append(log_stream(self.training_id), events, ANY, self.ctx)

    def _new_metrics(self) -> list[e.Event]:
        if self.metrics_file is None or not self.metrics_file.is_file():
            return []
        with open(self.metrics_file, "rb") as fh:
            fh.seek(self._metrics_offset)
            chunk = fh.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._metrics_offset += len(complete)
        found = []
        for raw in complete.splitlines():
            metric = parse_metric(raw, self.training_id)
            if metric is not None:
                self.metrics[metric.name] = metric.value
                found.append(metric)
        return found[-500:]


def parse_metric(raw: bytes, training_id: str) -> e.MetricLogged | None:
    try:
        item: dict[str, Any] = json.loads(raw)
        value = float(item["value"])
        step = item.get("step")
        if not math.isfinite(value):
            return None
        return e.MetricLogged(
            training_id=training_id,
            name=str(item["name"])[:200],
            value=value,
            step=int(step) if step is not None else None,
        )
    except (ValueError, KeyError, TypeError):
        return None


async def read_lines(
    log: EventLog, training_id: str, from_version: int = 1
) -> tuple[list[dict], int]:
    """Log lines and metrics after `from_version`; returns them and the next version to read."""
    envelopes = await log.read_stream(log_stream(training_id), from_version)
    out: list[dict] = []
    for env in envelopes:
        at = env.time.isoformat(timespec="milliseconds")
        if isinstance(env.data, e.TrainingLogged):
            out += [{"time": at, **line} for line in env.data.lines]
        elif isinstance(env.data, e.MetricLogged):
            out.append(
                {
                    "time": at,
                    "stream": "metric",
                    "name": env.data.name,
                    "value": env.data.value,
                    "step": env.data.step,
                }
            )
    return out, (envelopes[-1].version + 1 if envelopes else from_version)


async def follow(
    log: EventLog, training_id: str, *, poll_s: float = 0.3, max_s: float = 3600.0
) -> AsyncIterator[dict]:
    """Every log line so far, then new ones as they come, until the training has finished."""
    version, deadline = 1, time.monotonic() + max_s
    while time.monotonic() < deadline:
        lines, version = await read_lines(log, training_id, version)
        for line in lines:
            yield line
        if lines:
            continue
        state = await log.read_stream(TRAININGS.stream(training_id))
        if TRAININGS.fold(state).status in FINISHED:
            lines, version = await read_lines(log, training_id, version)
            for line in lines:
                yield line
            return
        await asyncio.sleep(poll_s)
