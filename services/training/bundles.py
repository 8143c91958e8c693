"""Source bundles: an uploaded archive becomes content-addressed parts in the artifact store.

A bundle is code, optional data (the `data/` folder, or the folder its manifest names) and a
manifest (`mlplane.yaml`, `mlplane.yml` or `mlplane.json`) naming the entrypoint, parameters,
requirements and resources. Each part is hashed over its sorted (path, content hash) pairs, so
the same code packed twice, in another order or another format, has the same hash; provenance
names these hashes. Parts are stored once per hash as deterministic tar.gz files.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import yaml
from mlplane.artifacts import ArtifactStore
from mlplane.names import NameOrEmpty
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .unpack import Limits, UnsafeBundle, unpack

MANIFESTS = ("mlplane.yaml", "mlplane.yml", "mlplane.json")
EMPTY = hashlib.sha256(b"").hexdigest()


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpu: Annotated[float, Field(gt=0, le=256)] = 1.0
    memory_mb: Annotated[int, Field(ge=64, le=1 << 20)] = 2048
    gpu: Annotated[int, Field(ge=0, le=16)] = 0
    timeout_s: Annotated[int, Field(ge=1, le=7 * 86400)] = 3600


class Manifest(BaseModel):
    """What a bundle declares about itself."""

    model_config = ConfigDict(extra="forbid")

    name: NameOrEmpty = ""
    entrypoint: Annotated[str, Field(min_length=1, max_length=500)] = "train.py"
    args: Annotated[list[str], Field(max_length=100)] = []
    parameters: dict[str, Any] = {}
    requirements: Annotated[list[str], Field(max_length=200)] = []
    resources: Resources = Resources()
    data: Annotated[str, Field(max_length=200)] = "data"


@dataclass(frozen=True)
class Ingested:
    manifest: Manifest
    code_hash: str
    data_hash: str
    parameters_hash: str
    bundle_hash: str
    archive_sha256: str
    files: int
    unpacked_bytes: int

    @property
    def code_key(self) -> str:
        return code_key(self.code_hash)

    @property
    def data_key(self) -> str | None:
        return data_key(self.data_hash) if self.data_hash != EMPTY else None


def code_key(code_hash: str) -> str:
    return f"bundles/code/{code_hash}.tar.gz"


def data_key(data_hash: str) -> str:
    return f"bundles/data/{data_hash}.tar.gz"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_hash(root: Path, paths: list[Path]) -> str:
    """Hash of a file tree: sorted `path NUL content-hash` lines (links hash their target)."""
    if not paths:
        return EMPTY
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root).as_posix()
        content = f"link:{os.readlink(path)}" if path.is_symlink() else sha256_file(path)
        digest.update(f"{rel}\0{content}\n".encode())
    return digest.hexdigest()


def parameters_hash(parameters: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(parameters, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def bundle_root(unpacked: Path) -> Path:
    """The folder holding the bundle: the archive's root, or its single top-level folder."""
    children = list(unpacked.iterdir())
    if any((unpacked / m).exists() for m in MANIFESTS):
        return unpacked
    if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink():
        return children[0]
    return unpacked


def read_manifest(root: Path) -> Manifest:
    for name in MANIFESTS:
        path = root / name
        if path.is_file() and not path.is_symlink():
            try:
                raw = (
                    yaml.safe_load(path.read_text())
                    if name != "mlplane.json"
                    else json.loads(path.read_text())
                )
                manifest = Manifest.model_validate(raw or {})
            except (yaml.YAMLError, ValueError, UnicodeDecodeError) as exc:
                detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
                raise UnsafeBundle(
                    f"{name} is not a valid manifest: {detail}", entry=name
                ) from None
            break
    else:
        manifest = Manifest()
    entry = PurePosixPath(manifest.entrypoint)
    if entry.is_absolute() or ".." in entry.parts or not (root / entry).is_file():
        raise UnsafeBundle(
            f"the entrypoint {manifest.entrypoint!r} is not a file of the bundle",
            entry=manifest.entrypoint,
        )
    return manifest


