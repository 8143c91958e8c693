"""One request must not poison the event log: a body nested past what the readers take is refused
before anything is decided, and an event no projection can apply, already in the store, stops
only that projection — visibly — never the writes of any space, nor the next start.

Embedded (SQLite, in-process bus) and distributed (the gateway over Kafka and FerretDB)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from launcher import Platform, drop_collections, new_space

DEPTH = 200
DEEP_TRAINING = (
    '{"name":"deep","architecture":"linear","configuration":'
    + '{"a":' * DEPTH
    + "1"
    + "}" * DEPTH
    + "}"
)


def post_json(client: httpx.Client, path: str, text: str, space: str) -> httpx.Response:
    headers = {"content-type": "application/json", "X-Space-ID": space}
    return client.post(path, content=text, headers=headers)


def stored_types(platform: Platform, space: str) -> list[str]:
    out = platform.cli("events", "tail", "--json", "--space", space)
    assert out.returncode == 0, out.stderr
    return [json.loads(line)["type"] for line in out.stdout.splitlines()]


def ordinary_writes(client: httpx.Client, space: str) -> None:
    """A training, a connector and a data model: each answers 201 and shows in its list."""
    headers = {"X-Space-ID": space}
    made = {
        "trainings": client.post(
            "/api/v1/trainings", json={"name": "plain", "architecture": "linear"}, headers=headers
        ),
        "connectors": client.post(
            "/api/v1/connectors",
            json={"name": "files", "type": "local", "local": {"path": "data"}},
            headers=headers,
        ),
    }
    for kind, response in made.items():
        assert response.status_code == 201, (kind, response.text)
        listed = client.get(f"/api/v1/{kind}", headers=headers).json()
        assert response.json()["id"] in [item["id"] for item in listed["data"]], kind


def assert_the_deep_request_is_refused_and_harmless(platform: Platform) -> None:
    with platform.admin() as admin:
        attacker, other = new_space(admin, "attacker"), new_space(admin, "other")
        before = stored_types(platform, attacker)
        refused = post_json(admin, "/api/v1/trainings", DEEP_TRAINING, attacker)
        assert refused.status_code == 422, refused.text
        problem = refused.json()
        assert problem["errors"][0]["field"].startswith("configuration.a.a")
        assert "nested deeper than 32" in problem["detail"]
        assert stored_types(platform, attacker) == before  # nothing was appended
        ordinary_writes(admin, other)
        ordinary_writes(admin, attacker)
        assert admin.get("/readyz").json()["checks"]["projections"] == "ok"
    platform.restart()
    verified = platform.cli("projections", "verify", "training_trainings")
    assert verified.returncode == 0, verified.stderr
    with platform.admin() as admin:
        ordinary_writes(admin, other)


def test_a_deeply_nested_body_is_refused_and_every_space_keeps_writing(tmp_path: Path):
    platform = Platform(tmp_path / "home")
    platform.start()
    try:
        assert_the_deep_request_is_refused_and_harmless(platform)
    finally:
        platform.stop()


@pytest.mark.kafka
@pytest.mark.mongo
def test_the_same_on_kafka_and_ferretdb(tmp_path: Path, mongo_url: str, kafka_bootstrap: str):
    prefix = f"poison{int(time.time() * 1000) % 10**9}_"
    env = {
        "MLPLANE_EVENT_STORE_URL": mongo_url,
        "MLPLANE_BUS_URL": f"kafka://{kafka_bootstrap}",
        "MLPLANE_PREFIX": prefix,
    }
    platform = Platform(tmp_path / "home", env, service="gateway")
    platform.start()
    try:
        assert_the_deep_request_is_refused_and_harmless(platform)
    finally:
        platform.stop()
        drop_collections(mongo_url, prefix)


@pytest.fixture
def poisoned(tmp_path: Path) -> Iterator[tuple[Platform, str]]:
    """A platform whose store holds a TrainingCreated its type cannot read back, placed there
    behind the platform's back (as an older release could have written it)."""
    platform = Platform(tmp_path / "home")
    platform.start()
    with platform.admin() as admin:
        space = new_space(admin, "victim")
        ordinary_writes(admin, space)
    platform.stop()
    db = sqlite3.connect(platform.home / "mlplane.db")
    with db:
        _position, data, meta, time_ = db.execute(
            "SELECT position, data, meta, time FROM events WHERE type = 'TrainingCreated'"
            " ORDER BY position LIMIT 1"
        ).fetchone()
        payload = json.loads(data)
        payload["configuration"] = json.loads('{"a":' * 250 + "1" + "}" * 250)
        db.execute(
            "INSERT INTO events (position, id, stream_id, version, type, type_version, time,"
            " data, meta) SELECT MAX(position) + 1, 'poison', 'training:poison', 1,"
            " 'TrainingCreated', 1, ?, ?, ? FROM events",
            (time_, json.dumps(payload), meta),
        )
    db.close()
    platform.start()
    yield platform, space
    platform.stop()


def test_a_poisoned_store_still_starts_serves_writes_and_names_the_stopped_projection(
    poisoned: tuple[Platform, str],
):
    platform, space = poisoned
    with platform.admin() as admin:
        ready = admin.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert (
            "TrainingCreated poison" in ready.json()["checks"]["projections"]["training_trainings"]
        )
        other = new_space(admin, "bystander")
        for target in (space, other):
            response = admin.post(
                "/api/v1/connectors",
                json={"name": "more", "type": "local", "local": {"path": "data"}},
                headers={"X-Space-ID": target},
            )
            assert response.status_code == 201, response.text
        made = admin.post(
            "/api/v1/trainings",
            json={"name": "after", "architecture": "linear"},
            headers={"X-Space-ID": other},
        )
        assert made.status_code == 201, made.text  # stored, and said so
        metrics = admin.get("/metrics").text
        assert 'mlplane_projection_stopped{projection="training_trainings"} 1.0' in metrics

    status = platform.cli("projections", "status")
    assert status.returncode == 1
    assert "training_trainings" in status.stdout and "stopped at" in status.stdout
    verified = platform.cli("projections", "verify", "training_trainings")
    assert verified.returncode == 1
    assert "Traceback" not in verified.stderr and "stopped at position" in verified.stderr
    tail = platform.cli("events", "tail")
    assert tail.returncode == 0, tail.stderr
    assert "unreadable payload" in tail.stdout
