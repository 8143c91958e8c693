"""Artifacts as files under a directory: the embedded default (`file://$MLPLANE_HOME/artifacts`).

A file is written next to its final name and renamed into place, so a reader never sees half of
an artifact and a crash leaves no truncated one behind.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..errors import NotFound
from . import ArtifactInfo, ArtifactStore


class FileArtifacts(ArtifactStore):
    def __init__(self, url: str) -> None:
        self.root = Path(unquote(urlparse(url).path)).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = f"file://{self.root}"

    def _path(self, key: str) -> Path:
        return self.root / key

    def uri(self, key: str) -> str:
        return f"file://{self._path(key)}"

    def _put(self, key: str, source: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        shutil.copyfile(source, partial)
        os.replace(partial, target)

    def _get(self, key: str, dest: Path) -> None:
        source = self._path(key)
        if not source.is_file():
            raise NotFound(f"no artifact {key!r}")
        shutil.copyfile(source, dest)

    def _list(self, prefix: str) -> list[ArtifactInfo]:
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return []
        found = []
        for path in base.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.endswith(".partial"):
                found.append(ArtifactInfo(key, path.stat().st_size))
        return found

    def _delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
