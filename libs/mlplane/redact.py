"""What mlplane never shows: the value of a secret (the CLI's output, entity histories).

Secrets reach the event log as personal fields (encrypted at rest, clear once decoded): webhook
signing secrets, cluster tokens, connector credentials, token and password hashes. Whatever
prints event data (`mlplane events tail`, as lines or JSON, decodable or not) passes it through
`masked` first.

A field is a secret by its name, at any depth of an event's data (a key of `credentials`, of a
status update's `payload`, of a deployment's `spec`): one of its words is secret, password,
token (not "tokens", a count), credential(s), authorization, cookie, or it names a key of some
kind (api key, access key, private key); a name ending in "id" is an identifier (`secret_id`,
`token_id`, `aws_access_key_id`), not a secret. A secret's value becomes `MASK`, whatever its
type; null stays null, so an unset or erased secret still reads as such. The password of a URL
(`https://user:password@host`) is masked in every string too.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Any

MASK = "***"
SECRET_WORDS = frozenset(
    {
        "secret",
        "secrets",
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "token",
        "credential",
        "credentials",
        "authorization",
        "bearer",
        "cookie",
        "apikey",
        "privatekey",
    }
)
KEY_KINDS = frozenset({"api", "access", "private", "secret", "signing", "encryption", "master"})
IDENTIFIER_ENDS = frozenset({"id", "ids"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_BREAK = re.compile(r"[^a-z0-9]+")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@")


def words(name: str) -> list[str]:
    """`awsSecretAccessKey`, `AWS_SECRET_ACCESS_KEY`, `x-api-key` as lower-case words."""
    return [w for w in _WORD_BREAK.split(_CAMEL.sub("_", name).lower()) if w]


def is_secret(name: str) -> bool:
    parts = words(name)
    if not parts or parts[-1] in IDENTIFIER_ENDS:
        return False
    if SECRET_WORDS.intersection(parts):
        return True
    return any(a in KEY_KINDS and b == "key" for a, b in pairwise(parts))


def masked(data: Any) -> Any:
    """`data` (JSON-ready) with the value of every secret replaced by MASK."""
    if isinstance(data, dict):
        return {
            key: MASK if value is not None and is_secret(str(key)) else masked(value)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [masked(item) for item in data]
    if isinstance(data, str):
        return _URL_PASSWORD.sub(rf"\1{MASK}@", data)
    return data
