"""Whatever a client sends, the answer is a 4xx problem document that says what was wrong: never
a 500, never a 200 with an error inside."""

from __future__ import annotations

import time

import httpx
import pytest
from launcher import Platform, join, new_space

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert "Traceback" not in response.text
    return body


@pytest.fixture(scope="module")
def admin(embedded: Platform):
    with embedded.admin() as client:
        yield client


@pytest.fixture(scope="module")
def space(admin: httpx.Client) -> str:
    return new_space(admin, "bad-input")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "description": "", "owner": "me"}, "owner"),
        ({"name": 123, "description": ""}, "name"),
        ({"name": ["x"], "description": ""}, "name"),
        ({"description": ""}, "name"),
        ({"name": "", "description": ""}, "name"),
        ({"name": "x" * 201, "description": ""}, "name"),
    ],
    ids=["unknown-field", "number-for-string", "list-for-string", "missing", "empty", "too-long"],
)
def test_a_bad_space_body_names_the_failing_field(admin: httpx.Client, body: dict, field: str):
    problem = assert_problem(admin.post("/api/v1/spaces", json=body), 422)
    assert field in [e["field"] for e in problem["errors"]]


def test_a_body_that_is_not_json_is_refused(admin: httpx.Client):
    assert_problem(
        admin.post(
            "/api/v1/spaces", content=b"{nope", headers={"content-type": "application/json"}
        ),
        422,
    )


def test_a_body_that_is_not_an_object_is_refused(admin: httpx.Client):
    assert_problem(admin.post("/api/v1/spaces", json=["name", "description"]), 422)


def test_an_unknown_field_in_an_update_is_refused(admin: httpx.Client, space: str):
    problem = assert_problem(admin.patch(f"/api/v1/spaces/{space}", json={"owner_id": "me"}), 422)
    assert problem["errors"][0]["field"] == "owner_id"


def test_an_unknown_permission_in_an_invite_is_refused(admin: httpx.Client, space: str):
    body = {"emails": ["a@example.com"], "roles": ["spaces:own"]}
    assert_problem(admin.post(f"/api/v1/spaces/{space}/invite", json=body), 422)


def test_an_address_that_is_not_an_email_is_refused(admin: httpx.Client, space: str):
    body = {"emails": ["not an email"], "roles": []}
    assert_problem(admin.post(f"/api/v1/spaces/{space}/invite", json=body), 422)


def test_an_oversized_body_is_refused_before_parsing(admin: httpx.Client):
    big = {"name": "x", "description": "y" * (2 << 20)}
    assert_problem(admin.post("/api/v1/spaces", json=big), 413)


def test_an_oversized_streamed_body_is_refused(admin: httpx.Client):
    chunks = (b"x" * 65536 for _ in range(40))  # no Content-Length: sent chunked
    assert_problem(
        admin.post("/api/v1/spaces", content=chunks, headers={"content-type": "application/json"}),
        413,
    )


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 1000}, {"limit": "ten"}, {"after": "nope"}]
)
def test_bad_paging_is_refused(admin: httpx.Client, params: dict):
    assert_problem(admin.get("/api/v1/spaces", params=params), 422)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Bearer mlp_not-a-token"},
    ],
    ids=["missing", "empty", "basic", "unknown"],
)
def test_a_request_without_a_valid_token_is_unauthorized(embedded: Platform, headers: dict):
    with embedded.client(**headers) as client:
        problem = assert_problem(client.get("/api/v1/spaces"), 401)
    assert problem["type"]


def test_an_expired_token_is_unauthorized(embedded: Platform, admin: httpx.Client):
    issued = admin.post("/api/v1/users/me/tokens", json={"name": "short", "ttl_seconds": 1})
    assert issued.status_code == 201, issued.text
    with embedded.client(issued.json()["token"]) as client:
        assert client.get("/api/v1/users/me").status_code == 200
        time.sleep(1.1)
        assert_problem(client.get("/api/v1/users/me"), 401)


def test_a_revoked_token_is_unauthorized(embedded: Platform, admin: httpx.Client):
    issued = admin.post("/api/v1/users/me/tokens", json={"name": "revoke-me"}).json()
    revoked = admin.delete(f"/api/v1/users/me/tokens/{issued['id']}")
    assert revoked.json()["revoked"] is True
    with embedded.client(issued["token"]) as client:
        assert_problem(client.get("/api/v1/users/me"), 401)


def test_tokens_are_listed_without_their_secrets(admin: httpx.Client):
    issued = admin.post("/api/v1/users/me/tokens", json={"name": "listed"}).json()
    listed = admin.get("/api/v1/users/me/tokens").json()["data"]
    assert issued["id"] in [t["id"] for t in listed]
    assert all("token" not in t for t in listed)


def test_an_invite_token_is_single_use(embedded: Platform, admin: httpx.Client, space: str):
    invited = admin.post(
        f"/api/v1/spaces/{space}/invite", json={"emails": ["once@example.com"], "roles": []}
    )
    token = invited.json()["invites"][0]["token"]
    with embedded.client() as anonymous:
        assert (
            anonymous.post("/api/v1/users/invites/accept", json={"token": token}).status_code == 200
        )
        assert_problem(anonymous.post("/api/v1/users/invites/accept", json={"token": token}), 409)


