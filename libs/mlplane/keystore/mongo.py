"""MongoDB key store (motor). A forgotten subject keeps a document without a key."""

from __future__ import annotations

from typing import Any

from pymongo.errors import DuplicateKeyError

from . import ForgottenSubject, KeyStore, new_key


class MongoKeyStore(KeyStore):
    def __init__(self, database: Any, prefix: str = "") -> None:
        self._keys = database[f"{prefix}subject_keys"]

    async def get(self, subject: str) -> bytes | None:
        doc = await self._keys.find_one({"_id": subject})
        return bytes(doc["key"]) if doc and doc.get("key") is not None else None

    async def create(self, subject: str) -> bytes:
        try:
            await self._keys.insert_one({"_id": subject, "key": new_key()})
        except DuplicateKeyError:
            pass
        key = await self.get(subject)
        if key is None:
            raise ForgottenSubject(subject)
        return key

    async def forget(self, subject: str) -> None:
        forgotten = {"$set": {"key": None}}
        try:
            await self._keys.update_one({"_id": subject}, forgotten, upsert=True)
        except DuplicateKeyError:  # created by a concurrent `create` between match and insert
            await self._keys.update_one({"_id": subject}, forgotten)
