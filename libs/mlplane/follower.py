"""Followers of the event log: anything that reads `read_all` in order and records how far it got.

The outbox relay and the projection runners are followers. Each batch is processed, then the
position is recorded, so a crash between the two replays the batch (at least once); consumers
make the replay harmless (projections by their per-document position guard).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from .events import StoredEvent
from .eventstore import EventStore
from .readmodels import ReadModelStore

log = logging.getLogger("mlplane.follower")

BatchHandler = Callable[[Sequence[StoredEvent]], Awaitable[None]]


class Follower:
    def __init__(
        self,
        name: str,
        store: EventStore,
        checkpoints: ReadModelStore,
        handle: BatchHandler,
        *,
        batch_size: int = 500,
        poll_interval: float = 0.5,
        wake: Callable[[float], Awaitable[None]] | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        self.name = name
        self._store = store
        self._checkpoints = checkpoints
        self._handle = handle
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._wake = wake or asyncio.sleep
        self._max_backoff = max_backoff
        self._stopping = asyncio.Event()
        self.position = 0

    async def run_once(self) -> int:
        """Process what is in the log now; return how many events were handled."""
        self.position = await self._checkpoints.get_checkpoint(self.name)
        total = 0
        while True:
            batch = await self._store.read_all(self.position + 1, self._batch_size)
            if not batch:
                return total
            await self._handle(batch)
            self.position = batch[-1].position
            await self._checkpoints.set_checkpoint(self.name, self.position)
            total += len(batch)

    async def run(self, step: Callable[[], Awaitable[int]] | None = None) -> None:
        """Follow the log until `stop` is called (`step` replaces `run_once`).

        A failing step (the bus or a store is away) is retried with exponential backoff, from
        the last recorded position: nothing after it was acknowledged, so nothing is skipped.
        """
        step = step or self.run_once
        failures = 0
        while not self._stopping.is_set():
            try:
                handled = await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.exception("follower %s failed at %d; retrying", self.name, self.position)
                else:
                    log.warning(
                        "follower %s failed again (%d): %s: %s",
                        self.name,
                        failures,
                        type(exc).__name__,
                        exc,
                    )
                await self._pause(min(self._poll_interval * 2 ** (failures - 1), self._max_backoff))
                continue
            if failures:
                log.info("follower %s recovered after %d failures", self.name, failures)
                failures = 0
            if not handled:
                await self._wake(self._poll_interval)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when stopped."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    def stop(self) -> None:
        self._stopping.set()
