"""Adapters picked from URLs. The only place that knows which class serves which URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .bus import Bus
from .eventstore import EventStore
from .keystore import KeyStore
from .readmodels import ReadModelStore


def sqlite_path(url: str) -> str:
    """sqlite:///relative/or/absolute/path.db -> the path; sqlite:///:memory: -> :memory:."""
    path = url.removeprefix("sqlite://").removeprefix("/")
    if url.startswith("sqlite:////"):
        path = "/" + path.lstrip("/")
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return path


def mongo_database(url: str) -> Any:
    """The motor database named in a mongodb:// URL (default database `mlplane`)."""
    from motor.motor_asyncio import AsyncIOMotorClient

    parsed = urlparse(url)
    name = parsed.path.lstrip("/") or "mlplane"
    base = url.split("?", 1)[0].rsplit("/", 1)[0] if parsed.path else url
    client = AsyncIOMotorClient(base, tz_aware=True, serverSelectionTimeoutMS=10000)
    return client[name]


def event_store(url: str, prefix: str = "") -> EventStore:
    if url.startswith("sqlite://"):
        from .eventstore.sqlite import SQLiteEventStore

        return SQLiteEventStore(sqlite_path(url))
    if url.startswith("mongodb://"):
        from .eventstore.mongo import MongoEventStore

        return MongoEventStore(mongo_database(url), prefix)
    raise ValueError(f"no event store for {url!r}")


def read_models(url: str, prefix: str = "") -> ReadModelStore:
    if url.startswith("sqlite://"):
        from .readmodels.sqlite import SQLiteReadModels

        return SQLiteReadModels(sqlite_path(url))
    if url.startswith("mongodb://"):
        from .readmodels.mongo import MongoReadModels

        return MongoReadModels(mongo_database(url), prefix)
    raise ValueError(f"no read-model store for {url!r}")


def key_store(url: str, prefix: str = "") -> KeyStore:
    if url.startswith("sqlite://"):
        from .keystore.sqlite import SQLiteKeyStore

        return SQLiteKeyStore(sqlite_path(url))
    if url.startswith("mongodb://"):
        from .keystore.mongo import MongoKeyStore

        return MongoKeyStore(mongo_database(url), prefix)
    raise ValueError(f"no key store for {url!r}")


def bus(url: str, client_id: str = "mlplane", prefix: str = "") -> Bus:
    """`prefix` names Kafka topics and groups (`<prefix>mlplane.<context>`); the in-process
    bus is one process's own and needs none."""
    if url.startswith("inproc://"):
        from .bus.inproc import InProcessBus

        return InProcessBus()
    if url.startswith("kafka://"):
        from .bus.kafka import KafkaBus

        bootstrap = url.removeprefix("kafka://").rstrip("/")
        return KafkaBus(bootstrap, prefix=prefix, client_id=client_id)
    raise ValueError(f"no bus for {url!r}")


def artifact_store(url: str):
    """file:///path or s3://bucket/prefix[?endpoint=…] (see mlplane.artifacts)."""
    from .artifacts import open_store

    return open_store(url)
