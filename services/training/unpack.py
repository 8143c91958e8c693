"""Unpacking untrusted archives (tar, tar.gz, zip) into a directory, entry by entry, safely.

Nothing is extracted with `extractall`: every entry is checked before a byte is written.
Refused, each with the offending entry named:
- absolute names, `..` components, empty or NUL-containing names;
- symlinks whose target is absolute or resolves outside the root, hardlinks to anything that is
  not a regular file already unpacked inside the root;
- character and block devices, FIFOs and any other special file;
- more than `max_entries` entries, more than `max_bytes` of unpacked content. Bytes are counted
  as they are decompressed, never taken from the archive's headers, so a zip bomb that lies
  about its sizes stops at the limit.
Files are written with 0644/0755 permissions (no setuid, no foreign owners); symlinks are
created last, after every regular file, so no write ever goes through one.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from mlplane.errors import MlplaneError

CHUNK = 1 << 16


class UnsafeBundle(MlplaneError):
    status = 400
    title = "Unsafe bundle"


class BundleTooLarge(MlplaneError):
    status = 413
    title = "Bundle too large"


class NotAnArchive(MlplaneError):
    status = 415
    title = "Unsupported bundle format"


@dataclass(frozen=True)
class Limits:
    max_entries: int = 10_000
    max_bytes: int = 1 << 30


@dataclass(frozen=True)
class Entry:
    """One archive member, reduced to what the checks need."""

    name: str
    kind: str  # file, dir, symlink, hardlink, special
    link: str = ""
    mode: int = 0o644


def archive_kind(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(262)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ")):
        return "tar"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    raise NotAnArchive("a bundle must be a tar, tar.gz or zip archive")


def clean_name(name: str) -> PurePosixPath:
    """The entry's relative path, or UnsafeBundle."""
    if not name or "\0" in name:
        raise UnsafeBundle(f"entry {name!r} has an empty or invalid name", entry=name)
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise UnsafeBundle(f"entry {name!r} has an absolute path", entry=name)
    if ".." in path.parts:
        raise UnsafeBundle(f"entry {name!r} climbs out of the bundle with '..'", entry=name)
    parts = [p for p in path.parts if p not in (".", "")]
    if not parts:
        return PurePosixPath(".")
    return PurePosixPath(*parts)


def link_target(entry: Entry, rel: PurePosixPath) -> PurePosixPath:
    """Where a symlink points, relative to the root; UnsafeBundle if outside it."""
    target = entry.link.replace("\\", "/")
    if not target or target.startswith("/") or (len(target) > 1 and target[1] == ":"):
        raise UnsafeBundle(
            f"symlink {entry.name!r} points to an absolute path {entry.link!r}", entry=entry.name
        )
    depth = len(rel.parent.parts) if str(rel.parent) != "." else 0
    resolved: list[str] = list(rel.parent.parts) if depth else []
    for part in PurePosixPath(target).parts:
        if part == "..":
            if not resolved:
                raise UnsafeBundle(
                    f"symlink {entry.name!r} points outside the bundle ({entry.link!r})",
                    entry=entry.name,
                )
            resolved.pop()
        elif part not in (".", ""):
            resolved.append(part)
    return PurePosixPath(*resolved) if resolved else PurePosixPath(".")


