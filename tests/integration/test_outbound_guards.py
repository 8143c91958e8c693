"""Connectors and clusters may only make the platform call addresses its outbound policy allows
(`MLPLANE_EGRESS_ALLOW`; by default global addresses only), checked when the URL is given and
again when each connection opens; a cluster token travels over plain http only with an
administrator's leave; statuses are the platform's own words, never the remote's answer; and
reading a status calls nothing (a worker refreshes it).

The platform (gateway and training services) runs in this process; the remotes are small HTTP
servers on 127.0.0.1 and the local S3-compatible server, so the tests that reach them allow
loopback explicitly."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from kubefake import FakeApiServer, FakeCluster
from logs_platform import ADMIN_TOKEN, Platform, free_port
from mlplane.service import load
from mlplane.settings import Settings
from s3server import ACCESS, SECRET

from services.gateway.bootstrap import create_app
from services.training.services import SETTINGS

LOOPBACK = "127.0.0.1/32"
BANNER = "internal-admin-console-v7"
TOKEN = "cluster-token-for-the-egress-tests"
REFUSED_ADDRESSES = (
    "http://127.0.0.1:1",
    "http://100.100.100.200/latest/meta-data/",
    "http://100.64.0.1",
    "http://[2002:a9fe:a9fe::]",
    "http://[2002:a00:1::]",
    "http://[fec0::1]",
    "http://0x7f000001",
    "http://2130706433",
    "http://[::ffff:127.0.0.1]",
    "http://localhost:9000",
)


@asynccontextmanager
async def platform(home: Path, monkeypatch, allow: str = "") -> AsyncIterator[Platform]:
    monkeypatch.setenv("MLPLANE_EGRESS_ALLOW", allow)
    monkeypatch.setenv("MLPLANE_TRAINING_STATUS_REFRESH_S", "0")
    settings = Settings(home=home, admin_token=ADMIN_TOKEN)
    app = create_app(settings, load("gateway,training"))
    async with app.router.lifespan_context(app):
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://mlplane", headers=headers
        ) as client:
            yield Platform(app, client)


@pytest.fixture
async def guarded(tmp_path, monkeypatch) -> AsyncIterator[Platform]:
    """The default policy: global addresses only."""
    async with platform(tmp_path, monkeypatch) as p:
        yield p


@pytest.fixture
async def loopback(tmp_path, monkeypatch) -> AsyncIterator[Platform]:
    """An administrator allowed 127.0.0.1, where the test's remotes listen."""
    async with platform(tmp_path, monkeypatch, LOOPBACK) as p:
        yield p


class Banner:
    """A web server on 127.0.0.1 that answers every request with `code` and a banner."""

    def __init__(self, code: int = 404) -> None:
        self.requests = 0
        banner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                banner.requests += 1
                body = f"<html>{BANNER}</html>".encode()
                self.send_response(code)
                self.send_header("content-type", "text/html")
                self.send_header("server", BANNER)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def banner():
    made: list[Banner] = []

    def make(code: int = 404) -> Banner:
        made.append(Banner(code))
        return made[-1]

    yield make
    for server in made:
        server.close()


async def owner(p: Platform, email: str) -> tuple[httpx.AsyncClient, str]:
    """A client of a user who is no administrator, and a space they own."""
    member = await p.member_client(await p.new_space("invited"), email)
    made = await member.post("/api/v1/spaces", json={"name": "own", "description": "own"})
    assert made.status_code == 201, made.text
    return member, made.json()["id"]


def s3_connector(endpoint: str, **s3) -> dict:
    return {
        "name": "lake",
        "type": "aws-s3",
        "s3": {"bucket": "some-bucket", "endpoint_url": endpoint, **s3},
    }


# ---------------------------------------------------------------- connectors


async def test_a_connector_endpoint_outside_the_allowed_networks_is_refused(guarded):
    space = await guarded.new_space()
    for endpoint in REFUSED_ADDRESSES:
        made = await guarded.client.post(
            "/api/v1/connectors", headers={"X-Space-ID": space}, json=s3_connector(endpoint)
        )
        assert made.status_code == 422, (endpoint, made.text)
        assert "s3.endpoint_url" in made.text and "MLPLANE_EGRESS_ALLOW" in made.text


async def test_a_connector_status_never_echoes_what_the_endpoint_answered(loopback, banner):
    headers = {"X-Space-ID": await loopback.new_space()}
    web, locked = banner(404), banner(403)
    statuses = {}
    for name, endpoint in (
        ("web", web.url),
        ("locked", locked.url),
        ("closed", f"http://127.0.0.1:{free_port()}"),
    ):
        made = await loopback.client.post(
            "/api/v1/connectors", headers=headers, json=s3_connector(endpoint)
        )
        assert made.status_code == 201, made.text
        assert BANNER not in made.text and "404" not in made.text and "Not Found" not in made.text
        statuses[name] = made.json()
    assert statuses["web"]["status"] == "refused by the endpoint"
    assert statuses["locked"]["status"] == "credentials rejected"
    assert statuses["closed"]["status"] == "unreachable"
    files = await loopback.client.get(
        f"/api/v1/connectors/{statuses['web']['id']}/files", headers=headers
    )
    assert files.status_code == 502
    assert files.json()["detail"] == "the connector's storage is refused by the endpoint"
    assert BANNER not in files.text


