"""Shared fixtures. Real servers come from `make services-up` (Kafka, FerretDB); tests that
need one fail loudly when it is not there: a skipped server test proves nothing.

Each test gets its own MongoDB collection prefix and Kafka topic prefix, so order never matters.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest
from s3server import s3, s3_bucket, s3_url  # noqa: F401 - the S3 fixtures of every suite

MONGO_URL = os.environ.get("MLPLANE_TEST_MONGO_URL", "mongodb://127.0.0.1:27017/mlplane_test")
KAFKA_BOOTSTRAP = os.environ.get("MLPLANE_TEST_KAFKA", "127.0.0.1:9092")


def _reachable(host_port: str) -> bool:
    host, port = host_port.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def unique() -> str:
    """A short id unique to this test: prefix of its collections and topics."""
    return f"t{uuid.uuid4().hex[:10]}_"


@pytest.fixture(scope="session")
def mongo_url() -> str:
    host_port = MONGO_URL.split("://", 1)[1].split("/", 1)[0]
    if not _reachable(host_port):
        pytest.fail(f"no MongoDB-wire server at {host_port}: run `make services-up`")
    return MONGO_URL


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    if not _reachable(KAFKA_BOOTSTRAP):
        pytest.fail(f"no Kafka broker at {KAFKA_BOOTSTRAP}: run `make services-up`")
    return KAFKA_BOOTSTRAP


@pytest.fixture
async def mongo_db(mongo_url: str):
    """A motor database handle; the test's collections carry its `unique` prefix."""
    from mlplane.adapters import mongo_database

    db = mongo_database(mongo_url)
    yield db
    db.client.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlplane.db'}"
