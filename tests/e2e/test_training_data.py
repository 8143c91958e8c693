"""Data models and connectors on the embedded platform, against a real S3-compatible server
(gofakes3 from `services.sh up s3`) and a local datasets folder."""

from __future__ import annotations

import sqlite3
import time

import httpx
import pytest
from launcher import Platform, new_space
from s3server import ACCESS, SECRET, s3

IRIS_CSV = "a,b,c,d,label\n" + "".join(
    f"{5 + i % 3}.{i % 10},{3 + i % 2}.{i % 7},{1 + 2 * (i % 3)}.{i % 5},{i % 3}.{i % 4},{i % 3}\n"
    for i in range(90)
)


@pytest.fixture(scope="module")
def admin(training_platform: Platform):
    with training_platform.admin() as client:
        yield client


@pytest.fixture
def space(admin: httpx.Client) -> str:
    return new_space(admin, "data")


def test_data_models_are_created_listed_updated_and_deleted(admin, space):
    headers = {"X-Space-ID": space}
    made = [
        admin.post(
            "/api/v1/data-models", headers=headers, json={"name": f"dm{i}", "description": "d"}
        )
        for i in range(3)
    ]
    assert all(r.status_code == 201 for r in made)
    first = admin.get("/api/v1/data-models", headers=headers, params={"limit": 2}).json()
    rest = admin.get(
        "/api/v1/data-models",
        headers=headers,
        params={"limit": 2, "after": first["data"][-1]["id"]},
    ).json()
    assert first["count"] == 3 and first["has_more"] and len(rest["data"]) == 1
    one = made[0].json()["id"]
    updated = admin.patch(
        f"/api/v1/data-models/{one}", headers=headers, json={"description": "new"}
    ).json()
    assert updated["description"] == "new" and updated["name"] == "dm0"
    assert admin.delete(f"/api/v1/data-models/{one}", headers=headers).json() == {"id": one}
    assert admin.get(f"/api/v1/data-models/{one}", headers=headers).status_code == 404
    refused = admin.post("/api/v1/data-models", headers=headers, json={"name": "x", "owner": "me"})
    assert refused.status_code == 422


def test_an_s3_connector_lists_and_scans_files_and_never_shows_its_secret(
    training_platform, admin, space, s3_url, s3_bucket
):
    client = s3(s3_url)
    client.put_object(Bucket=s3_bucket, Key="raw/iris.csv", Body=IRIS_CSV.encode())
    for i in range(3):
        client.put_object(Bucket=s3_bucket, Key=f"raw/part-{i}.csv", Body=b"x,y\n1,2.5\n")
    client.put_object(Bucket=s3_bucket, Key="other/readme.txt", Body=b"hello")
    headers = {"X-Space-ID": space}
    created = admin.post(
        "/api/v1/connectors",
        headers=headers,
        json={
            "name": "lake",
            "type": "aws-s3",
            "s3": {
                "bucket": s3_bucket,
                "region": "us-east-1",
                "endpoint_url": s3_url,
                "access_key_id": ACCESS,
                "secret_access_key": SECRET,
            },
        },
    )
    assert created.status_code == 201, created.text
    connector = created.json()
    assert (
        connector["status"] == "ready"
        and connector["provider"] == "aws"
        and connector["has_credentials"]
    )
    assert SECRET not in created.text

    files = admin.get(
        f"/api/v1/connectors/{connector['id']}/files",
        headers=headers,
        params={"prefix": "raw/", "limit": 2},
    ).json()
    assert [f["key"] for f in files] == ["raw/iris.csv", "raw/part-0.csv"] and files[0][
        "size"
    ] == len(IRIS_CSV)
    scanned = admin.post(
        f"/api/v1/connectors/{connector['id']}/scan",
        headers=headers,
        json={"files": ["raw/iris.csv"]},
    ).json()
    [iris] = scanned["files"]
    assert iris["format"] == "csv" and [c["name"] for c in iris["columns"]] == [
        "a",
        "b",
        "c",
        "d",
        "label",
    ]
    assert iris["columns"][0]["type"] == "number" and iris["columns"][4]["type"] == "integer"
    fetched = admin.get(f"/api/v1/connectors/{connector['id']}", headers=headers)
    assert fetched.json()["files"][0]["key"] == "raw/iris.csv" and SECRET not in fetched.text

    with sqlite3.connect(training_platform.home / "mlplane.db") as db:
        stored = " ".join(
            row[0] for row in db.execute("SELECT data FROM events WHERE type = 'ConnectorCreated'")
        )
    assert SECRET not in stored and ACCESS not in stored and "enc:v1:" in stored

    training = admin.post(
        "/api/v1/trainings",
        headers=headers,
        json={
            "name": "from s3",
            "architecture": "gradient_boosting",
            "configuration": {"target": "label"},
            "connectors": [{"connector_id": connector["id"], "files": ["raw/iris.csv"]}],
        },
    ).json()
    deadline = time.monotonic() + 60
    while (state := admin.get(f"/api/v1/trainings/{training['id']}", headers=headers).json())[
        "status"
    ] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert state["status"] == "succeeded", state
    assert state["checkpoints"][0]["metrics"]["accuracy"] > 0.5

    assert admin.delete(f"/api/v1/connectors/{connector['id']}", headers=headers).status_code == 200
    assert admin.get(f"/api/v1/connectors/{connector['id']}", headers=headers).status_code == 404


