"""The outbound-address guard: which addresses a user-given URL may reach, at registration and
again at connect time (a name re-pointed after the check is refused)."""

from __future__ import annotations

import asyncio
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from mlplane.egress import (
    BlockedAddress,
    Egress,
    InsecureTransport,
    blocked_cause,
    check_url,
    parse_networks,
    require_tls_for_secret,
)
from mlplane.errors import Invalid
from mlplane.settings import Settings

DEFAULT = Egress()

REFUSED_URLS = [
    # cloud metadata services and shared address space (100.64.0.0/10)
    "http://100.100.100.200/latest/meta-data/",
    "http://100.64.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    # 6to4 forms of 169.254.169.254 and 10.0.0.1, site-local, Teredo, NAT64
    "http://[2002:a9fe:a9fe::]/",
    "http://[2002:a00:1::]/",
    "http://[2002:7f00:1::]/",
    "http://[fec0::1]/",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",  # Teredo, client 127.0.0.1
    "http://[64:ff9b::7f00:1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[64:ff9b:1::a00:1]/",
    # loopback, written every way
    "http://127.0.0.1/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0x7f.0.0.1/",
    "http://0177.0.0.1/",
    "http://017700000001/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[0:0:0:0:0:ffff:127.0.0.1]/",
    "http://[::127.0.0.1]/",
    "http://localhost/",
    "http://LOCALHOST:8080/",
    # private, link-local, unspecified, multicast, reserved, documentation, benchmarking
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://[::ffff:10.0.0.1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://0.0.0.0/",
    "http://0/",
    "http://[::]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://192.0.0.1/",
    "http://192.0.2.1/",
    "http://198.18.0.1/",
    "http://[2001:db8::1]/",
    "http://[100::1]/",
]


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_a_url_to_a_non_global_address_is_refused(url):
    _, host, port = check_url(url)
    with pytest.raises(BlockedAddress):
        run(DEFAULT.resolve(host, port))
    with pytest.raises(BlockedAddress):
        DEFAULT.resolve_sync(host, port)


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2002:808:808::", "64:ff9b::808:808"],
)
def test_a_global_address_is_permitted(address):
    assert DEFAULT.permitted(address)


def test_6to4_and_teredo_are_permitted_only_if_what_they_embed_is():
    assert not DEFAULT.permitted("2002:a9fe:a9fe::")  # 169.254.169.254 inside
    assert DEFAULT.permitted("2002:808:808::")  # 8.8.8.8 inside
    assert not DEFAULT.permitted("2001:0:4136:e378:8000:63bf:80ff:fffe")


def test_an_administrator_allows_private_networks_and_only_those():
    egress = Egress.from_setting("10.0.0.0/8, 127.0.0.1/32,fd00::/8")
    assert egress.permitted("10.1.2.3") and egress.permitted("127.0.0.1")
    assert egress.permitted("::ffff:127.0.0.1") and egress.permitted("fd00::5")
    assert not egress.permitted("127.0.0.2") and not egress.permitted("192.168.0.1")
    assert not egress.permitted("100.100.100.200") and not egress.permitted("169.254.169.254")
    assert run(egress.resolve("127.0.0.1", 80)) == ["127.0.0.1"]


def test_the_allow_list_setting_is_validated_at_start_and_empty_by_default():
    assert Settings().egress == Egress()
    assert Settings(egress_allow="127.0.0.1/32").egress.allowed == parse_networks("127.0.0.1")
    with pytest.raises(ValueError, match="MLPLANE_EGRESS_ALLOW"):
        Settings(egress_allow="10.0.0.0/8,not-a-network")


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "http://u:p@example.com/", "http:///nohost", "http://[::1/"]
)
def test_a_url_of_the_wrong_shape_is_invalid(url):
    with pytest.raises(Invalid):
        check_url(url)


