"""The logs service's background work, run as one kernel worker: the ingest of inference logs,
the purge of expired raw logs and the webhook dispatcher. Stopping it stops each part, then
closes the log store they share with the routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from .store import LogStore

log = logging.getLogger("mlplane.logs")


class Part(Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None: ...


class Purger:
    """Deletes raw logs older than the retention, every `interval` seconds."""

    def __init__(self, store: LogStore, retention: timedelta, interval: float) -> None:
        self.store, self.retention, self.interval = store, retention, interval
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                gone = await self.store.purge(datetime.now(UTC) - self.retention)
                if gone:
                    log.info("purged %d raw inference logs older than %s", gone, self.retention)
            except Exception:
                log.exception("purging expired inference logs failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)

    def stop(self) -> None:
        self._stopping.set()


class LogsWorkers:
    def __init__(self, store: LogStore, parts: Sequence[Part]) -> None:
        self.store = store
        self.parts = list(parts)
        self._tasks: list[asyncio.Task] = []

    async def run(self) -> None:
        self._tasks = [
            asyncio.create_task(part.run(), name=type(part).__name__) for part in self.parts
        ]
        try:
            await asyncio.gather(*self._tasks)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.store.close()

    def stop(self) -> None:
        for part in self.parts:
            part.stop()
