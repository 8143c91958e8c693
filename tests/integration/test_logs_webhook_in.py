"""Status updates sent in: a signed update becomes one event on the logs service's stream for
that entity (`status-report:<object>:<id>`; the entity's own stream belongs to its context);
every bad request is a 4xx problem and appends nothing."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest
from logs_platform import Platform, platform

from services.logs.signing import sign

PROBLEM = "application/problem+json"


@pytest.fixture
async def running(tmp_path, monkeypatch) -> AsyncIterator[Platform]:
    async with platform(tmp_path, monkeypatch) as p:
        yield p


async def secret_of(p: Platform, space: str) -> str:
    response = await p.client.post("/api/v1/webhooks/inbound-secret", headers={"X-Space-ID": space})
    assert response.status_code == 201, response.text
    return response.json()["secret"]


def signed(
    space: str, secret: str, body: bytes, delivery: str = "dlv-1", at: float | None = None
) -> dict:
    stamp = int(time.time() if at is None else at)
    return {
        "X-Space-ID": space,
        "webhook-id": delivery,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, delivery, stamp, body),
        "content-type": "application/json",
        "Authorization": "",
    }


def update(entity: str, **fields) -> bytes:
    return json.dumps(
        {
            "id": entity,
            "object": "space",
            "event": "updated",
            "status": "ready",
            "type": "aws-s3",
            "payload": {"rows": 42},
            **fields,
        }
    ).encode()


async def head(p: Platform) -> int:
    return await p.kernel.log.store.head_position()


async def test_a_signed_update_becomes_one_event_on_the_status_report_stream(running: Platform):
    space = await running.new_space()
    secret = await secret_of(running, space)
    body = update(space)
    first = await running.client.post(
        "/api/v1/webhooks", content=body, headers=signed(space, secret, body)
    )
    again = await running.client.post(
        "/api/v1/webhooks", content=body, headers=signed(space, secret, body)
    )
    assert first.status_code == again.status_code == 200, first.text
    assert first.json() == {"id": "dlv-1", "duplicate": False} and again.json()["duplicate"] is True
    reported = [
        env
        for env in await running.kernel.log.read_stream(f"status-report:space:{space}")
        if env.type == "EntityStatusReported"
    ]
    assert len(reported) == 1
    assert reported[0].data.status == "ready" and reported[0].data.payload == {"rows": 42}
    assert reported[0].space == space
    entity_stream = await running.kernel.log.read_stream(f"space:{space}")
    assert [env for env in entity_stream if env.type == "EntityStatusReported"] == []


async def test_the_status_reported_on_an_entity_has_a_history(running: Platform):
    space, other = await running.new_space("mine"), await running.new_space("theirs")
    secret = await secret_of(running, space)
    for delivery, status in (("dlv-1", "ready"), ("dlv-2", "failed")):
        body = update(space, status=status)
        sent = await running.client.post(
            "/api/v1/webhooks", content=body, headers=signed(space, secret, body, delivery)
        )
        assert sent.status_code == 200, sent.text
    path = f"/api/v1/webhooks/status-reports/space:{space}"
    now = await running.client.get(path, headers={"X-Space-ID": space})
    first = await running.client.get(path, params={"version": 1}, headers={"X-Space-ID": space})
    history = await running.client.get(f"{path}/history", headers={"X-Space-ID": space})
    assert (now.json()["status"], now.json()["reports"]) == ("failed", 2)
    assert first.json()["status"] == "ready"
    assert [c["changed"].get("status") for c in history.json()["data"]] == ["ready", "failed"]
    foreign = await running.client.get(path, headers={"X-Space-ID": other})
    assert foreign.status_code == 404


async def test_the_inbound_secret_has_a_history_that_never_shows_it(running: Platform):
    space, other = await running.new_space("mine"), await running.new_space("theirs")
    old, new = await secret_of(running, space), await secret_of(running, space)
    path = f"/api/v1/webhooks/inbound-secrets/{space}"
    now = await running.client.get(path, headers={"X-Space-ID": space})
    first = await running.client.get(path, params={"version": 1}, headers={"X-Space-ID": space})
    history = await running.client.get(f"{path}/history", headers={"X-Space-ID": space})
    assert now.status_code == first.status_code == history.status_code == 200
    assert now.json()["secret_id"] != first.json()["secret_id"]
    assert history.json()["count"] == 2
    for answer in (now, first, history):
        assert old not in answer.text and new not in answer.text
    foreign = await running.client.get(path, headers={"X-Space-ID": other})
    assert foreign.status_code == 404


async def test_bad_updates_are_refused_and_append_nothing(running: Platform):
    space, other = await running.new_space("mine"), await running.new_space("theirs")
    secret = await secret_of(running, space)
    await secret_of(running, other)
    good = update(space)
    cases = {
        "wrong secret": (good, signed(space, "whsec_" + "A" * 44, good), 401),
        "stale timestamp": (good, signed(space, secret, good, at=time.time() - 3600), 401),
        "future timestamp": (good, signed(space, secret, good, at=time.time() + 3600), 401),
        "no signature": (good, {**signed(space, secret, good), "webhook-signature": ""}, 401),
        "no space": (good, {**signed(space, secret, good), "X-Space-ID": ""}, 401),
        "body changed after signing": (
            update(space, status="hacked"),
            signed(space, secret, good),
            401,
        ),
        "unknown entity": (
            update("no-such-space"),
            signed(space, secret, update("no-such-space")),
            404,
        ),
        "foreign entity": (update(other), signed(space, secret, update(other)), 404),
        "kind that takes no updates": (
            update(space, object="user"),
            signed(space, secret, update(space, object="user")),
            404,
        ),
        "malformed json": (b"{not json", signed(space, secret, b"{not json"), 422),
        "missing id": (b'{"status": "ready"}', signed(space, secret, b'{"status": "ready"}'), 422),
        "unknown field": (
            update(space, colour="red"),
            signed(space, secret, update(space, colour="red")),
            422,
        ),
    }
    before = await head(running)
    for name, (body, headers, status) in cases.items():
        response = await running.client.post("/api/v1/webhooks", content=body, headers=headers)
        assert response.status_code == status, f"{name}: {response.status_code} {response.text}"
        assert response.headers["content-type"] == PROBLEM, name
    assert await head(running) == before


async def test_a_rotated_secret_stops_the_old_one(running: Platform):
    space = await running.new_space()
    old = await secret_of(running, space)
    new = await secret_of(running, space)
    body = update(space)
    refused = await running.client.post(
        "/api/v1/webhooks", content=body, headers=signed(space, old, body)
    )
    accepted = await running.client.post(
        "/api/v1/webhooks", content=body, headers=signed(space, new, body)
    )
    assert (refused.status_code, accepted.status_code) == (401, 200)