def test_registration_answers_invalid_naming_the_field():
    with pytest.raises(Invalid) as raised:
        run(DEFAULT.check_destination("http://100.100.100.200/", "s3.endpoint_url"))
    assert raised.value.extra["field"] == "s3.endpoint_url"
    assert "MLPLANE_EGRESS_ALLOW" in raised.value.detail


def test_a_token_travels_over_plain_http_only_where_an_administrator_allowed_it():
    require_tls_for_secret("https://k8s.example.com", "token", False)
    require_tls_for_secret("http://k8s.example.com", None, False)
    require_tls_for_secret("http://k8s.example.com", "token", True)
    with pytest.raises(InsecureTransport):
        require_tls_for_secret("http://k8s.example.com", "token", False)


# ---------------------------------------------------------------- connect time


class Server:
    """A loopback HTTP server counting the requests it received."""

    def __init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits += 1
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.hits = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def rebinding(monkeypatch):
    """`rebind.example` resolves to 127.0.0.1, as a name re-pointed after its check would;
    `gone.example` does not resolve."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "gone.example":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real("127.0.0.1" if host == "rebind.example" else host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    async def loop_getaddrinfo(self, host, port, *args, **kwargs):
        return getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", loop_getaddrinfo)


async def fetch_with_httpx(egress: Egress, url: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=egress.async_transport()) as client:
        return await client.get(url)


def test_httpx_connections_are_checked_when_they_open(server, rebinding):
    url = f"http://rebind.example:{server.port}/"
    with pytest.raises(BlockedAddress):
        run(fetch_with_httpx(DEFAULT, url))
    assert server.hits == 0
    allowed = run(fetch_with_httpx(Egress.from_setting("127.0.0.1/32"), url))
    assert allowed.status_code == 200 and server.hits == 1


def test_urllib3_connections_are_checked_when_they_open(server, rebinding):
    import urllib3

    url = f"http://rebind.example:{server.port}/"
    guarded = DEFAULT.guard_pool_manager(urllib3.PoolManager())
    with pytest.raises(urllib3.exceptions.MaxRetryError) as raised:
        guarded.request("GET", url, retries=urllib3.Retry(0))
    assert blocked_cause(raised.value) is not None and server.hits == 0
    allowed = Egress.from_setting("127.0.0.1/32").guard_pool_manager(urllib3.PoolManager())
    assert allowed.request("GET", url).status == 200 and server.hits == 1


def test_boto3_connections_are_checked_when_they_open(server, rebinding):
    from botocore.exceptions import EndpointConnectionError
    from mlplane.artifacts.s3 import s3_client

    client = DEFAULT.guard_boto3_client(
        s3_client(f"http://rebind.example:{server.port}", "us-east-1", "key", "secret")
    )
    with pytest.raises(EndpointConnectionError) as raised:
        client.list_buckets()
    assert blocked_cause(raised.value) is not None and server.hits == 0


def test_the_kubernetes_client_connections_are_checked_when_they_open(server, rebinding):
    from kubernetes import client

    config = client.Configuration()
    config.host = f"http://rebind.example:{server.port}"
    config.retries = 0
    api = client.ApiClient(config)
    DEFAULT.guard_pool_manager(api.rest_client.pool_manager)
    with pytest.raises(Exception) as raised:
        client.CoreV1Api(api).list_node(_request_timeout=2)
    assert blocked_cause(raised.value) is not None and server.hits == 0


def test_a_host_that_does_not_resolve_is_invalid_at_registration_and_unreachable_later(
    rebinding,
):
    with pytest.raises(Invalid, match="does not resolve"):
        run(DEFAULT.check_destination("http://gone.example/", "url"))
    with pytest.raises(httpx.ConnectError):
        run(fetch_with_httpx(DEFAULT, "http://gone.example/"))
    import urllib3

    guarded = DEFAULT.guard_pool_manager(urllib3.PoolManager())
    with pytest.raises(urllib3.exceptions.MaxRetryError) as raised:
        guarded.request("GET", "http://gone.example/", retries=urllib3.Retry(0))
    assert blocked_cause(raised.value) is None
