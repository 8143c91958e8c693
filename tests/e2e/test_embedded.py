"""The whole platform as one process on embedded stores, driven over HTTP and by the CLI."""

from __future__ import annotations

import json
import re

from launcher import Platform, join, new_space

PROBLEM = "application/problem+json"


def test_the_first_start_prints_the_urls_and_a_working_admin_token(embedded: Platform):
    out = embedded.log.read_text()
    assert f"API     {embedded.url}/api/v1" in out and f"Docs    {embedded.url}/docs" in out
    assert re.search(r"mlplane \d+\.\d+\.\d+", out)
    with embedded.admin() as admin:
        me = admin.get("/api/v1/users/me")
    assert me.status_code == 200 and me.json()["id"]


def test_an_invited_user_joins_with_their_own_token(embedded: Platform):
    with embedded.admin() as admin:
        space = new_space(admin, "vision")
        with join(embedded, admin, space, "bob@example.com") as bob:
            me = bob.get("/api/v1/users/me").json()
            listed = bob.get("/api/v1/spaces").json()
    assert me["email"] == "bob@example.com"
    assert [s["id"] for s in me["spaces"]] == [space] and me["permissions"] == ["trainings:get"]
    assert [s["id"] for s in listed["data"]] == [space] and listed["count"] == 1


def test_an_id_from_another_space_answers_404(embedded: Platform):
    with embedded.admin() as admin:
        mine, theirs = new_space(admin, "mine"), new_space(admin, "theirs")
        with join(embedded, admin, mine, "carol@example.com") as carol:
            assert carol.get(f"/api/v1/spaces/{mine}").status_code == 200
            attempts = [
                carol.get(f"/api/v1/spaces/{theirs}"),
                carol.get(f"/api/v1/spaces/{theirs}/members"),
                carol.patch(f"/api/v1/spaces/{theirs}", json={"name": "taken"}),
                carol.delete(f"/api/v1/spaces/{theirs}"),
                carol.post(
                    f"/api/v1/spaces/{theirs}/invite",
                    json={"emails": ["x@example.com"], "roles": []},
                ),
                carol.get("/api/v1/spaces", params={"after": theirs}),
            ]
    assert [r.status_code for r in attempts[:5]] == [404] * 5
    assert attempts[5].status_code == 422  # not a 200 that leaks the order of another space
    assert all(r.headers["content-type"] == PROBLEM for r in attempts)


def test_a_member_cannot_manage_the_space(embedded: Platform):
    with embedded.admin() as admin:
        space = new_space(admin, "managed")
        with join(embedded, admin, space, "dan@example.com") as dan:
            refused = dan.patch(f"/api/v1/spaces/{space}", json={"name": "mine now"})
    assert refused.status_code == 403 and refused.headers["content-type"] == PROBLEM


def test_a_space_is_updated_deleted_and_restored(embedded: Platform):
    with embedded.admin() as admin:
        space = new_space(admin, "lifecycle")
        updated = admin.patch(f"/api/v1/spaces/{space}", json={"description": "renamed"}).json()
        assert admin.delete(f"/api/v1/spaces/{space}").json() == {"id": space}
        gone = admin.get(f"/api/v1/spaces/{space}").status_code
        deleted = [
            s["id"] for s in admin.get("/api/v1/spaces", params={"deleted": True}).json()["data"]
        ]
        assert admin.post(f"/api/v1/spaces/{space}/restore").json() == {"id": space}
        back = admin.get(f"/api/v1/spaces/{space}").json()
    assert updated["description"] == "renamed" and updated["updated_at"] > updated["created_at"]
    assert gone == 404 and space in deleted
    assert back["description"] == "renamed"


def test_pages_follow_one_another_without_gaps(embedded: Platform):
    with embedded.admin() as admin:
        made = {new_space(admin, f"paged-{i}") for i in range(3)}
        seen, after = [], None
        while True:
            page = admin.get(
                "/api/v1/spaces", params={"limit": 2, **({"after": after} if after else {})}
            ).json()
            seen += [s["id"] for s in page["data"]]
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
    assert made <= set(seen) and len(seen) == len(set(seen)) == page["count"]


def test_permissions_are_added_to_a_member(embedded: Platform):
    with embedded.admin() as admin:
        space = new_space(admin, "grants")
        with join(embedded, admin, space, "erin@example.com") as erin:
            erin_id = erin.get("/api/v1/users/me").json()["id"]
            granted = admin.post(
                f"/api/v1/users/{erin_id}/permissions",
                json={"space_id": space, "permissions": ["benchmarks:list"]},
            )
            mine = erin.get("/api/v1/users/me").json()["permissions"]
    assert granted.json() == {"permissions": ["benchmarks:list", "trainings:get"]}
    assert mine == ["benchmarks:list", "trainings:get"]


