"""Every kind of entity the training service keeps reads as it was (`as_of`, `version`) and
pages its history, after the same authorisation as the plain read: an id of another space is a
404, also once the entity is deleted, and no credential or token ever shows."""

from __future__ import annotations

import io
import tarfile
import time

import httpx
import pytest
from launcher import Platform, free_port, join, new_space

SECRET, TOKEN = "history-secret-canary-51c3", "history-token-canary-c0d4"


def tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def admin(training_platform: Platform):
    with training_platform.admin() as client:
        yield client


@pytest.fixture
def space(admin: httpx.Client) -> str:
    return new_space(admin, "history")


@pytest.fixture
def elsewhere(admin: httpx.Client) -> dict[str, str]:
    """Headers naming another space of the same caller: its ids there are not ids here."""
    return {"X-Space-ID": new_space(admin, "history-elsewhere")}


def test_a_data_model_reads_as_it_was_and_pages_its_changes_after_its_deletion(
    admin, space, elsewhere
):
    headers = {"X-Space-ID": space}
    made = admin.post(
        "/api/v1/data-models", headers=headers, json={"name": "dm", "description": "a"}
    )
    dm = made.json()["id"]
    admin.patch(f"/api/v1/data-models/{dm}", headers=headers, json={"description": "b"})
    then = admin.get(f"/api/v1/data-models/{dm}", headers=headers, params={"version": 1})
    assert then.status_code == 200 and then.json()["description"] == "a", then.text
    assert admin.get(f"/api/v1/data-models/{dm}", headers=headers).json()["description"] == "b"
    admin.delete(f"/api/v1/data-models/{dm}", headers=headers)
    history = admin.get(f"/api/v1/data-models/{dm}/history", headers=headers).json()
    assert [c["type"] for c in history["data"]] == [
        "DataModelCreated",
        "DataModelUpdated",
        "DataModelDeleted",
    ]
    assert history["data"][1]["changed"]["description"] == "b" and history["data"][2]["deleted"]
    assert admin.get(f"/api/v1/data-models/{dm}", headers=headers).status_code == 404
    assert (
        admin.get(f"/api/v1/data-models/{dm}", headers=headers, params={"version": 1}).status_code
        == 200
    )
    for path in (f"/api/v1/data-models/{dm}/history", f"/api/v1/data-models/{dm}?version=1"):
        assert admin.get(path, headers=elsewhere).status_code == 404, path


def test_a_training_and_its_bundle_read_as_they_were(training_platform, admin, space, elsewhere):
    headers = {"X-Space-ID": space}
    archive = tar_gz({"train.py": b"print('hello')\n", "mlplane.json": b'{"name": "hello"}'})
    made = admin.post(
        f"/train/{space}", content=archive, headers={"content-type": "application/gzip"}
    )
    assert made.status_code == 202, made.text
    job, bundle = made.json()["id"], made.json()["bundle"]["bundle_id"]
    first = admin.get(f"/api/v1/trainings/{job}", headers=headers, params={"version": 1})
    assert first.status_code == 200 and first.json()["status"] == "queued", first.text
    deadline = time.monotonic() + 60
    while admin.get(f"/api/v1/trainings/{job}", headers=headers).json()["status"] != "succeeded":
        assert time.monotonic() < deadline, "the training did not end"
        time.sleep(0.3)
    history = admin.get(f"/api/v1/trainings/{job}/history", headers=headers).json()
    types = [c["type"] for c in history["data"]]
    assert types[0] == "TrainingCreated" and types[-1] == "TrainingSucceeded", types
    assert history["data"][-1]["changed"]["status"] == "succeeded"
    printed = training_platform.cli("history", "training", job)
    assert printed.returncode == 0 and "TrainingSucceeded" in printed.stdout, printed.stderr

    read = admin.get(f"/api/v1/bundles/{bundle}", headers=headers)
    assert read.status_code == 200, read.text
    assert read.json()["manifest"]["name"] == "hello" and read.json()["files"] == 2
    at = admin.get(
        f"/api/v1/bundles/{bundle}", headers=headers, params={"as_of": "2000-01-01T00:00:00Z"}
    )
    assert at.status_code == 404  # it did not exist then
    bundle_history = admin.get(f"/api/v1/bundles/{bundle}/history", headers=headers).json()
    assert [c["type"] for c in bundle_history["data"]] == ["BundleUploaded"]
    for path in (
        f"/api/v1/trainings/{job}?version=1",
        f"/api/v1/trainings/{job}/history",
        f"/api/v1/bundles/{bundle}",
        f"/api/v1/bundles/{bundle}/history",
    ):
        assert admin.get(path, headers=elsewhere).status_code == 404, path
    with join(training_platform, admin, space, "no-rights@example.com", roles=()) as member:
        refused = member.get(f"/api/v1/bundles/{bundle}/history", headers=headers)
        assert refused.status_code == 403, refused.text


def test_no_credential_or_token_shows_in_a_connector_or_cluster_history(admin, space):
    headers = {"X-Space-ID": space}
    connector = admin.post(
        "/api/v1/connectors",
        headers=headers,
        json={
            "name": "lake",
            "type": "aws-s3",
            "s3": {
                "bucket": "history-lake",
                "region": "us-east-1",
                "endpoint_url": f"http://127.0.0.1:{free_port()}",
                "access_key_id": "AKIAHISTORY",
                "secret_access_key": SECRET,
            },
        },
    )
    assert connector.status_code == 201, connector.text
    cluster = admin.post(
        "/api/v1/clusters",
        headers=headers,
        json={
            "name": "lab",
            "manager_url": f"https://127.0.0.1:{free_port()}",
            "ingress_url": "https://ingress.local",
            "token": TOKEN,
        },
    )
    assert cluster.status_code == 201, cluster.text
    rotated = admin.patch("/api/v1/clusters", headers=headers, json={"token": TOKEN + "-2"})
    assert rotated.status_code == 200, rotated.text
    cid = connector.json()["id"]
    answers = [
        admin.get(f"/api/v1/connectors/{cid}/history", headers=headers),
        admin.get(f"/api/v1/connectors/{cid}", headers=headers, params={"version": 1}),
        admin.get("/api/v1/clusters/history", headers=headers),
        admin.get("/api/v1/clusters", headers=headers, params={"version": 1}),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert SECRET not in answer.text and TOKEN not in answer.text, answer.text
        assert "AKIAHISTORY" not in answer.text
    assert answers[2].json()["count"] >= 2  # registered, then the token rotated