def split(root: Path, manifest: Manifest) -> tuple[list[Path], list[Path]]:
    """Code paths and data paths (files and links) of an unpacked bundle."""
    data_dir = PurePosixPath(manifest.data)
    if data_dir.is_absolute() or ".." in data_dir.parts:
        raise UnsafeBundle(
            f"the data folder {manifest.data!r} is outside the bundle", entry=manifest.data
        )
    code, data = [], []
    for path in root.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            continue
        rel = PurePosixPath(path.relative_to(root).as_posix())
        (data if rel.parts[: len(data_dir.parts)] == data_dir.parts else code).append(path)
    return code, data


def pack(root: Path, paths: list[Path], out: Path) -> None:
    """A deterministic tar.gz of `paths` (sorted, zero times and owners)."""
    with (
        open(out, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in sorted(paths, key=lambda p: p.relative_to(root).as_posix()):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(root).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o755 if info.mode & 0o111 else 0o644
            if info.isreg():
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)


@dataclass(frozen=True)
class Survey:
    root: Path
    manifest: Manifest
    code: list[Path]
    data: list[Path]
    files: int


def survey(archive: Path, dest: Path, limits: Limits) -> Survey:
    """Unpack and read a bundle (blocking: run it in a thread)."""
    files = unpack(archive, dest, limits)
    root = bundle_root(dest)
    manifest = read_manifest(root)
    code, data = split(root, manifest)
    return Survey(root, manifest, code, data, files)


async def ingest(archive: Path, store: ArtifactStore, limits: Limits) -> Ingested:
    """Check, unpack, hash and store an uploaded archive; nothing is stored if it is refused."""
    with tempfile.TemporaryDirectory(prefix="mlplane-bundle-") as tmp:
        found = await asyncio.to_thread(survey, archive, Path(tmp) / "unpacked", limits)
        root, manifest, code, data = found.root, found.manifest, found.code, found.data
        code_hash, data_hash = await asyncio.gather(
            asyncio.to_thread(tree_hash, root, code), asyncio.to_thread(tree_hash, root, data)
        )
        params_hash = parameters_hash(manifest.parameters)
        bundle_hash = hashlib.sha256(f"{code_hash}:{data_hash}:{params_hash}".encode()).hexdigest()
        for key, paths in ((code_key(code_hash), code), (data_key(data_hash), data)):
            if paths and not await store.exists(key):
                part = Path(tmp) / "part.tar.gz"
                await asyncio.to_thread(pack, root, paths, part)
                await store.put_file(key, part)
        size = sum(p.stat().st_size for p in code + data if p.is_file() and not p.is_symlink())
        return Ingested(
            manifest,
            code_hash,
            data_hash,
            params_hash,
            bundle_hash,
            await asyncio.to_thread(sha256_file, archive),
            found.files,
            size,
        )


async def fetch_parts(
    store: ArtifactStore, code_hash: str, data_hash: str, dest: Path, limits: Limits
) -> None:
    """Lay a bundle's stored parts out again under `dest` (with the same safe unpacker)."""
    with tempfile.TemporaryDirectory(prefix="mlplane-parts-") as tmp:
        keys = [code_key(code_hash)] + ([data_key(data_hash)] if data_hash != EMPTY else [])
        for key in keys:
            part = await store.get_file(key, Path(tmp) / "part.tar.gz")
            with tempfile.TemporaryDirectory(dir=tmp) as out:
                await asyncio.to_thread(unpack, part, Path(out), limits)
                await asyncio.to_thread(merge, Path(out), dest)


def merge(source: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.rglob("*")):
        target = dest / path.relative_to(source)
        if path.is_symlink():
            target.symlink_to(os.readlink(path))
        elif path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)


def tar_bytes(files: dict[str, bytes]) -> bytes:
    """A small tar.gz from in-memory files (generated manifests of built-in trainings)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()
