"""Where the platform may call out to, so that a URL a user gives it (a webhook destination, a
connector's S3 endpoint, a cluster's API server) cannot aim it at its own network (server-side
request forgery).

An address is permitted if it lies inside a network an administrator allows (the setting
`MLPLANE_EGRESS_ALLOW`, comma-separated networks such as `10.0.0.0/8,127.0.0.1/32`; empty by
default), or if `ipaddress` calls it global and it is none of loopback, link-local, site-local,
private, multicast, reserved or unspecified. The IPv4 address an IPv6 one carries is unwrapped
first: an IPv4-mapped address (`::ffff:a.b.c.d`) or a NAT64 one (`64:ff9b::/96`) is that IPv4
address; a 6to4 (`2002::/16`) or Teredo (`2001::/32`) address is permitted only if it and the
IPv4 addresses it embeds all are. Shared address space (`100.64.0.0/10`, where some clouds keep
their metadata service) is not global, so it is refused like any private network.

Each outbound URL is checked twice:

- when it is registered or changed (`check_url`, then `resolve`): its shape, and every address
  its host resolves to; the caller answers 422 if one is not permitted;
- when a connection is opened: the host is resolved again, every address is checked, and the
  socket is connected only to an address that passed, so a name re-pointed after registration
  (DNS rebinding) cannot slip through. httpx clients get this from `async_transport()`;
  urllib3-based ones (boto3, the kubernetes client) from `guard_pool_manager()`, which swaps in
  connection classes that do the same check in `_new_conn`. TLS is still verified against the
  URL's host name, since only the socket is pinned to the checked address. Behind an outbound
  proxy (boto3 honours HTTPS_PROXY) the socket checked is the proxy's, which must then apply the
  same policy itself.

A host that does not resolve is a 422 at registration and a connection error (not a refusal)
when connecting.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from .errors import Invalid

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
SIXTOFOUR = ipaddress.IPv6Network("2002::/16")
TEREDO = ipaddress.IPv6Network("2001::/32")


class BlockedAddress(Exception):
    """A host that is, or resolves to, an address the platform may not call."""


class InsecureTransport(Exception):
    """A secret that would travel over plain http."""


def parse_networks(value: str) -> tuple[Network, ...]:
    """`10.0.0.0/8, 127.0.0.1` → networks (a bare address is a network of one); ValueError."""
    return tuple(
        ipaddress.ip_network(item.strip(), strict=False)
        for item in value.split(",")
        if item.strip()
    )


def embedded(ip: Address) -> list[Address]:
    """The addresses a connection to `ip` really reaches: the IPv4 address an IPv4-mapped or
    NAT64 address stands for, or a 6to4/Teredo address together with the IPv4 ones inside."""
    if isinstance(ip, ipaddress.IPv4Address):
        return [ip]
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip in NAT64:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip in SIXTOFOUR and ip.sixtofour is not None:
        return [ip, ip.sixtofour]
    if ip in TEREDO and ip.teredo is not None:
        return [ip, *ip.teredo]
    return [ip]


def routable(ip: Address) -> bool:
    """Globally reachable: `is_global`, and none of the special ranges Python 3.11 still calls
    global (multicast, site-local fec0::/10, reserved ::/8 forms)."""
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or getattr(ip, "is_site_local", False)
    )


def check_url(url: str, field: str = "url", what: str = "the URL") -> tuple[str, str, int]:
    """The scheme, host and port of an http(s) URL without credentials in it, or Invalid."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Invalid(f"{what} is not a valid URL", field=field) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"{what} is http:// or https:// with a host", field=field)
    if parts.username or parts.password:
        raise Invalid(f"{what} carries no credentials in it", field=field)
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def require_tls_for_secret(url: str, secret: str | None, allow_insecure_http: bool) -> None:
    """Raise InsecureTransport if a secret would be sent to `url` over plain http."""
    if secret and urlsplit(url).scheme != "https" and not allow_insecure_http:
        raise InsecureTransport(
            "a token is sent only over https; an administrator may allow plain http for this "
            "cluster (allow_insecure_http)"
        )