async def test_a_connector_connection_is_checked_again_when_it_opens(
    loopback,
    monkeypatch,
    s3_url,
    s3_bucket,
):
    headers = {"X-Space-ID": await loopback.new_space()}
    body = s3_connector(s3_url, bucket=s3_bucket, access_key_id=ACCESS, secret_access_key=SECRET)
    made = await loopback.client.post("/api/v1/connectors", headers=headers, json=body)
    assert made.status_code == 201 and made.json()["status"] == "ready", made.text
    url = f"/api/v1/connectors/{made.json()['id']}/files"
    assert (await loopback.client.get(url, headers=headers)).status_code == 200

    monkeypatch.setattr(loopback.kernel.settings, "egress_allow", "")  # the leave is withdrawn
    refused = await loopback.client.get(url, headers=headers)
    assert refused.status_code == 502, refused.text
    assert refused.json()["detail"].startswith("the connector's storage is not allowed")


# ---------------------------------------------------------------- clusters


async def test_a_cluster_api_outside_the_allowed_networks_is_refused(guarded):
    space = await guarded.new_space()
    for url in REFUSED_ADDRESSES:
        made = await guarded.client.post(
            "/api/v1/clusters",
            headers={"X-Space-ID": space},
            json={"manager_url": url, "ingress_url": "http://ingress.local"},
        )
        assert made.status_code == 422, (url, made.text)
        assert "manager_url" in made.text


async def test_a_cluster_token_goes_over_plain_http_only_with_an_administrators_leave(loopback):
    member, space = await owner(loopback, "owner@example.com")
    headers = {"X-Space-ID": space}
    closed = f"127.0.0.1:{free_port()}"
    plain = {"manager_url": f"http://{closed}", "ingress_url": "http://in", "token": TOKEN}
    refused = await member.post("/api/v1/clusters", headers=headers, json=plain)
    assert refused.status_code == 422 and "https" in refused.json()["detail"], refused.text
    forbidden = await member.post(
        "/api/v1/clusters", headers=headers, json={**plain, "allow_insecure_http": True}
    )
    assert forbidden.status_code == 403, forbidden.text
    over_tls = await member.post(
        "/api/v1/clusters", headers=headers, json={**plain, "manager_url": f"https://{closed}"}
    )
    assert over_tls.status_code == 201, over_tls.text
    assert over_tls.json()["status"] == "unreachable"
    downgrade = await member.patch(
        "/api/v1/clusters", headers=headers, json={"manager_url": f"http://{closed}"}
    )
    assert downgrade.status_code == 422, downgrade.text

    allowed = await loopback.client.patch(
        "/api/v1/clusters",
        headers=headers,
        json={"manager_url": f"http://{closed}", "allow_insecure_http": True},
    )
    assert allowed.status_code == 200 and allowed.json()["allow_insecure_http"], allowed.text
    moved = await member.patch(
        "/api/v1/clusters", headers=headers, json={"manager_url": f"http://{closed}/elsewhere"}
    )
    assert moved.status_code == 422, moved.text  # a new URL withdraws the administrator's leave


async def test_reading_a_cluster_calls_nothing_and_a_worker_refreshes_its_status(loopback):
    space = await loopback.new_space("k8s")
    headers = {"X-Space-ID": space}
    reader = await loopback.member_client(space, "reader@example.com")
    cluster = FakeCluster(token=TOKEN)
    with FakeApiServer(cluster) as fake:
        made = await loopback.client.post(
            "/api/v1/clusters",
            headers=headers,
            json={
                "manager_url": fake.url,
                "ingress_url": "http://ingress.local",
                "token": TOKEN,
                "allow_insecure_http": True,
            },
        )
        assert made.status_code == 201 and made.json()["status"] == "ready", made.text
        probes = len(cluster.requests)
        for _ in range(3):
            read = await reader.get("/api/v1/clusters", headers=headers)
            assert read.status_code == 200, read.text
        assert len(cluster.requests) == probes
        assert read.json()["nodes"][0]["name"] == "gpu-node-1"
        assert read.json()["inference"]["status"] == "ready" and read.json()["token"] is None

        cluster.token = "rotated-on-the-cluster"
        from services.training.refresh import StatusRefresher

        await StatusRefresher(loopback.kernel, loopback.kernel.extensions[SETTINGS]).refresh()
        assert len(cluster.requests) == probes + 1
    read = (await reader.get("/api/v1/clusters", headers=headers)).json()
    assert read["status"] == "credentials rejected" and read["nodes"] == []
    events = await loopback.kernel.log.read_stream(f"cluster:{space}")
    assert [e.type for e in events][-1] == "ClusterStatusChanged"


async def test_a_cluster_status_never_echoes_what_the_endpoint_answered(loopback, banner):
    found = {}
    for name, url in (("web", banner(404).url), ("closed", f"http://127.0.0.1:{free_port()}")):
        space = await loopback.new_space(name)
        made = await loopback.client.post(
            "/api/v1/clusters",
            headers={"X-Space-ID": space},
            json={"manager_url": url, "ingress_url": "http://ingress.local"},
        )
        assert made.status_code == 201, made.text
        read = await loopback.client.get("/api/v1/clusters", headers={"X-Space-ID": space})
        assert BANNER not in read.text and "404" not in read.text
        found[name] = read.json()["status"]
    assert found == {"web": "refused by the endpoint", "closed": "unreachable"}
