"""Schemathesis over the OpenAPI document: every operation, valid and invalid inputs, as the
administrator. No answer is a server error, and every 4xx is a problem document.

The document is the one `mlplane openapi` prints (built without a server, so each operation is
its own test); the requests go to this module's own `mlplane up`, whose administrator token is
set by MLPLANE_ADMIN_TOKEN so that no generated request can lock the test out.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from launcher import Platform
from mlplane.settings import Settings

from services.gateway.bootstrap import create_app

EXAMPLES = 25
PROBLEM = "application/problem+json"

schema = schemathesis.openapi.from_dict(create_app(Settings(_env_file=None)).openapi())


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    token = f"mlp_{secrets.token_hex(32)}"
    platform = Platform(Path(tmp_path_factory.mktemp("fuzzed")), {"MLPLANE_ADMIN_TOKEN": token})
    platform.start()
    platform.admin_token = token
    yield platform
    platform.stop()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
@schema.parametrize()
def test_no_operation_answers_a_server_error_and_every_4xx_is_a_problem(case, fuzzed: Platform):
    response = case.call(
        base_url=fuzzed.url,
        headers={"Authorization": f"Bearer {fuzzed.admin_token}"},
        timeout=30,
    )
    reproduce = case.as_curl_command()
    assert response.status_code < 500, f"{response.status_code} {response.text}\n{reproduce}"
    if response.status_code >= 400:
        media_type = response.headers.get("content-type", [""])[0].split(";")[0]
        assert media_type == PROBLEM, f"{response.status_code} {media_type}\n{reproduce}"
        assert response.json()["status"] == response.status_code