@dataclass(frozen=True)
class Egress:
    """The policy: which addresses outbound calls may reach (see the module's docstring)."""

    allowed: tuple[Network, ...] = ()

    @classmethod
    def from_setting(cls, value: str) -> Egress:
        return cls(parse_networks(value))

    def permitted(self, address: str | Address) -> bool:
        ip = ipaddress.ip_address(str(address).split("%", 1)[0])
        return all(
            routable(x) or any(x.version == n.version and x in n for n in self.allowed)
            for x in embedded(ip)
        )

    def checked(self, host: str, addresses: Iterable[str]) -> list[str]:
        """The addresses, in order and once each, if every one is permitted; else BlockedAddress."""
        found = list(dict.fromkeys(addresses))
        blocked = [a for a in found if not self.permitted(a)]
        if blocked:
            raise BlockedAddress(
                f"{host!r} is or resolves to {', '.join(blocked)}, outside the networks the "
                "platform may call"
            )
        if not found:
            raise BlockedAddress(f"{host!r} resolves to no address")
        return found

    async def resolve(self, host: str, port: int) -> list[str]:
        """Every address `host` resolves to, if all are permitted; else BlockedAddress
        (socket.gaierror if it does not resolve)."""
        infos = await asyncio.get_running_loop().getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM
        )
        return self.checked(host, [str(info[4][0]) for info in infos])

    def resolve_sync(self, host: str, port: int, family: int = socket.AF_UNSPEC) -> list[tuple]:
        """`getaddrinfo` results for `host`, if every address is permitted; else BlockedAddress."""
        infos = socket.getaddrinfo(host.strip("[]"), port, family, socket.SOCK_STREAM)
        self.checked(host, [str(info[4][0]) for info in infos])
        return infos

    async def check_destination(self, url: str, field: str, what: str = "the URL") -> str:
        """Registration-time check of a URL: its shape and every address of its host (422)."""
        _, host, port = check_url(url, field, what)
        try:
            await self.resolve(host, port)
        except (socket.gaierror, UnicodeError):
            raise Invalid(f"{what}'s host {host!r} does not resolve", field=field) from None
        except BlockedAddress as exc:
            raise Invalid(
                f"{exc}; an administrator can allow private networks (MLPLANE_EGRESS_ALLOW)",
                field=field,
            ) from None
        return url

    # ------------------------------------------------------------ connect-time guards

    def async_transport(self, **kwargs: Any):
        """An httpx transport whose every new connection goes only to checked addresses."""
        return _guarded_transport(self, **kwargs)

    def guard_pool_manager(self, manager: Any) -> Any:
        """Make a urllib3 PoolManager (boto3's, the kubernetes client's) check each connection."""
        manager.pool_classes_by_scheme = self._urllib3_pools(manager.pool_classes_by_scheme)
        manager.clear()
        return manager

    def guard_boto3_client(self, client: Any) -> Any:
        """Check each connection a boto3 client opens (its endpoint's urllib3 session)."""
        session = client._endpoint.http_session  # botocore offers no public hook for this
        session._pool_classes_by_scheme = self._urllib3_pools(session._pool_classes_by_scheme)
        self.guard_pool_manager(session._manager)
        for proxy in session._proxy_managers.values():
            self.guard_pool_manager(proxy)
        return client

    def _urllib3_pools(self, pools: dict[str, type]) -> dict[str, type]:
        return {scheme: _guarded_pool(self, pool) for scheme, pool in pools.items()}


def blocked_cause(exc: BaseException | None) -> BlockedAddress | None:
    """The BlockedAddress behind an exception a client library wrapped it in, if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, BlockedAddress):
            return exc
        seen.add(id(exc))
        inner = getattr(exc, "reason", None) or (getattr(exc, "kwargs", None) or {}).get("error")
        exc = inner if isinstance(inner, BaseException) else (exc.__cause__ or exc.__context__)
    return None


# ---------------------------------------------------------------- urllib3


class _GuardedConnection:
    """Mixed into a urllib3 HTTP(S)Connection: resolve, check, connect to a checked address."""

    egress: Egress

    def _new_conn(self):
        from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
        from urllib3.util.connection import allowed_gai_family

        host = self._dns_host  # type: ignore[attr-defined]
        try:
            infos = self.egress.resolve_sync(host, self.port, allowed_gai_family())  # type: ignore[attr-defined]
        except BlockedAddress as exc:
            raise _blocked_connection_error()(self, str(exc)) from exc
        except (socket.gaierror, UnicodeError) as exc:
            raise NameResolutionError(host, self, exc) from exc  # type: ignore[arg-type]
        error: OSError | None = None
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                for option in self.socket_options or ():  # type: ignore[attr-defined]
                    sock.setsockopt(*option)
                if isinstance(self.timeout, int | float):  # type: ignore[attr-defined]
                    sock.settimeout(self.timeout)  # type: ignore[attr-defined]
                if self.source_address:  # type: ignore[attr-defined]
                    sock.bind(self.source_address)  # type: ignore[attr-defined]
                sock.connect(address)
                return sock
            except TimeoutError as exc:
                sock.close()
                raise ConnectTimeoutError(self, f"Connection to {host} timed out") from exc
            except OSError as exc:
                sock.close()
                error = exc
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}")


@cache
def _blocked_connection_error() -> type[Exception]:
    from urllib3.exceptions import NewConnectionError

    class BlockedConnection(NewConnectionError, BlockedAddress):
        """urllib3's connection error, so the client library handles it as one."""

    return BlockedConnection


@cache
def _guarded_pool(egress: Egress, pool: type) -> type:
    if getattr(pool, "egress", None) == egress:
        return pool
    connection = type(
        f"Guarded{pool.ConnectionCls.__name__}",
        (_GuardedConnection, pool.ConnectionCls),
        {"egress": egress},
    )
    return type(f"Guarded{pool.__name__}", (pool,), {"ConnectionCls": connection, "egress": egress})


# ---------------------------------------------------------------- httpx


def _guarded_transport(egress: Egress, **kwargs: Any):
    import httpcore
    import httpx

    class Backend(httpcore.AsyncNetworkBackend):
        def __init__(self) -> None:
            self.inner = httpcore.AnyIOBackend()

        async def connect_tcp(
            self, host, port, timeout=None, local_address=None, socket_options=None
        ):
            error: Exception | None = None
            try:
                addresses = await egress.resolve(host, port)
            except (socket.gaierror, UnicodeError) as exc:
                raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
            for address in addresses:
                try:
                    return await self.inner.connect_tcp(
                        address, port, timeout, local_address, socket_options
                    )
                except httpcore.ConnectError as exc:
                    error = exc
            assert error is not None
            raise error

        async def connect_unix_socket(self, path, timeout=None, socket_options=None):
            raise BlockedAddress("unix sockets are not an outbound destination")

        async def sleep(self, seconds: float) -> None:
            await self.inner.sleep(seconds)

    class GuardedTransport(httpx.AsyncHTTPTransport):
        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            limits = options.get("limits", httpx.Limits(max_connections=100))
            self._pool = httpcore.AsyncConnectionPool(
                ssl_context=httpx.create_ssl_context(verify=options.get("verify", True)),
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                http1=options.get("http1", True),
                http2=options.get("http2", False),
                retries=options.get("retries", 0),
                network_backend=Backend(),
            )

    return GuardedTransport(**kwargs)
