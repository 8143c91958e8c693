"""Storage backends for the contract and integration suites: every port, every adapter.

A test asks for `backend` and runs once per adapter (SQLite, MongoDB on FerretDB). The backend
builds the event store, read-model store and key store of that adapter, all under the test's
own prefix (its own SQLite file, its own Mongo collections), and cleans up after the test:
stores are closed and the test's Mongo collections dropped.

The conftest of each suite imports the fixtures it offers from here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mlplane.adapters import mongo_database
from mlplane.eventlog import EventLog
from mlplane.events import EventRegistry
from mlplane.eventstore import EventStore
from mlplane.eventstore.mongo import MongoEventStore
from mlplane.eventstore.sqlite import SQLiteEventStore
from mlplane.keystore import KeyStore
from mlplane.keystore.mongo import MongoKeyStore
from mlplane.keystore.sqlite import SQLiteKeyStore
from mlplane.readmodels import ReadModelStore
from mlplane.readmodels.mongo import MongoReadModels
from mlplane.readmodels.sqlite import SQLiteReadModels

ADAPTERS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("mongo", id="mongo", marks=pytest.mark.mongo),
]


class Backend:
    """The stores of one adapter, scoped to one test."""

    def __init__(self, name: str, prefix: str, path: Path | None = None, db: Any = None) -> None:
        self.name = name
        self.prefix = prefix
        self.path = path
        self.db = db
        self._opened: list[Any] = []

    def _keep(self, store: Any) -> Any:
        self._opened.append(store)
        return store

    def event_store(self) -> EventStore:
        if self.name == "sqlite":
            return self._keep(SQLiteEventStore(str(self.path)))
        return self._keep(MongoEventStore(self.db, self.prefix))

    def read_models(self) -> ReadModelStore:
        if self.name == "sqlite":
            return self._keep(SQLiteReadModels(str(self.path)))
        return self._keep(MongoReadModels(self.db, self.prefix))

    def key_store(self) -> KeyStore:
        if self.name == "sqlite":
            return self._keep(SQLiteKeyStore(str(self.path)))
        return self._keep(MongoKeyStore(self.db, self.prefix))

    def event_log(self, registry: EventRegistry) -> EventLog:
        return EventLog(self.event_store(), registry, self.key_store())

    async def raw_events(self) -> str:
        """Everything the event store holds, serialised as stored (for leak checks)."""
        if self.name == "sqlite":
            conn = sqlite3.connect(self.path)
            try:
                return json.dumps(conn.execute("SELECT * FROM events").fetchall())
            finally:
                conn.close()
        commits = [c async for c in self.db[f"{self.prefix}events"].find({})]
        return json.dumps(commits, default=str)

    async def close(self) -> None:
        for store in reversed(self._opened):
            await store.close()
        if self.db is not None:
            for name in await self.db.list_collection_names():
                if name.startswith(self.prefix):
                    await self.db.drop_collection(name)
            self.db.client.close()


@pytest.fixture(params=ADAPTERS)
async def backend(
    request: pytest.FixtureRequest, unique: str, tmp_path: Path
) -> AsyncIterator[Backend]:
    """One adapter's stores under this test's prefix; Mongo collections dropped afterwards."""
    if request.param == "sqlite":
        b = Backend("sqlite", unique, path=tmp_path / "mlplane.db")
    else:
        url = request.getfixturevalue("mongo_url")
        b = Backend("mongo", unique, db=mongo_database(url))
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
async def mongo_backend(mongo_url: str, unique: str) -> AsyncIterator[Backend]:
    """The MongoDB adapter's stores alone, for behaviour only that adapter has."""
    b = Backend("mongo", unique, db=mongo_database(mongo_url))
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
def event_store(backend: Backend) -> EventStore:
    return backend.event_store()


@pytest.fixture
def read_models(backend: Backend) -> ReadModelStore:
    return backend.read_models()


@pytest.fixture
def key_store(backend: Backend) -> KeyStore:
    return backend.key_store()
