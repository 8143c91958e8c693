"""Where webhooks may go: public http(s) addresses only, unless an administrator allows private
ones (MLPLANE_LOGS_WEBHOOK_ALLOW_PRIVATE), so a subscription cannot aim the platform at its own
network (server-side request forgery).

A URL is checked when a subscription is created or changed, and its host is resolved and checked
again before every delivery (a DNS name may change what it points to). Redirects are not
followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from mlplane.errors import Invalid


class BlockedAddress(Exception):
    """A webhook URL that points at an address the platform may not call."""


def public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def check_url(url: str) -> tuple[str, int]:
    """The host and port of a webhook URL with an acceptable shape, or Invalid."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid("a webhook URL is http:// or https:// with a host", field="url")
    if parts.username or parts.password:
        raise Invalid(
            "a webhook URL carries no credentials; sign with the secret instead", field="url"
        )
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


async def resolve(url: str, allow_private: bool) -> None:
    """Raise BlockedAddress if the URL's host is, or resolves to, a non-public address."""
    host, port = check_url(url)
    if allow_private:
        return
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BlockedAddress(f"cannot resolve {host!r}: {exc}") from exc
    blocked = sorted({info[4][0] for info in found if not public(info[4][0])})
    if blocked:
        raise BlockedAddress(f"{host!r} resolves to non-public address(es) {', '.join(blocked)}")
