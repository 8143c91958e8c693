"""Reading the files a connector points at: an S3 bucket (`aws-s3`) or a local folder (`local`).

Both answer the same three questions (list files, read the head of one, fetch one), so listing,
scanning and fetching training data never care which kind they talk to. Blocking clients run in
worker threads. A local connector may only name a folder under the platform's datasets root.

An S3 connector's endpoint is checked against the platform's outbound-address policy
(`mlplane.egress`) when the connector is created, and every connection its client opens is
checked again (the resolved address, just before connecting). A connector without credentials
reads anonymously, never with the platform's own AWS identity. A failed call is told in words
of the platform's own (`unreachable`, `refused by the endpoint`, `credentials rejected`, ...),
never with the storage's answer, which only the platform's log records.

Paths come from clients: each is checked as given (`relative_path`) before it is used, and
messages name a path as the client gave it, never the server's folders.
"""

from __future__ import annotations

import abc
import asyncio
import csv
import io
import logging
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from mlplane.egress import Egress, blocked_cause
from mlplane.errors import Invalid, MlplaneError, NotFound
from mlplane.names import no_control

HEAD_BYTES = 64 << 10
log = logging.getLogger("mlplane.training.connectors")

READY = "ready"
UNREACHABLE = "unreachable"
REFUSED = "refused by the endpoint"
CREDENTIALS_REJECTED = "credentials rejected"
BLOCKED = "not allowed: its address is outside the networks the platform may call"
CREDENTIAL_ERRORS = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
)


class ConnectorUnavailable(MlplaneError):
    """The storage could not be used; `reason` is one of the status words above."""

    status = 502
    title = "Connector unavailable"

    def __init__(self, detail: str = "", reason: str = UNREACHABLE) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class FileInfo:
    key: str
    size: int
    last_modified: str


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


def relative_path(value: str) -> str:
    """`value`, if it is a path that stays under the folder it is joined to: printable, no
    leading `/`, no `..` part."""
    no_control(value)
    if value.startswith("/") or ".." in PurePosixPath(value).parts:
        raise ValueError("must be a relative path: no leading '/' and no '..' part")
    return value


def folder_name(value: str) -> str:
    """`value`, if it can name one folder: no `/` or `\\`, not `.` or `..`."""
    if "/" in value or "\\" in value or value in (".", ".."):
        raise ValueError("a connector's name is its data folder's: no '/', '\\', '.' or '..'")
    return value


def check(key: str) -> str:
    """`key`, if it names a file inside the connector. Checked again where it is used: a
    training recorded before the API refused such keys may still name one."""
    try:
        if key:
            return relative_path(key)
    except ValueError:
        pass
    raise Invalid(f"not a file of this connector: {key!r}", field="files")


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


def sniff(key: str, head: bytes) -> dict[str, Any]:
    """What a scan learns from a file's first bytes: format, columns and their types."""
    suffix = PurePosixPath(key).suffix.lower()
    info: dict[str, Any] = {"key": key, "format": suffix.lstrip(".") or "unknown", "columns": []}
    if suffix not in (".csv", ".tsv", ".txt"):
        return info
    text = head.decode("utf-8", "replace")
    if len(head) == HEAD_BYTES and "\n" in text:
        text = text[: text.rfind("\n")]
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text else ",", delimiters=",;\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    if not rows:
        return info
    header, sample = rows[0], rows[1:]
    info.update(
        format="csv",
        delimiter=delimiter,
        sampled_rows=len(sample),
        columns=[
            {"name": name, "type": column_type([r[i] for r in sample if i < len(r)])}
            for i, name in enumerate(header)
        ],
    )
    return info


def column_type(values: list[str]) -> str:
    def all_of(kind) -> bool:
        try:
            for v in values:
                kind(v)
            return bool(values)
        except ValueError:
            return False

    if all_of(int):
        return "integer"
    if all_of(float):
        return "number"
    return "string"


async def scan(source: Source, keys: list[str]) -> list[dict[str, Any]]:
    listed = {f.key: f for f in await source.list("", 100_000)} if not keys else {}
    keys = keys or sorted(listed)[:100]
    out = []
    for key in keys:
        info = sniff(key, await source.head(key))
        if key in listed:
            info["size"] = listed[key].size
        out.append(info)
    return out


def file_dicts(files: list[FileInfo]) -> list[dict[str, Any]]:
    return [asdict(f) for f in files]
