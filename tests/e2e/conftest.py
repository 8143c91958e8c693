"""One embedded platform per test session: `mlplane up` on a free port with its own MLPLANE_HOME.

Tests that share it create their own spaces and users, so none depends on another's data.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from launcher import Platform

LOOPBACK = "127.0.0.1/32"


@pytest.fixture(scope="session")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    platform = Platform(tmp_path_factory.mktemp("mlplane-home"))
    platform.start()
    yield platform
    platform.stop()


@pytest.fixture(scope="session")
def training_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A platform for the training tests: quick log flushes and Kubernetes polls, a small
    bundle limit so an oversized upload is cheap to send; loopback allowed as an outbound
    destination, where the local S3 server and the fake Kubernetes API listen."""
    env = {
        "MLPLANE_TRAINING_POLL_S": "0.2",
        "MLPLANE_TRAINING_LOG_FLUSH_S": "0.1",
        "MLPLANE_TRAINING_MAX_BUNDLE_BYTES": str(2 << 20),
        "MLPLANE_EGRESS_ALLOW": LOOPBACK,
    }
    platform = Platform(tmp_path_factory.mktemp("mlplane-training"), env=env)
    platform.start()
    yield platform
    platform.stop()


@pytest.fixture(scope="session")
def serving_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A platform with its managed model server, polled often so rollouts settle quickly;
    loopback allowed as an outbound destination (the fake Kubernetes API listens there)."""
    env = {
        "MLPLANE_SERVING_POLL_S": "0.3",
        "MLPLANE_SERVING_LOCAL_SERVER": "on",
        "MLPLANE_EGRESS_ALLOW": LOOPBACK,
    }
    platform = Platform(tmp_path_factory.mktemp("mlplane-serving"), env=env)
    platform.start()
    yield platform
    platform.stop()
