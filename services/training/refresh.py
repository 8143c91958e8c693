"""Connector and cluster statuses: probed when one is created or changed, and again on a timer
by the status refresher, and recorded as events (`ConnectorStatusChanged`,
`ClusterStatusChanged`) when they change. Reads show the recorded status: no GET calls out.

A status is a word of the platform's own (`ready`, `unreachable`, `refused by the endpoint`,
`credentials rejected`, `not allowed: ...`), never the remote's answer, so probing cannot be
used to read what an internal service says. Every probe goes through the outbound-address
policy (`mlplane.egress`), checked when the connection opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from mlplane import aggregates
from mlplane.commands import Command
from mlplane.errors import ConcurrencyError
from mlplane.eventlog import Context
from mlplane.kernel import Kernel

from . import commands as c
from .adapters.kube import cluster_status
from .adapters.sources import open_source, probe
from .handlers import CLUSTERS, CONNECTORS, ClusterState, ConnectorState
from .projections import CLUSTERS as CLUSTER_DOCS
from .projections import CONNECTORS as CONNECTOR_DOCS
from .settings import TrainingSettings

log = logging.getLogger("mlplane.training.refresh")

CTX = Context(actor="system", source="mlplane/training")
PARALLEL = 8


async def connector_status(
    kernel: Kernel, settings: TrainingSettings, state: ConnectorState
) -> str:
    """Probe a connector's storage (one listed file) through the egress policy."""
    source = open_source(
        state.type,
        state.config,
        state.credentials,
        settings.datasets(kernel.settings.home),
        egress=kernel.settings.egress,
    )
    return await probe(source)


async def refresh_connector(kernel: Kernel, settings: TrainingSettings, connector_id: str) -> None:
    state, _ = await aggregates.load(kernel.log, CONNECTORS, connector_id)
    if not state.live:
        return
    status = await connector_status(kernel, settings, state)
    command = c.RecordConnectorStatus(connector_id=connector_id, status=status)
    await record(kernel, command, state.space_id)


async def refresh_cluster(kernel: Kernel, space_id: str) -> None:
    """Probe the space's cluster API and record what it found, if that changed."""
    state: ClusterState
    state, _ = await aggregates.load(kernel.log, CLUSTERS, space_id)
    if not state.live:
        return
    found = await cluster_status(state, kernel.settings.egress)
    command = c.RecordClusterStatus(space_id=space_id, **found)
    await record(kernel, command, space_id)


async def record(kernel: Kernel, command: Command, space_id: str) -> None:
    ctx = Context(space=space_id, actor=CTX.actor, source=CTX.source)
    with contextlib.suppress(ConcurrencyError):  # a concurrent write wins; the next probe runs
        await kernel.execute(command, ctx)


class StatusRefresher:
    """Every `status_refresh_s`, probes each connector's storage and each cluster's API."""

    def __init__(self, kernel: Kernel, settings: TrainingSettings) -> None:
        self.kernel = kernel
        self.settings = settings
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.status_refresh_s)
            if self._stopping.is_set():
                return
            try:
                await self.refresh()
            except Exception:
                log.exception("status refresh failed; retried at the next interval")

    async def refresh(self) -> None:
        """One round: every live connector and cluster, a few at a time."""
        gate = asyncio.Semaphore(PARALLEL)

        async def one(job) -> None:
            async with gate:
                try:
                    await job
                except Exception:
                    log.exception("a status probe failed")

        connectors = await self.kernel.docs.all_docs(CONNECTOR_DOCS)
        clusters = await self.kernel.docs.all_docs(CLUSTER_DOCS)
        await asyncio.gather(
            *(one(refresh_connector(self.kernel, self.settings, cid)) for cid in connectors),
            *(one(refresh_cluster(self.kernel, space)) for space in clusters),
        )

    def stop(self) -> None:
        self._stopping.set()
