"""Clients of the storage a connector points at: an S3 bucket (`aws-s3`) or a local folder
(`local`), behind one small port (`Source`: list files, read the head of one, fetch one), so
listing, scanning and fetching training data never care which kind they talk to. Blocking
clients run in worker threads. A local connector may only name a folder under the platform's
datasets root.

An S3 connector's endpoint is checked against the platform's outbound-address policy
(`mlplane.egress`) when the connector is created, and every connection its client opens is
checked again (the resolved address, just before connecting). A connector without credentials
reads anonymously, never with the platform's own AWS identity.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlplane.egress import Egress, blocked_cause
from mlplane.errors import Invalid, MlplaneError, NotFound

from ..connectors import (
    BLOCKED,
    CREDENTIAL_ERRORS,
    CREDENTIALS_REJECTED,
    HEAD_BYTES,
    READY,
    REFUSED,
    UNREACHABLE,
    ConnectorUnavailable,
    FileInfo,
    check,
    relative_path,
)

log = logging.getLogger("mlplane.training.connectors")


class Source(abc.ABC):
    @abc.abstractmethod
    def _list(self, prefix: str, limit: int) -> list[FileInfo]: ...

    @abc.abstractmethod
    def _head(self, key: str, size: int) -> bytes: ...

    @abc.abstractmethod
    def _fetch(self, key: str, dest: Path) -> None: ...

    async def list(self, prefix: str = "", limit: int = 1000) -> list[FileInfo]:
        return await self._call(self._list, prefix, limit)

    async def head(self, key: str, size: int = HEAD_BYTES) -> bytes:
        return await self._call(self._head, check(key), size)

    async def fetch(self, key: str, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        await self._call(self._fetch, check(key), dest)
        return dest

    def _failure(self, exc: Exception) -> str:
        """The status word for a failed call (the exception itself is only logged)."""
        return UNREACHABLE

    async def _call(self, fn, *args):
        try:
            return await asyncio.to_thread(fn, *args)
        except MlplaneError:
            raise
        except Exception as exc:
            reason = self._failure(exc)
            log.info("connector storage call failed (%s): %r", reason, exc)
            raise ConnectorUnavailable(f"the connector's storage is {reason}", reason) from exc


async def probe(source: Source) -> str:
    """A connector's status: `ready` if its storage lists a file, else why not, in our words."""
    try:
        await source.list("", 1)
    except ConnectorUnavailable as exc:
        return exc.reason
    return READY


class S3Source(Source):
    def __init__(
        self, config: dict[str, Any], credentials: dict[str, str] | None, egress: Egress
    ) -> None:
        from botocore.handlers import disable_signing
        from mlplane.artifacts.s3 import s3_client

        creds = credentials or {}
        self.bucket = config["bucket"]
        self.prefix = (config.get("prefix") or "").strip("/")
        client = s3_client(
            config.get("endpoint_url"),
            config.get("region"),
            creds.get("access_key_id"),
            creds.get("secret_access_key"),
        )
        if not (creds.get("access_key_id") and creds.get("secret_access_key")):
            client.meta.events.register("choose-signer.s3", disable_signing)
        self.client = egress.guard_boto3_client(client)

    def _failure(self, exc: Exception) -> str:
        from botocore.exceptions import ClientError

        if blocked_cause(exc) is not None:
            return BLOCKED
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            http = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            rejected = http in (401, 403) or code in CREDENTIAL_ERRORS
            return CREDENTIALS_REJECTED if rejected else REFUSED
        return UNREACHABLE

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _list(self, prefix: str, limit: int) -> list[FileInfo]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        found: list[FileInfo] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket,
            Prefix=self._full(prefix),
            PaginationConfig={"PageSize": min(limit, 1000)},
        )
        for page in pages:
            for obj in page.get("Contents", []):
                if obj["Key"].endswith("/"):
                    continue
                found.append(
                    FileInfo(obj["Key"][strip:], obj["Size"], obj["LastModified"].isoformat())
                )
                if len(found) >= limit:
                    return found
        return found

    def _head(self, key: str, size: int) -> bytes:
        from botocore.exceptions import ClientError

        try:
            answer = self.client.get_object(
                Bucket=self.bucket, Key=self._full(key), Range=f"bytes=0-{size - 1}"
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise NotFound(f"no file {key!r} in this connector") from None
            raise
        return answer["Body"].read(size)

    def _fetch(self, key: str, dest: Path) -> None:
        self.client.download_file(self.bucket, self._full(key), str(dest))


class LocalSource(Source):
    """The files under `root`, a folder the client named `folder` (relative to the datasets
    root): messages say `folder`, never where the datasets root is."""

    def __init__(self, root: Path, folder: str = "") -> None:
        self.root = root
        self.folder = folder or "."

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents or not path.is_file():
            raise NotFound(f"no file {key!r} in this connector")
        return path

    async def _call(self, fn, *args):
        try:
            return await super()._call(fn, *args)
        except ConnectorUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, OSError):
                reason = cause.strerror or type(cause).__name__
                raise ConnectorUnavailable(
                    f"the folder {self.folder!r} could not be read: {reason}"
                ) from None
            raise

    def _list(self, prefix: str, limit: int) -> list[FileInfo]:
        if not self.root.is_dir():
            raise ConnectorUnavailable(f"the folder {self.folder!r} does not exist")
        found = []
        for path in sorted(self.root.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and not path.is_symlink() and key.startswith(prefix):
                stat = path.stat()
                modified = datetime.fromtimestamp(stat.st_mtime, UTC).isoformat()
                found.append(FileInfo(key, stat.st_size, modified))
                if len(found) >= limit:
                    break
        return found

    def _head(self, key: str, size: int) -> bytes:
        with open(self._path(key), "rb") as fh:
            return fh.read(size)

    def _fetch(self, key: str, dest: Path) -> None:
        shutil.copyfile(self._path(key), dest)


def local_root(datasets: Path, folder: str) -> Path:
    """The folder `folder` names under `datasets`, even through links; the message names
    neither's absolute path."""
    try:
        root = (datasets / relative_path(folder)).resolve()
    except ValueError:
        root = None
    if root is None or (root != datasets and datasets not in root.parents):
        detail = f"a local connector's path is a folder under the datasets root; {folder!r} is not"
        error = {"field": "local.path", "message": detail, "type": "value_error"}
        raise Invalid(detail, field="local.path", errors=[error])
    return root


def open_source(
    kind: str,
    config: dict[str, Any],
    credentials: dict[str, str] | None,
    datasets: Path,
    *,
    egress: Egress,
) -> Source:
    if kind == "aws-s3":
        return S3Source(config, credentials, egress)
    if kind == "local":
        folder = config.get("path", "")
        return LocalSource(local_root(datasets, folder), folder)
    raise Invalid(f"unknown connector type {kind!r}", field="type")
