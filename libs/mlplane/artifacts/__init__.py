"""The artifact store port: immutable files under keys (bundles, checkpoints, job outputs).

Keys are `/`-separated relative paths (`checkpoints/<id>/<model>/1/model.onnx`). A key never
starts with `/` and holds no `..`, so no caller can reach outside the store. Blocking I/O runs in
a worker thread, so an adapter never stalls the event loop. The same contract suite
(tests/contract/test_artifacts.py) runs against every adapter.
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import Invalid, NotFound


@dataclass(frozen=True)
class ArtifactInfo:
    key: str
    size: int


def check_key(key: str) -> str:
    path = PurePosixPath(key)
    if not key or key.startswith("/") or ".." in path.parts or "\\" in key or "\0" in key:
        raise Invalid(f"not an artifact key: {key!r}")
    return str(path)


class ArtifactStore(abc.ABC):
    """Synchronous primitives (`_put`, `_get`, …) implemented per adapter; async wrappers here."""

    url: str

    @abc.abstractmethod
    def _put(self, key: str, source: Path) -> None: ...

    @abc.abstractmethod
    def _get(self, key: str, dest: Path) -> None:
        """Copy the artifact to `dest`; raise NotFound if there is none."""

    @abc.abstractmethod
    def _list(self, prefix: str) -> list[ArtifactInfo]: ...

    @abc.abstractmethod
    def _delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def uri(self, key: str) -> str:
        """Where the artifact lives, for humans and model servers (file:// or s3://)."""

    async def put_file(self, key: str, source: Path) -> str:
        await asyncio.to_thread(self._put, check_key(key), Path(source))
        return self.uri(key)

    async def put_bytes(self, key: str, data: bytes) -> str:
        import tempfile

        with tempfile.NamedTemporaryFile() as tmp:
            tmp.write(data)
            tmp.flush()
            return await self.put_file(key, Path(tmp.name))

    async def get_file(self, key: str, dest: Path) -> Path:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._get, check_key(key), dest)
        return dest

    async def get_bytes(self, key: str) -> bytes:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            return (await self.get_file(key, Path(tmp) / "artifact")).read_bytes()

    async def exists(self, key: str) -> bool:
        key = check_key(key)
        return any(info.key == key for info in await self.list(key))

    async def list(self, prefix: str = "") -> list[ArtifactInfo]:
        """Every artifact whose key starts with `prefix`, sorted by key."""
        if prefix:
            check_key(prefix.rstrip("/") or "x")
        return sorted(await asyncio.to_thread(self._list, prefix), key=lambda i: i.key)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, check_key(key))

    async def put_tree(self, prefix: str, root: Path) -> list[str]:
        """Store every file under `root` as `prefix/<relative path>`; return the keys."""
        keys = []
        for path in sorted(p for p in Path(root).rglob("*") if p.is_file() and not p.is_symlink()):
            key = f"{prefix.rstrip('/')}/{path.relative_to(root).as_posix()}"
            await self.put_file(key, path)
            keys.append(key)
        return keys

    async def get_tree(self, prefix: str, dest: Path) -> list[Path]:
        """Copy every artifact under `prefix/` into `dest`, keeping relative paths."""
        base = prefix.rstrip("/") + "/"
        found = [info for info in await self.list(base)]
        if not found:
            raise NotFound(f"no artifacts under {prefix!r}")
        return [await self.get_file(info.key, Path(dest) / info.key[len(base) :]) for info in found]


def open_store(url: str) -> ArtifactStore:
    """The adapter for `file:///path` or `s3://bucket/prefix?endpoint=…&region=…`."""
    if url.startswith("file://"):
        from .file import FileArtifacts

        return FileArtifacts(url)
    if url.startswith("s3://"):
        from .s3 import S3Artifacts

        return S3Artifacts(url)
    raise ValueError(f"no artifact store for {url!r} (file:// or s3://)")