def test_a_connector_to_an_unreachable_store_says_so(admin, space):
    created = admin.post(
        "/api/v1/connectors",
        headers={"X-Space-ID": space},
        json={
            "name": "nowhere",
            "type": "aws-s3",
            "s3": {"bucket": "missing-bucket", "endpoint_url": "http://127.0.0.1:9"},
        },
    ).json()
    assert created["status"].startswith("unreachable") and not created["has_credentials"]


def test_a_local_connector_reads_only_under_the_datasets_folder(training_platform, admin, space):
    folder = training_platform.home / "datasets" / "team"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "iris.csv").write_text(IRIS_CSV)
    headers = {"X-Space-ID": space}
    connector = admin.post(
        "/api/v1/connectors",
        headers=headers,
        json={"name": "disk", "type": "local", "local": {"path": "team"}},
    ).json()
    files = admin.get(f"/api/v1/connectors/{connector['id']}/files", headers=headers).json()
    assert connector["status"] == "ready" and [f["key"] for f in files] == ["iris.csv"]
    escape = admin.post(
        "/api/v1/connectors",
        headers=headers,
        json={"name": "etc", "type": "local", "local": {"path": "../../../etc"}},
    )
    assert escape.status_code == 422


def test_local_connector_messages_name_paths_as_given_never_the_servers_folders(
    training_platform, admin, space
):
    datasets = training_platform.home / "datasets"
    datasets.mkdir(parents=True, exist_ok=True)
    link = datasets / "elsewhere"
    if not link.is_symlink():
        link.symlink_to(training_platform.home.parent)
    headers = {"X-Space-ID": space}
    for path in ("elsewhere", "elsewhere/x", "/etc", "../etc"):
        refused = admin.post(
            "/api/v1/connectors",
            headers=headers,
            json={"name": "out", "type": "local", "local": {"path": path}},
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == "local.path"
        assert str(training_platform.home.resolve()) not in refused.text
        assert str(training_platform.home.parent.resolve()) not in refused.text
    missing = admin.post(
        "/api/v1/connectors",
        headers=headers,
        json={"name": "missing", "type": "local", "local": {"path": "not-there"}},
    )
    assert missing.status_code == 201 and missing.json()["status"] != "ready"
    assert str(datasets.resolve()) not in missing.text


@pytest.mark.parametrize(
    ("connector", "field"),
    [
        ({"files": ["../../etc/passwd"]}, "connectors.0.files.0"),
        ({"files": ["iris.csv", "/etc/passwd"]}, "connectors.0.files.1"),
        ({"files": ["a/../../b"]}, "connectors.0.files.0"),
        ({"prefix": "../"}, "connectors.0.prefix"),
    ],
    ids=["dot-dot", "absolute", "dot-dot-inside", "prefix"],
)
def test_a_training_naming_files_outside_its_connector_is_refused_at_create(
    admin, space, connector, field
):
    headers = {"X-Space-ID": space}
    created = admin.post(
        "/api/v1/connectors",
        headers=headers,
        json={"name": "disk", "type": "local", "local": {"path": "team"}},
    ).json()
    refused = admin.post(
        "/api/v1/trainings",
        headers=headers,
        json={
            "name": "escape",
            "architecture": "linear",
            "connectors": [{"connector_id": created["id"], **connector}],
        },
    )
    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == [field]
    listed = admin.get("/api/v1/trainings", headers=headers).json()
    assert listed["count"] == 0


@pytest.mark.parametrize("name", ["../up", "a/b", "..", "."])
def test_a_connector_name_that_is_not_one_folder_is_refused(admin, space, name):
    refused = admin.post(
        "/api/v1/connectors",
        headers={"X-Space-ID": space},
        json={"name": name, "type": "local", "local": {"path": "team"}},
    )
    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["name"]
