"""The read-model store port: documents per collection, written by projections, read by routes.

Every document carries `_key` and `_pos`, the global position of the last event folded into
it. `put_many` writes a document only if its stored `_pos` is lower than the new one, so
replaying an event already applied is a no-op (the position is stored in the same write as
the update). A write replaces the whole document. Deletions are tombstones for the same
reason; queries never return them.

Filters and sorts name fields (dotted paths reach into nested documents); a filter value is
a JSON scalar or a list of them ("any of"), never a document, so a caller's value can never
become a query operator. Documents whose sort field is missing or null sort first ascending,
last descending, and pagination walks through them like any other value.

Reads address a collection by its logical name, resolved through an alias, so a rebuilt copy
of a projection can be swapped in at once (`set_alias`); writes name the physical collection.
"""

from __future__ import annotations

import abc
import base64
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import Invalid

Doc = dict[str, Any]
Filters = Mapping[str, Any]
"""Equality on fields; a list or tuple value means "any of"."""

FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
SCALARS = (str, int, float, bool, type(None))
ANY_OF = (list, tuple, set, frozenset)


@dataclass(frozen=True)
class Write:
    key: str
    doc: Doc | None  # None deletes (a tombstone)
    position: int


@dataclass(frozen=True)
class Page:
    data: list[Doc]
    count: int
    has_more: bool
    next_cursor: str | None


def encode_cursor(sort_value: Any, key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([sort_value, key]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[Any, str]:
    try:
        sort_value, key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError) as exc:
        raise Invalid("the 'after' cursor is not one this API returned", field="after") from exc
    return sort_value, str(key)


class ReadModelStore(abc.ABC):
    @abc.abstractmethod
    async def get_many(self, collection: str, keys: Iterable[str]) -> dict[str, Doc]:
        """Live (not deleted) documents by key, with their `_pos`."""

    async def get(self, collection: str, key: str) -> Doc | None:
        return (await self.get_many(collection, [key])).get(key)

    @abc.abstractmethod
    async def positions(self, collection: str, keys: Iterable[str]) -> dict[str, int]:
        """The `_pos` of each stored document, tombstones included."""

    @abc.abstractmethod
    async def put_many(self, collection: str, writes: Sequence[Write]) -> None:
        """Upsert (or tombstone) each document unless it already reflects a later position."""

    @abc.abstractmethod
    async def query(
        self,
        collection: str,
        filters: Filters | None = None,
        *,
        sort: str = "_key",
        descending: bool = False,
        limit: int = 50,
        after: str | None = None,
    ) -> Page:
        """One page of matching documents, ordered by `sort` then key; `after` continues."""

    @abc.abstractmethod
    async def all_docs(self, collection: str) -> dict[str, Doc]:
        """Every live document (verification and tests)."""

    @abc.abstractmethod
    async def drop(self, collection: str) -> None:
        """Delete a physical collection."""

    @abc.abstractmethod
    async def collections(self) -> list[str]:
        """Names of physical collections that hold documents."""

    @abc.abstractmethod
    async def get_checkpoint(self, name: str) -> int:
        """The last position a follower recorded (0 if none)."""

    @abc.abstractmethod
    async def set_checkpoint(self, name: str, position: int) -> None:
        """Record a follower's position; never moves backwards."""

    @abc.abstractmethod
    async def resolve(self, name: str) -> str:
        """The physical collection behind a logical name (the name itself if no alias)."""

    @abc.abstractmethod
    async def set_alias(self, name: str, physical: str) -> None:
        """Point a logical name at a physical collection."""

    async def close(self) -> None:
        """Release connections."""


def check_field(field: str) -> str:
    if not FIELD.match(field):
        raise Invalid(f"cannot filter or sort on {field!r}", field=field)
    return field


def check_filters(filters: Filters | None) -> Filters:
    """Refuse field names that are not plain paths and values that are not JSON scalars."""
    for field, want in (filters or {}).items():
        check_field(field)
        values = want if isinstance(want, ANY_OF) else [want]
        if not all(isinstance(v, SCALARS) for v in values):
            raise Invalid(f"a filter on {field!r} must be a value or a list of values", field=field)
    return filters or {}


def lookup(doc: Doc, field: str) -> Any:
    """The value at a dotted path of a document (None when absent)."""
    value: Any = doc
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def matches(doc: Doc, filters: Filters | None) -> bool:
    for field, want in check_filters(filters).items():
        if isinstance(want, ANY_OF):
            if lookup(doc, field) not in want:
                return False
        elif lookup(doc, field) != want:
            return False
    return True
