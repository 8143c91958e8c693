"""Explain on the embedded platform: the serving and training contexts' events (appended here
as their services would) feed the logs service's explain projection, and each inference log is
explained by the revision and checkpoint in force when it was written, for its space only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from logs_platform import Platform, platform
from mlplane.eventlog import Context

from services.inference_deploy import events as deploy
from services.logs.events import InferenceLogged
from services.logs.ingest import publish_logs
from services.training import events as training
from services.triton_manager import events as serving


@pytest.fixture
async def running(tmp_path, monkeypatch) -> AsyncIterator[Platform]:
    async with platform(tmp_path, monkeypatch) as p:
        yield p


async def append(p: Platform, space: str, stream: str, *events) -> None:
    await p.kernel.log.append(stream, list(events), None, Context(space=space))


def spec(version: int, checkpoint: str) -> dict:
    return {
        "model_id": "m1",
        "version": version,
        "served_name": f"m1-v{version}",
        "checkpoint_id": checkpoint,
    }


async def lineage(p: Platform, space: str) -> None:
    await append(
        p,
        space,
        "training:t1",
        training.TrainingCreated(
            training_id="t1", space_id=space, name="iris", source="architecture", code_hash="c1"
        ),
        *(
            training.CheckpointCreated(
                checkpoint_id=ck, training_id="t1", space_id=space, name="iris", version=v,
                format="joblib", uri=f"file://{ck}", key=ck, files={},
            )
            for v, ck in ((1, "ck1"), (2, "ck2"))
        ),
    )  # fmt: skip
    await append(
        p,
        space,
        "model:m1",
        serving.ModelCreated(model_id="m1", space_id=space, name="iris"),
        *(
            serving.ModelVersionAdded(
                model_id="m1", version=v, format="joblib", key="k", files={"model.joblib": "ab"},
                size=1, config={}, checkpoint_id=ck, source="checkpoint",
            )
            for v, ck in ((1, "ck1"), (2, "ck2"))
        ),
    )  # fmt: skip
    await append(
        p,
        space,
        "server:srv",
        serving.ServerRegistered(server_id="srv", name="local", host="127.0.0.1", port=8080),
    )


async def log_now(p: Platform, space: str, version: int) -> str:
    await asyncio.sleep(0.01)  # the log's time is after the events before it, as in serving
    (log_id,) = await publish_logs(
        p.kernel.bus,
        [
            InferenceLogged(
                space=space,
                endpoint="iris",
                model="m1",
                version=str(version),
                status="success",
                latency_ms=1.0,
                time=datetime.now(UTC),
            )
        ],
    )
    await asyncio.sleep(0.01)
    return log_id


async def explained(p: Platform, space: str, log_id: str) -> dict:
    for _ in range(200):  # the in-process ingest stores the log a moment after it is published
        answer = await p.client.get(
            f"/api/v1/inference-logs/{log_id}/explain", headers={"X-Space-ID": space}
        )
        if answer.status_code != 404:
            break
        await asyncio.sleep(0.05)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_each_log_is_explained_by_the_revision_in_force_when_it_was_written(
    running: Platform,
):
    space = await running.new_space()
    await lineage(running, space)
    endpoint = "endpoint:ep"
    await append(
        running,
        space,
        endpoint,
        deploy.EndpointDeployed(
            endpoint_id="ep", space_id=space, name="iris", revision_id="r1", revision=1,
            spec=spec(1, "ck1"),
        ),
        deploy.EndpointRolledOut(
            endpoint_id="ep", revision_id="r1", served_name="m1-v1", targets=["srv"]
        ),
    )  # fmt: skip
    first = await log_now(running, space, 1)
    await append(
        running,
        space,
        endpoint,
        deploy.EndpointReconfigured(
            endpoint_id="ep", revision_id="r2", revision=2, spec=spec(2, "ck2")
        ),
        deploy.EndpointRolledOut(
            endpoint_id="ep", revision_id="r2", served_name="m1-v2", targets=["srv"]
        ),
    )
    second = await log_now(running, space, 2)
    await append(
        running,
        space,
        endpoint,
        deploy.EndpointReconfigured(
            endpoint_id="ep", revision_id="r3", revision=3, spec=spec(1, "ck1"), rollback_of="r1"
        ),
        deploy.EndpointRolledOut(
            endpoint_id="ep", revision_id="r3", served_name="m1-v1", targets=["srv"]
        ),
    )
    third = await log_now(running, space, 1)

    answers = [await explained(running, space, log) for log in (first, second, third)]
    assert [(a["endpoint"]["revision_id"], a["checkpoint"]["id"]) for a in answers] == [
        ("r1", "ck1"),
        ("r2", "ck2"),
        ("r3", "ck1"),
    ]
    assert answers[2]["endpoint"]["rollback_of"] == "r1"
    assert all(a["matches_log"] for a in answers)
    assert answers[1]["model"] == {
        "id": "m1",
        "name": "iris",
        "version": "2",
        "format": "joblib",
        "source": "checkpoint",
        "files": {"model.joblib": "ab"},
    }
    assert answers[0]["servers"] == [
        {"id": "srv", "name": "local", "host": "127.0.0.1", "port": 8080, "kind": "triton"}
    ]
    assert answers[0]["training"]["id"] == "t1" and answers[0]["bundle"]["code_hash"] == "c1"


async def test_a_log_is_read_and_explained_in_its_own_space_only(running: Platform):
    space, other = await running.new_space("mine"), await running.new_space("theirs")
    log_id = await log_now(running, space, 1)
    found = await explained(running, space, log_id)
    assert found["endpoint"] is None and found["checkpoint"] is None
    one = await running.client.get(
        f"/api/v1/inference-logs/{log_id}", headers={"X-Space-ID": space}
    )
    assert one.status_code == 200 and one.json()["id"] == log_id
    for path in (f"/api/v1/inference-logs/{log_id}", f"/api/v1/inference-logs/{log_id}/explain"):
        foreign = await running.client.get(path, headers={"X-Space-ID": other})
        assert foreign.status_code == 404, path
    member = await running.member_client(other, "someone@example.com")
    async with member:
        refused = await member.get(path, headers={"X-Space-ID": space})
    assert refused.status_code == 404