@pytest.mark.parametrize("token", ["garbage", "inv_a.b.c", "inv_" + "x" * 40])
def test_a_forged_invite_token_finds_nothing(embedded: Platform, token: str):
    with embedded.client() as anonymous:
        assert_problem(anonymous.post("/api/v1/users/invites/accept", json={"token": token}), 404)


def test_an_existing_user_cannot_be_taken_over_through_an_invite(
    embedded: Platform, admin: httpx.Client
):
    first, second = new_space(admin, "first"), new_space(admin, "second")
    join(embedded, admin, first, "gina@example.com").close()
    invited = admin.post(
        f"/api/v1/spaces/{second}/invite", json={"emails": ["gina@example.com"], "roles": []}
    )
    with embedded.client() as anonymous:
        token = invited.json()["invites"][0]["token"]
        assert_problem(anonymous.post("/api/v1/users/invites/accept", json={"token": token}), 403)


def test_members_cannot_reach_the_admin_api(embedded: Platform, admin: httpx.Client, space: str):
    with join(embedded, admin, space, "hal@example.com") as hal:
        assert_problem(hal.get("/api/users"), 403)


def test_unknown_routes_and_methods_are_problems(admin: httpx.Client):
    assert_problem(admin.get("/api/v1/nothing-here"), 404)
    assert_problem(admin.put("/api/v1/spaces"), 405)


def test_a_user_of_the_admin_api_is_created_without_echoing_the_password(admin: httpx.Client):
    created = admin.post(
        "/api/users",
        json={"name": "ivan", "password": "s3cret-pass", "role": "designer", "tags": "ml"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["password"] is None and created.json()["status"] == "ok"
    assert_problem(admin.post("/api/users", json={"name": "ivan", "password": "s3cret-pass"}), 409)
    assert_problem(admin.post("/api/users", json={"name": "jo", "password": "short"}), 422)


@pytest.mark.parametrize("name", ["a\x00b", "a\x1b[2Jb", "a\x07b"], ids=["NUL", "ESC", "BEL"])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/spaces", {"description": ""}),
        ("/api/v1/data-models", {"description": ""}),
        ("/api/v1/connectors", {"type": "local", "local": {"path": "x"}}),
        ("/api/v1/trainings", {"architecture": "linear"}),
        ("/api/v1/users/me/tokens", {}),
        ("/api/users", {"password": "long-enough"}),
        ("/api/tritons", {"host": "127.0.0.1", "port": 9}),
    ],
    ids=["space", "data-model", "connector", "training", "token", "user", "server"],
)
def test_a_name_with_a_control_character_is_refused_everywhere(
    admin: httpx.Client, space: str, path: str, body: dict, name: str
):
    answer = admin.post(path, json={**body, "name": name}, headers={"X-Space-ID": space})
    problem = assert_problem(answer, 422)
    assert [e["field"] for e in problem["errors"]] == ["name"]


def test_a_local_connector_path_with_a_nul_is_refused_naming_the_field(
    admin: httpx.Client, space: str
):
    body = {"name": "lp", "type": "local", "local": {"path": "pt/\x00x"}}
    answer = admin.post("/api/v1/connectors", json=body, headers={"X-Space-ID": space})
    assert [e["field"] for e in assert_problem(answer, 422)["errors"]] == ["local.path"]


def test_an_invite_is_refused_to_a_user_signed_in_as_someone_else(
    embedded: Platform, admin: httpx.Client, space: str
):
    invited = admin.post(
        f"/api/v1/spaces/{space}/invite", json={"emails": ["mia@example.com"], "roles": []}
    )
    token = invited.json()["invites"][0]["token"]
    with join(embedded, admin, space, "ned@example.com") as ned:
        problem = assert_problem(
            ned.post("/api/v1/users/invites/accept", json={"token": token}), 403
        )
    assert "another user" in problem["detail"]
    assert_problem(admin.post("/api/v1/users/invites/accept", json={"token": token}), 403)
    with embedded.client() as anonymous:  # nothing was written: the invitee can still accept it
        accepted = anonymous.post("/api/v1/users/invites/accept", json={"token": token})
    assert accepted.status_code == 200 and accepted.json()["user"]["email"] == "mia@example.com"


def test_an_existing_user_accepts_an_invite_with_their_own_token(
    embedded: Platform, admin: httpx.Client
):
    first, second = new_space(admin, "own-first"), new_space(admin, "own-second")
    with join(embedded, admin, first, "ola@example.com") as ola:
        invited = admin.post(
            f"/api/v1/spaces/{second}/invite", json={"emails": ["ola@example.com"], "roles": []}
        )
        token = invited.json()["invites"][0]["token"]
        accepted = ola.post("/api/v1/users/invites/accept", json={"token": token})
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["token"] is None and accepted.json()["space_id"] == second
        assert second in [s["id"] for s in ola.get("/api/v1/users/me").json()["spaces"]]
