"""A member may change only what their permissions name: every write a member lacks the right to
is a 403, whatever the body says and whether or not the id exists.

The writes are walked from the OpenAPI document, so a route added tomorrow is checked the day it
lands; a route open to any caller has to be named in OPEN, with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from launcher import Platform, join, new_space
from mlplane.settings import Settings
from serving_helpers import iris_models, upload

from services.gateway.bootstrap import create_app

PROBLEM = "application/problem+json"
WRITES = ("post", "put", "patch", "delete")

DOCUMENT = create_app(Settings(_env_file=None)).openapi()
ROUTES = sorted(
    (method, path)
    for path, operations in DOCUMENT["paths"].items()
    for method in operations
    if method in WRITES
)

# Writes open to any caller, each for its reason; every other write needs a permission, the
# space's ownership or the platform's administration.
INFERENCE = "a prediction changes nothing: any member of the endpoint's space may ask for one"
OPEN = {
    ("post", "/api/v1/spaces"): "creates a new space, owned by the caller",
    ("patch", "/api/v1/users/me"): "the caller's own profile",
    ("post", "/api/v1/users/me/tokens"): "the caller's own API tokens",
    ("delete", "/api/v1/users/me/tokens/{token_id}"): "the caller's own API tokens",
    ("post", "/api/v1/users/invites/accept"): "the invitee's own act; needs no token",
    ("post", "/api/v1/users/login"): "exchanges a password for a token; needs no token",
    ("post", "/api/v1/webhooks"): "signed with the space's inbound secret, not a bearer token",
    ("post", "/v2/models/{name}/infer"): INFERENCE,
    ("post", "/v2/models/{name}/versions/{version}/infer"): INFERENCE,
}

# Writes whose check needs the body (the space is in it). Each is sent a valid one.
BODIES = {
    ("post", "/api/v1/users/{user_id}/permissions"): lambda space: {
        "space_id": space,
        "permissions": ["endpoints:delete"],
    },
}

FAKE_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A platform of its own without the managed model server: an endpoint here is deployed and
    stays pending, which is all these tests need of it."""
    env = {"MLPLANE_SERVING_LOCAL_SERVER": "off"}
    started = Platform(Path(tmp_path_factory.mktemp("permissions")), env=env)
    started.start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def admin(platform: Platform) -> Iterator[httpx.Client]:
    with platform.admin() as client:
        yield client


@pytest.fixture(scope="module")
def space(admin: httpx.Client) -> str:
    return new_space(admin, "permissions")


@pytest.fixture(scope="module")
def nobody(platform: Platform, admin: httpx.Client, space: str) -> Iterator[httpx.Client]:
    """A member of the space holding no permission at all."""
    with join(platform, admin, space, "nobody@example.com", roles=()) as client:
        client.headers["X-Space-ID"] = space
        yield client


@pytest.fixture(scope="module")
def nobody_id(nobody: httpx.Client) -> str:
    return nobody.get("/api/v1/users/me").json()["id"]


@pytest.fixture(scope="module")
def tree() -> bytes:
    """A scikit-learn model the registry accepts (a pickled decision tree on iris)."""
    return iris_models()["joblib"]


def url_for(path: str, space: str, user_id: str) -> str:
    """The path with well-formed values: the member's own space and user id where a route
    names them, made-up ids elsewhere (the check comes before any lookup)."""
    values = {"workspace": space, "id": space, "user_id": user_id, "identity": user_id}
    values |= {"version": "1"}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), FAKE_ID), path)


def test_every_route_named_open_or_with_a_body_exists():
    assert set(OPEN) | set(BODIES) <= set(ROUTES)


@pytest.mark.parametrize(
    ("method", "path"),
    [r for r in ROUTES if r not in OPEN],
    ids=[f"{m.upper()} {p}" for m, p in ROUTES if (m, p) not in OPEN],
)
def test_a_member_without_the_permission_is_refused_every_write(
    nobody: httpx.Client, nobody_id: str, space: str, method: str, path: str
):
    body = BODIES.get((method, path), lambda _: {})(space)
    response = nobody.request(method.upper(), url_for(path, space, nobody_id), json=body)
    assert response.status_code == 403, f"{method.upper()} {path}: {response.text}"
    assert response.headers["content-type"] == PROBLEM


@pytest.fixture(scope="module")
def served(platform: Platform, space: str, tree: bytes) -> dict:
    """A registered model and an endpoint deployed from it, both in the space."""
    owner = platform.client(platform.admin_token, **{"X-Space-ID": space})
    model = upload(owner, "iris-tree", "tree.joblib", tree)
    assert model.status_code == 201, model.text
    deployed = owner.post(f"/inference/{space}/{model.json()['id']}", json={"name": "iris"})
    assert deployed.status_code == 201, deployed.text
    return {"owner": owner, "model": model.json()["id"], "endpoint": "iris"}


def endpoint_names(client: httpx.Client, space: str) -> list[str]:
    return [e["name"] for e in client.get(f"/inference/{space}").json()["data"]]


def test_a_member_who_may_only_read_trainings_deletes_no_serving_resource(
    platform: Platform, admin: httpx.Client, space: str, served: dict
):
    with join(platform, admin, space, "reader@example.com") as reader:
        reader.headers["X-Space-ID"] = space
        endpoint = reader.delete(f"/endpoint/{served['endpoint']}")
        model = reader.delete(f"/api/models/{served['model']}")
    assert (endpoint.status_code, model.status_code) == (403, 403)
    assert "endpoints:delete" in endpoint.json()["detail"]
    assert "models:delete" in model.json()["detail"]
    owner = served["owner"]
    assert served["endpoint"] in endpoint_names(owner, space)
    assert owner.get(f"/api/models/{served['model']}").status_code == 200


def test_a_member_granted_the_permissions_deploys_and_removes(
    platform: Platform, admin: httpx.Client, tree: bytes
):
    space = new_space(admin, "operated")
    roles = ("models:create", "models:delete", "endpoints:create", "endpoints:delete")
    with join(platform, admin, space, "operator@example.com", roles=roles) as operator:
        operator.headers["X-Space-ID"] = space
        model = upload(operator, "iris-tree", "tree.joblib", tree)
        assert model.status_code == 201, model.text
        deployed = operator.post(f"/inference/{space}/{model.json()['id']}", json={"name": "iris"})
        assert deployed.status_code == 201, deployed.text
        reconfigured = operator.patch(f"/inference/{space}/iris", json={"replicas": 2})
        removed = operator.delete("/endpoint/iris")
        deleted = operator.delete(f"/api/models/{model.json()['id']}")
    assert reconfigured.status_code == 403  # endpoints:update was not granted
    assert (removed.status_code, deleted.status_code) == (200, 200)
    assert endpoint_names(admin, space) == []