def test_request_and_correlation_ids_are_echoed_and_recorded(embedded: Platform):
    with embedded.client(embedded.admin_token, **{"X-Correlation-ID": "flow-42"}) as admin:
        response = admin.post("/api/v1/spaces", json={"name": "traced", "description": ""})
    space = response.json()["id"]
    assert response.headers["x-correlation-id"] == "flow-42" and response.headers["x-request-id"]
    tail = embedded.cli("events", "tail", "--space", space, "--json")
    [event] = [json.loads(line) for line in tail.stdout.splitlines()]
    assert (event["type"], event["subject"], event["space"]) == (
        "SpaceCreated",
        f"space:{space}",
        space,
    )
    assert event["correlationid"] == "flow-42"
    assert event["causationid"] == response.headers["x-request-id"]


def test_the_cli_creates_and_lists_spaces_over_http(embedded: Platform):
    created = embedded.cli("spaces", "create", "from-cli", "--description", "made by the CLI")
    listed = embedded.cli("spaces", "list", "--json", "--limit", "100")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() in {s["id"] for s in json.loads(listed.stdout)["data"]}


def test_probes_and_metrics_answer(embedded: Platform):
    with embedded.client() as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        assert anonymous.get("/readyz").json() == {
            "status": "ok",
            "checks": {"event_store": "ok", "bus": "ok", "projections": "ok"},
        }
        metrics = anonymous.get("/metrics").text
        openapi = anonymous.get("/openapi.json").json()
    assert 'mlplane_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics
    assert (
        openapi["paths"]["/api/v1/spaces"]["get"]["summary"]
        == "List the spaces the caller belongs to."
    )


def test_a_user_created_by_an_admin_logs_in_with_their_password(embedded: Platform):
    with embedded.admin() as admin:
        created = admin.post(
            "/api/users", json={"name": "kim", "password": "kim-password", "role": "designer"}
        )
    assert created.status_code == 201, created.text
    with embedded.client() as anonymous:
        wrong = anonymous.post(
            "/api/v1/users/login", json={"name": "kim", "password": "not-her-password"}
        )
        nobody = anonymous.post(
            "/api/v1/users/login", json={"name": "nobody", "password": "kim-password"}
        )
        issued = anonymous.post(
            "/api/v1/users/login", json={"name": "kim", "password": "kim-password"}
        )
    assert (wrong.status_code, nobody.status_code, issued.status_code) == (401, 401, 201)
    with embedded.client(issued.json()["token"]) as kim:
        assert kim.get("/api/v1/users/me").json()["role"] == "designer"


def test_a_forgotten_user_is_erased_from_the_log_and_cannot_return(embedded: Platform):
    with embedded.admin() as admin:
        space = new_space(admin, "forgetful")
        with join(embedded, admin, space, "liz@example.com") as liz:
            liz_id = liz.get("/api/v1/users/me").json()["id"]
            assert admin.delete(f"/api/users/{liz_id}", params={"forget": True}).status_code == 200
            assert liz.get("/api/v1/users/me").status_code == 401
        assert admin.get(f"/api/users/{liz_id}").status_code == 404
        again = admin.post(
            f"/api/v1/spaces/{space}/invite", json={"emails": ["liz@example.com"], "roles": []}
        )
    tail = embedded.cli("events", "tail", "--space", space, "--json")
    [invited] = [e for e in map(json.loads, tail.stdout.splitlines()) if e["type"] == "UserInvited"]
    assert invited["data"]["user_id"] == liz_id and invited["data"]["email"] is None
    assert again.status_code == 409 and again.json()["title"] == "Subject erased"


def test_everything_survives_a_restart(embedded: Platform):
    with embedded.admin() as admin:
        space = new_space(admin, "durable")
        frank = join(embedded, admin, space, "frank@example.com")
    embedded.restart()
    with embedded.admin() as admin, frank:
        assert admin.get(f"/api/v1/spaces/{space}").json()["name"] == "durable"
        assert [s["id"] for s in frank.get("/api/v1/spaces").json()["data"]] == [space]
    verified = embedded.cli("projections", "verify", "gateway_spaces")
    assert verified.returncode == 0, verified.stdout + verified.stderr
