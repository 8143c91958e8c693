"""Per-subject keys for personal data (crypto-shredding).

Fields an event type marks as personal are encrypted with the key of their data subject.
Forgetting a subject destroys its key: the ciphertext stays in the append-only log but can no
longer be read, so every read, replay and rebuilt projection shows those fields as erased.
"""

from __future__ import annotations

import abc
import base64
import json
import os
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "enc:v1:"


class KeyStore(abc.ABC):
    """Keeps one data key per subject; `forget` destroys it for good."""

    @abc.abstractmethod
    async def get(self, subject: str) -> bytes | None:
        """The subject's key, or None if it never had one or was forgotten."""

    @abc.abstractmethod
    async def create(self, subject: str) -> bytes:
        """The subject's key, created if missing. A forgotten subject stays forgotten."""

    @abc.abstractmethod
    async def forget(self, subject: str) -> None:
        """Destroy the subject's key."""

    async def close(self) -> None:
        """Release connections."""


class ForgottenSubject(Exception):
    """A personal field was written for a subject that has been forgotten."""


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def encrypt(key: bytes, subject: str, value: Any) -> str:
    nonce = os.urandom(12)
    plain = json.dumps(value, separators=(",", ":")).encode()
    sealed = AESGCM(key).encrypt(nonce, plain, subject.encode())
    return f"{PREFIX}{subject}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def is_encrypted(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def subject_of(value: str) -> str:
    return value[len(PREFIX) :].rsplit(":", 1)[0]


def decrypt(key: bytes, value: str) -> Any:
    subject, blob = value[len(PREFIX) :].rsplit(":", 1)
    raw = base64.urlsafe_b64decode(blob)
    return json.loads(AESGCM(key).decrypt(raw[:12], raw[12:], subject.encode()))
