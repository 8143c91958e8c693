"""Secret canary: every secret the platform accepts is set to a unique canary, the flows that
carry them run, and then every answer, log line, stored event, read model and file the platform
wrote is searched for the canaries in clear. None may be there.

Secrets are the administrator's token, a user's password, S3 credentials, a cluster's token and
a webhook's signing secret. They are written (the cluster's and the webhook's are used by the
platform itself), so each must be stored sealed or hashed, and never echoed back.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from launcher import Platform, new_space

CANARY = f"cnry{secrets.token_hex(12)}"


def canary(kind: str) -> str:
    return f"{CANARY}{kind}"


SECRETS = {
    "admin token": f"mlp_{canary('admin')}",
    "password": canary("password"),
    "S3 access key": canary("s3key"),
    "S3 secret key": canary("s3secret"),
    "cluster token": canary("cluster"),
    "webhook secret": canary("webhook-signing-secret"),
}


class Recorder:
    """Every answer body the tests received."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        self.bodies.append(response.text)
        self.bodies.append(json.dumps(dict(response.headers)))


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    env = {"MLPLANE_ADMIN_TOKEN": SECRETS["admin token"], "MLPLANE_EGRESS_ALLOW": "127.0.0.1/32"}
    platform = Platform(Path(tmp_path_factory.mktemp("canary")), env)
    platform.start()
    platform.admin_token = SECRETS["admin token"]
    yield platform
    platform.stop()


def run_the_flows(platform: Platform, recorder: Recorder, s3_url: str, s3_bucket: str) -> None:
    hooks = {"response": [recorder]}
    headers = {"Authorization": f"Bearer {SECRETS['admin token']}"}
    with httpx.Client(
        base_url=platform.url, headers=headers, event_hooks=hooks, timeout=30
    ) as admin:
        space = new_space(admin, "canary")
        scoped = {"X-Space-ID": space}
        made = admin.post("/api/users", json={"name": "cara", "password": SECRETS["password"]})
        assert made.status_code == 201, made.text
        login = admin.post(
            "/api/v1/users/login", json={"name": "cara", "password": SECRETS["password"]}
        )
        assert login.status_code == 201, login.text
        connector = admin.post(
            "/api/v1/connectors",
            headers=scoped,
            json={
                "name": "bucket",
                "type": "aws-s3",
                "s3": {
                    "bucket": s3_bucket,
                    "endpoint_url": s3_url,
                    "access_key_id": SECRETS["S3 access key"],
                    "secret_access_key": SECRETS["S3 secret key"],
                },
            },
        )
        assert connector.status_code == 201, connector.text
        for path in (f"/api/v1/connectors/{connector.json()['id']}", "/api/v1/connectors"):
            admin.get(path, headers=scoped)
        cluster = admin.post(
            "/api/v1/clusters",
            headers=scoped,
            json={
                "manager_url": "https://127.0.0.1:1",
                "ingress_url": "https://127.0.0.1:2",
                "token": SECRETS["cluster token"],
            },
        )
        assert cluster.status_code == 201, cluster.text
        admin.get("/api/v1/clusters", headers=scoped)
        hook = admin.post(
            "/api/v1/webhooks/subscriptions",
            headers=scoped,
            json={"url": "http://127.0.0.1:9/hook", "secret": SECRETS["webhook secret"]},
        )
        assert hook.status_code == 201, hook.text
        admin.get(f"/api/v1/webhooks/subscriptions/{hook.json()['id']}", headers=scoped)
        admin.get(f"/api/v1/spaces/{space}/history")
        admin.get("/metrics")
    for args in (("events", "tail", "--json"), ("events", "tail")):
        out = platform.cli(*args)
        assert out.returncode == 0, out.stderr
        recorder.bodies += [out.stdout, out.stderr]


def stored_text(home: Path) -> Iterator[tuple[str, str]]:
    """Every file under the platform's home, as text, with SQLite databases read row by row
    (a page on disk may hold a value split or compressed; the rows are what a reader sees)."""
    for path in sorted(home.rglob("*")):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        yield str(path), raw.decode("utf-8", "replace")
        if raw.startswith(b"SQLite format 3"):
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                tables = [
                    r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
                ]
                for table in tables:
                    rows = db.execute(f'SELECT * FROM "{table}"').fetchall()
                    yield f"{path}:{table}", json.dumps(rows, default=repr)
            finally:
                db.close()


def test_no_secret_is_found_in_clear_anywhere(platform: Platform, s3_url: str, s3_bucket: str):
    recorder = Recorder()
    run_the_flows(platform, recorder, s3_url, s3_bucket)
    places = [(f"answer {i}", body) for i, body in enumerate(recorder.bodies)]
    places += list(stored_text(platform.home))
    found = [
        f"{kind} in {where}"
        for where, text in places
        for kind, value in SECRETS.items()
        if value in text or value.removeprefix("mlp_") in text
    ]
    assert found == []
    assert len(places) > 20  # the search did look at something
