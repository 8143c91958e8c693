"""The local S3-compatible server (`deploy/local/services.sh up s3`, gofakes3) for the tests that
need real S3: each test gets its own bucket. tests/conftest.py offers these fixtures to every suite."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

S3_URL = os.environ.get("MLPLANE_TEST_S3_URL", "http://127.0.0.1:9000")
ACCESS, SECRET = "mlplane-test-key", "mlplane-test-secret-0123456789"


@pytest.fixture(scope="session")
def s3_url() -> str:
    host, port = S3_URL.split("://", 1)[1].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        pytest.fail(f"no S3-compatible server at {S3_URL}: run `deploy/local/services.sh up s3`")
    return S3_URL


@pytest.fixture
def s3_bucket(s3_url: str) -> Iterator[str]:
    """A fresh bucket; emptied and removed after the test."""
    from mlplane.artifacts.s3 import s3_client

    client = s3_client(s3_url, "us-east-1", ACCESS, SECRET)
    name = f"t-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    yield name
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=obj["Key"])
    client.delete_bucket(Bucket=name)


def s3(s3_url: str):
    from mlplane.artifacts.s3 import s3_client

    return s3_client(s3_url, "us-east-1", ACCESS, SECRET)
