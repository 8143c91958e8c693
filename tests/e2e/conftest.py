"""One embedded platform per test session: `mlplane up` on a free port with its own MLPLANE_HOME.

Tests that share it create their own spaces and users, so none depends on another's data.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from launcher import Platform


@pytest.fixture(scope="session")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    platform = Platform(tmp_path_factory.mktemp("mlplane-home"))
    platform.start()
    yield platform
    platform.stop()