class Unpacker:
    def __init__(self, root: Path, limits: Limits) -> None:
        self.root = root.resolve()
        self.limits = limits
        self.entries = 0
        self.bytes = 0
        self.files: set[PurePosixPath] = set()
        self.links: list[tuple[PurePosixPath, PurePosixPath, str]] = []

    def count(self, entry: Entry) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise BundleTooLarge(
                f"more than {self.limits.max_entries} entries (at {entry.name!r})", entry=entry.name
            )

    def inside(self, rel: PurePosixPath, name: str) -> Path:
        """The absolute path of `rel`, checked to stay inside the root through any link."""
        path = self.root / rel
        real = Path(os.path.realpath(path.parent))
        if real != self.root and self.root not in real.parents:
            raise UnsafeBundle(f"entry {name!r} would be written outside the bundle", entry=name)
        return path

    def add(self, entry: Entry, stream: BinaryIO | None) -> None:
        self.count(entry)
        rel = clean_name(entry.name)
        if entry.kind == "special":
            raise UnsafeBundle(
                f"entry {entry.name!r} is a device or special file", entry=entry.name
            )
        if str(rel) == ".":
            return
        if entry.kind == "dir":
            self.inside(rel, entry.name).mkdir(parents=True, exist_ok=True)
        elif entry.kind == "symlink":
            self.links.append((rel, link_target(entry, rel), entry.name))
        elif entry.kind == "hardlink":
            self.hardlink(entry, rel)
        else:
            self.write(entry, rel, stream)

    def write(self, entry: Entry, rel: PurePosixPath, stream: BinaryIO | None) -> None:
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        path = self.inside(rel, entry.name)
        if path.is_symlink() or path.is_dir():
            raise UnsafeBundle(
                f"entry {entry.name!r} overwrites a link or directory", entry=entry.name
            )
        with open(path, "wb") as out:
            while stream is not None:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                self.bytes += len(chunk)
                if self.bytes > self.limits.max_bytes:
                    raise BundleTooLarge(
                        f"unpacks to more than {self.limits.max_bytes} bytes (at {entry.name!r})",
                        entry=entry.name,
                    )
                out.write(chunk)
        path.chmod(0o755 if entry.mode & 0o111 else 0o644)
        self.files.add(rel)

    def hardlink(self, entry: Entry, rel: PurePosixPath) -> None:
        try:
            source = clean_name(entry.link)
        except UnsafeBundle:
            source = None
        if source not in self.files:
            raise UnsafeBundle(
                f"hardlink {entry.name!r} points to {entry.link!r}, not a file of the bundle",
                entry=entry.name,
            )
        with open(self.root / source, "rb") as stream:
            self.write(entry, rel, stream)

    def finish(self) -> None:
        """Create the symlinks, each checked again against what now exists."""
        for rel, target, name in self.links:
            path = self.inside(rel, name)
            if path.exists() or path.is_symlink():
                raise UnsafeBundle(f"symlink {name!r} replaces an existing entry", entry=name)
            path.parent.mkdir(parents=True, exist_ok=True)
            relative = os.path.relpath(self.root / target, path.parent)
            path.symlink_to(relative)
            real = Path(os.path.realpath(path))
            if real != self.root and self.root not in real.parents:
                path.unlink()
                raise UnsafeBundle(f"symlink {name!r} resolves outside the bundle", entry=name)


def tar_entries(path: Path) -> Iterator[tuple[Entry, BinaryIO | None]]:
    try:
        archive = tarfile.open(path, "r:*")  # noqa: SIM115 - closed below; a bad archive is told apart from a bad entry
    except tarfile.TarError as exc:
        raise NotAnArchive(f"the bundle is not a readable tar archive: {exc}") from None
    with archive:
        try:
            for member in archive:
                yield tar_entry(member), (archive.extractfile(member) if member.isreg() else None)
        except (tarfile.TarError, EOFError, OSError) as exc:
            if isinstance(exc, MlplaneError):
                raise
            raise NotAnArchive(f"the tar archive is corrupt: {exc}") from None


def tar_entry(member: tarfile.TarInfo) -> Entry:
    if member.isreg():
        return Entry(member.name, "file", mode=member.mode)
    if member.isdir():
        return Entry(member.name, "dir")
    if member.issym():
        return Entry(member.name, "symlink", member.linkname)
    if member.islnk():
        return Entry(member.name, "hardlink", member.linkname)
    return Entry(member.name, "special")


def zip_entries(path: Path) -> Iterator[tuple[Entry, BinaryIO | None]]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise NotAnArchive(f"the bundle is not a readable zip archive: {exc}") from None
    with archive:
        for info in archive.infolist():
            mode = info.external_attr >> 16
            if info.is_dir():
                yield Entry(info.filename, "dir"), None
            elif stat.S_ISLNK(mode):
                with archive.open(info) as stream:
                    target = stream.read(4096).decode("utf-8", "replace")
                yield Entry(info.filename, "symlink", target), None
            elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                yield Entry(info.filename, "special"), None
            else:
                try:
                    with archive.open(info) as stream:
                        yield Entry(info.filename, "file", mode=mode or 0o644), stream
                except (zipfile.BadZipFile, NotImplementedError, OSError) as exc:
                    if isinstance(exc, MlplaneError):
                        raise
                    raise NotAnArchive(
                        f"zip entry {info.filename!r} is unreadable: {exc}"
                    ) from None


def unpack(archive: Path, dest: Path, limits: Limits = Limits()) -> int:
    """Unpack `archive` into the empty directory `dest`; return the number of files.

    On any refusal `dest` is emptied, so a rejected bundle leaves nothing behind.
    """
    dest.mkdir(parents=True, exist_ok=True)
    unpacker = Unpacker(dest, limits)
    entries = zip_entries(archive) if archive_kind(archive) == "zip" else tar_entries(archive)
    try:
        for entry, stream in entries:
            unpacker.add(entry, stream)
        unpacker.finish()
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True, exist_ok=True)
        raise NotAnArchive(f"the archive is corrupt: {exc}") from None
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True, exist_ok=True)
        raise
    return len(unpacker.files)
