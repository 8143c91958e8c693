"""Answers match what the OpenAPI document and the HTTP specifications say they are."""

from __future__ import annotations

import httpx
import pytest
from launcher import Platform


@pytest.fixture(scope="module")
def admin(embedded: Platform):
    with embedded.admin() as client:
        yield client


@pytest.mark.parametrize(
    ("path", "body"), [("/v2/health/live", {"live": True}), ("/v2/health/ready", {"ready": True})]
)
def test_the_data_plane_health_routes_answer_json(admin: httpx.Client, path: str, body: dict):
    response = admin.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == body
