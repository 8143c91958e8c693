"""Wiring of the logs service: its projections, routes and, at start-up, its log store, the
ingest of inference logs (Kafka consumer group or in-process subscription), the purge of expired
raw logs and the webhook dispatcher, all run as one kernel worker.

Importing this module connects to nothing; `_wire` and `_on_start` do, inside the app's lifespan.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from mlplane.adapters import mongo_database, sqlite_path
from mlplane.kernel import Kernel
from mlplane.service import Service

from .settings import SETTINGS, LogsSettings
from .store import LogStore


def open_store(url: str, prefix: str = "", *, writer: str = "thread") -> LogStore:
    """The log store adapter a URL names; `writer="process"` gives SQLite a writer process (the
    Kafka ingest's volume), the default a writer thread."""
    if url.startswith("sqlite://"):
        from .store.sqlite import SQLiteLogStore

        return SQLiteLogStore(sqlite_path(url), writer=writer)
    if url.startswith("mongodb://"):
        from .store.mongo import MongoLogStore

        return MongoLogStore(mongo_database(url), prefix)
    raise ValueError(f"no log store for {url!r}")


def _routers():
    from .api import inference_logs
    from .webhooks_api import webhooks
    from .webhooks_in_api import webhooks_in

    return [inference_logs, webhooks, webhooks_in]


def _commands():
    from .handlers import COMMAND_HANDLERS

    return COMMAND_HANDLERS


def _entities():
    from mlplane.history import EntityKind

    from .handlers import INBOUND, STATUS_REPORTS, SUBSCRIPTIONS
    from .projections import InboundSecrets, StatusReports, Subscriptions
    from .webhooks_api import SUBSCRIPTION_KIND
    from .webhooks_in_api import INBOUND_KIND, STATUS_REPORT_KIND

    base = "/api/v1/webhooks"
    return [
        EntityKind(
            SUBSCRIPTION_KIND, SUBSCRIPTIONS, Subscriptions(), f"{base}/subscriptions/{{id}}"
        ),
        EntityKind(INBOUND_KIND, INBOUND, InboundSecrets(), f"{base}/inbound-secrets/{{id}}"),
        EntityKind(
            STATUS_REPORT_KIND, STATUS_REPORTS, StatusReports(), f"{base}/status-reports/{{id}}"
        ),
    ]


def _projections():
    from .projections import projections

    return projections()


def _store_url(kernel: Kernel, settings: LogsSettings) -> str:
    return settings.store_url(kernel.settings.readmodels_url, Path(kernel.settings.home))


async def _wire(kernel: Kernel) -> None:
    """The routes read the log store (and write nothing to it)."""
    from .api import STORE

    settings = LogsSettings()
    store = open_store(_store_url(kernel, settings), kernel.settings.prefix)
    await store.open()
    kernel.extensions[STORE], kernel.extensions[SETTINGS] = store, settings


async def _on_start(kernel: Kernel) -> None:
    """The workers write through a store of their own: on Kafka, with a writer process."""
    from .delivery import Dispatcher
    from .ingest import InprocIngest, KafkaIngest
    from .workers import LogsWorkers, Purger

    settings: LogsSettings = kernel.extensions[SETTINGS]
    bus_url = kernel.settings.bus_url
    kafka = bus_url.startswith("kafka://")
    store = open_store(
        _store_url(kernel, settings),
        kernel.settings.prefix,
        writer="process" if kafka else "thread",
    )
    await store.open()
    parts: list = [
        Purger(store, timedelta(hours=settings.retention_hours), settings.purge_interval_s)
    ]
    if kafka and settings.ingest:
        bootstrap = bus_url.removeprefix("kafka://").rstrip("/")
        ingest = KafkaIngest(
            bootstrap,
            store,
            group=settings.ingest_group,
            prefix=kernel.settings.prefix,
            batch=settings.ingest_batch,
            session_timeout_ms=settings.ingest_session_timeout_ms,
        )
        parts.append(ingest)
    elif not kafka:
        await InprocIngest(kernel.bus, store, group=settings.ingest_group).start()
    if settings.webhook_dispatch:
        parts.append(Dispatcher(kernel, settings))
    workers = LogsWorkers(store, parts)
    kernel.spawn("logs", workers.run(), workers)


SERVICE = Service(
    name="logs",
    projections=_projections,
    routers=_routers,
    commands=_commands,
    entities=_entities,
    wire=_wire,
    on_start=_on_start,
)
