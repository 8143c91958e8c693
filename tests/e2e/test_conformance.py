"""Answers match what the OpenAPI document and the HTTP specifications say they are."""

from __future__ import annotations

import httpx
import pytest
from launcher import Platform, new_space


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


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/api/v1/spaces", "GET, HEAD, POST"),
        ("PUT", "/api/v1/trainings/x", "DELETE, GET, HEAD, PATCH"),
        ("POST", "/healthz", "GET, HEAD"),
    ],
)
def test_a_405_names_every_method_the_path_takes(
    admin: httpx.Client, method: str, path: str, allowed: str
):
    response = admin.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.headers["content-type"] == "application/problem+json"


def test_restoring_a_live_space_is_a_conflict_not_a_404(admin: httpx.Client):
    space = new_space(admin, "alive")
    response = admin.post(f"/api/v1/spaces/{space}/restore")
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "not deleted" in response.json()["detail"]
    assert admin.post("/api/v1/spaces/no-such-space/restore").status_code == 404


def test_a_405_on_a_literal_path_names_that_resource_not_a_templated_neighbour(
    admin: httpx.Client,
):
    response = admin.request("OPTIONS", "/train/some-space/inspect")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
