"""What a connector is, whatever storage it reads (an S3 bucket, `aws-s3`, or a local folder,
`local`; their clients are `adapters.sources`): the platform's own words for a storage's state,
the rules a path from a client must follow, and what a scan learns from a file's first bytes.

Paths come from clients: each is checked as given (`relative_path`) before it is used, and
messages name a path as the client gave it, never the server's folders. A failed call is told
in words of the platform's own (`unreachable`, `refused by the endpoint`, `credentials
rejected`, ...), never with the storage's answer, which only the platform's log records.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any

from mlplane.errors import Invalid, MlplaneError
from mlplane.names import no_control

HEAD_BYTES = 64 << 10

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


async def scan(source: Any, keys: list[str]) -> list[dict[str, Any]]:
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
