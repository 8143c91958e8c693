"""Cross-space on every route: a member of space B, calling any route of the OpenAPI document with
the ids of space A's entities, learns nothing an unknown id would not tell them, and lists in B
never show A's rows.

The document is walked, so a route added later is covered without a test written for it.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from launcher import Platform, new_space

WRITES = {"post", "put", "patch", "delete"}
LISTS = [
    "/api/v1/trainings",
    "/api/v1/connectors",
    "/api/v1/data-models",
    "/api/v1/webhooks/subscriptions",
    "/api/v1/inference-logs",
    "/api/v1/spaces",
]
"""Lists of a space's entities (the space's one cluster, `/api/v1/clusters`, is a route with
an id in effect, walked by the first test)."""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    env = {"MLPLANE_EGRESS_ALLOW": "127.0.0.1/32", "MLPLANE_SERVING_LOCAL_SERVER": "off"}
    platform = Platform(Path(tmp_path_factory.mktemp("cross-space")), env)
    platform.start()
    yield platform
    platform.stop()


def eventually(read, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


@pytest.fixture(scope="module")
def world(platform: Platform) -> dict:
    """Space A with one entity of each kind the API creates without a model server, and Bea,
    owner of space B and of nothing in A."""
    with platform.admin() as admin:
        a = new_space(admin, "space-a")
        in_a = {"X-Space-ID": a}
        ids = {"space": a, "admin": admin.get("/api/v1/users/me").json()["id"]}
        training = admin.post(
            "/api/v1/trainings", headers=in_a, json={"name": "a-train", "architecture": "linear"}
        )
        assert training.status_code == 201, training.text
        ids["training"] = training.json()["id"]
        connector = admin.post(
            "/api/v1/connectors",
            headers=in_a,
            json={"name": "a-files", "type": "local", "local": {"path": "data"}},
        )
        ids["connector"] = connector.json()["id"]
        model = admin.post(
            "/api/v1/data-models",
            headers=in_a,
            json={"name": "a-model", "description": "in A"},
        )
        if model.status_code == 201:
            ids["data_model"] = model.json()["id"]
        hook = admin.post(
            "/api/v1/webhooks/subscriptions",
            headers=in_a,
            json={"url": "http://127.0.0.1:9/hook"},
        )
        ids["webhook"] = hook.json()["id"]
        ids["token"] = admin.post("/api/v1/users/me/tokens", json={"name": "a"}).json()["id"]
        made = admin.post("/api/users", json={"name": "bea", "password": "bea-password-1"})
        assert made.status_code == 201, made.text
        trained = eventually(
            lambda: (
                admin.get(f"/api/v1/trainings/{ids['training']}", headers=in_a)
                .json()
                .get("checkpoints")
            )
        )
        if trained:
            ids["checkpoint"] = trained[0]["id"]
    with platform.client() as anonymous:
        login = anonymous.post(
            "/api/v1/users/login", json={"name": "bea", "password": "bea-password-1"}
        )
    assert login.status_code == 201, login.text
    bea = platform.client(login.json()["token"])
    b = new_space(bea, "space-b")
    yield {"ids": ids, "a": a, "b": b, "bea": bea}
    bea.close()


def operations(platform: Platform) -> list[tuple[str, str]]:
    with platform.admin() as admin:
        doc = admin.get("/openapi.json").json()
    return [
        (method, path)
        for path, ops in sorted(doc["paths"].items())
        if "{" in path
        for method in sorted(ops)
        if method in WRITES | {"get"}
    ]


def fill(path: str, value: str, space: str) -> str:
    path = path.replace("{workspace}", space)
    path = path.replace("{version}", "1").replace("{app}", "app")
    return re.sub(r"\{[^}]+\}", value, path)


def call(client: httpx.Client, method: str, path: str, space: str) -> httpx.Response:
    body = {} if method in WRITES - {"delete"} else None
    return client.request(method, path, json=body, headers={"X-Space-ID": space})


def shown(response: httpx.Response, *asked: str) -> tuple[int, str]:
    """What an answer tells: its status and its body with the ids the path named (and the
    request's own id) taken out."""
    text = re.sub(r'"request_id": ?"[^"]*"', "", response.text)
    for value in asked:
        text = text.replace(value, "<id>")
    return response.status_code, text


def test_no_route_tells_a_member_of_b_that_an_id_of_a_exists(platform: Platform, world: dict):
    bea, a, b = world["bea"], world["a"], world["b"]
    leaks = []
    for method, template in operations(platform):
        unknown = secrets.token_hex(16)
        baseline = shown(call(bea, method, fill(template, unknown, a), b), unknown, a)
        for kind, entity_id in world["ids"].items():
            answer = shown(call(bea, method, fill(template, entity_id, a), b), entity_id, a)
            if answer[0] < 300 or answer != baseline:
                leaks.append(
                    f"{method.upper()} {template} with A's {kind}: {answer}"
                    f" (an unknown id: {baseline})"
                )
    assert leaks == []


def test_every_answer_for_a_space_of_which_one_is_not_a_member_is_404(
    platform: Platform, world: dict
):
    bea, a = world["bea"], world["a"]
    for path in LISTS:
        assert bea.get(path, headers={"X-Space-ID": a}).status_code in (404, 200), path
        if path != "/api/v1/spaces":
            assert bea.get(path, headers={"X-Space-ID": a}).status_code == 404, path


def test_lists_in_b_never_show_a_row_of_a(platform: Platform, world: dict):
    bea, b = world["bea"], world["b"]
    ids = set(world["ids"].values()) - {world["ids"]["admin"]}
    for path in LISTS:
        answer = bea.get(path, headers={"X-Space-ID": b})
        assert answer.status_code == 200, (path, answer.text)
        assert not any(entity_id in answer.text for entity_id in ids), path
