"""SQLite key store. A forgotten subject keeps a row without a key, so it is never re-keyed."""

from __future__ import annotations

from ..eventstore.sqlite import connect
from . import ForgottenSubject, KeyStore, new_key


class SQLiteKeyStore(KeyStore):
    def __init__(self, path: str) -> None:
        self._db = connect(path)
        self._db.execute("PRAGMA secure_delete=ON")  # a forgotten key leaves no bytes behind
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS subject_keys (subject TEXT PRIMARY KEY, key BLOB)"
        )

    async def get(self, subject: str) -> bytes | None:
        row = self._db.execute(
            "SELECT key FROM subject_keys WHERE subject = ?", (subject,)
        ).fetchone()
        return row[0] if row else None

    async def create(self, subject: str) -> bytes:
        self._db.execute(
            "INSERT OR IGNORE INTO subject_keys (subject, key) VALUES (?, ?)", (subject, new_key())
        )
        key = await self.get(subject)
        if key is None:
            raise ForgottenSubject(subject)
        return key

    async def forget(self, subject: str) -> None:
        self._db.execute(
            "INSERT INTO subject_keys (subject, key) VALUES (?, NULL)"
            " ON CONFLICT(subject) DO UPDATE SET key = NULL",
            (subject,),
        )

    async def close(self) -> None:
        self._db.close()
