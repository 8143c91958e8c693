"""Webhook signatures, both ways, as the Standard Webhooks specification defines them.

A message carries `webhook-id` (the event or delivery id), `webhook-timestamp` (Unix seconds)
and `webhook-signature`: `v1,` then the base64 HMAC-SHA256, under the shared secret, of
`<id>.<timestamp>.<body>`. The timestamp is signed, so a captured request cannot be replayed
later than the tolerance; the id lets a receiver drop a repeated delivery.

Secrets look like `whsec_<base64 of 32 random bytes>`; the bytes after the prefix are the key.
A secret without the prefix is used as UTF-8 text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"


class BadSignature(Exception):
    """The signature, timestamp or headers of an inbound message do not check out."""


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    if secret.startswith(PREFIX):
        try:
            return base64.b64decode(secret[len(PREFIX) :], validate=True)
        except ValueError:
            pass
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(
        _key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256
    ).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: str,
    msg_id: str | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float,
    tolerance: float,
) -> None:
    """Raise BadSignature unless one of the (space-separated) signatures is valid and the
    timestamp is within `tolerance` seconds of `now`."""
    if not msg_id or not timestamp or not signature:
        raise BadSignature("send webhook-id, webhook-timestamp and webhook-signature headers")
    try:
        sent = int(timestamp)
    except ValueError:
        raise BadSignature("webhook-timestamp is not a Unix time in seconds") from None
    if abs(now - sent) > tolerance:
        raise BadSignature(f"webhook-timestamp is more than {int(tolerance)} s from now")
    expected = sign(secret, msg_id, sent, body)
    if not any(hmac.compare_digest(expected, given) for given in signature.split()):
        raise BadSignature("webhook-signature does not match")
