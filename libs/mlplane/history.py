"""The history of every entity: its state as of a moment or a version, and its changes.

Every kind of entity a service keeps is registered as an `EntityKind`: the aggregate whose
stream holds its events and the projection whose document is its public shape. Its state at a
point is the projection's own fold over the entity's stream up to that point, so `as_of`
answers in exactly the shape the read model answers now; its changes are the fields that fold
moved at each event. Secrets are masked (`mlplane.redact`) and forgotten personal data reads as
erased, as it does everywhere else.

Routes use `AsOfParams` on their `GET …/{id}` and `entity_history` for `GET …/{id}/history`,
after the same authorisation as the plain read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query
from pydantic import AwareDatetime, BaseModel

from .aggregates import Aggregate
from .errors import NotFound
from .eventlog import EventLog
from .events import Envelope
from .projections import Projection, strip
from .redact import masked

Doc = dict[str, Any]
MAX_VERSION = 2**53
"""No stream gets that far; past it a number is no longer exact in JSON."""


@dataclass(frozen=True)
class EntityKind:
    """A kind of entity: its name (`training`), the aggregate of its streams, the projection
    whose document is its public shape, and the route that reads one (`/api/v1/trainings/{id}`)."""

    name: str
    aggregate: Aggregate[Any]
    projection: Projection
    route: str

    def stream(self, entity_id: str) -> str:
        return self.aggregate.stream(entity_id)


class AsOf(BaseModel):
    """Where in an entity's history to read it: a moment, a version, or now (neither)."""

    as_of: datetime | None = None
    version: int | None = None

    @property
    def now(self) -> bool:
        return self.as_of is None and self.version is None


async def as_of_params(
    as_of: Annotated[
        AwareDatetime | None,
        Query(description="RFC 3339 time: the entity as it was then (404 if it did not exist)"),
    ] = None,
    version: Annotated[
        int | None,
        Query(ge=1, le=MAX_VERSION, description="The entity as of this version of its stream"),
    ] = None,
) -> AsOf:
    return AsOf(as_of=as_of, version=version)


AsOfParams = Annotated[AsOf, Depends(as_of_params)]


async def state_at(
    log: EventLog, kind: EntityKind, entity_id: str, at: AsOf
) -> tuple[Doc | None, int]:
    """The entity's document as of `at` and the stream version it reflects (0: not yet)."""
    doc, version = None, 0
    for env in await log.read_stream(kind.stream(entity_id), to_version=at.version):
        if at.as_of is not None and env.time > at.as_of:
            break
        doc, version = _fold(kind, entity_id, doc, env), env.version
    return doc, version


async def document_at(log: EventLog, kind: EntityKind, entity_id: str, at: AsOf) -> Doc:
    """`state_at`'s document, or NotFound when the entity did not exist (or was deleted) then."""
    doc, _ = await state_at(log, kind, entity_id, at)
    if doc is None:
        raise NotFound(f"{kind.name} {entity_id!r} did not exist at that point")
    return doc


class Change(BaseModel):
    """One event of an entity's history and the fields it changed (secrets masked)."""

    version: int
    time: datetime
    actor: str | None
    type: str
    changed: dict[str, Any]
    removed: list[str]
    deleted: bool


class HistoryPage(BaseModel):
    count: int
    data: list[Change]
    has_more: bool


HistoryLimit = Annotated[int, Query(ge=1, le=100, description="Changes per page")]
HistoryAfter = Annotated[
    int,
    Query(ge=0, le=MAX_VERSION, description="The last version already seen (0: from the first)"),
]


async def entity_history(
    log: EventLog, kind: EntityKind, entity_id: str, *, limit: int = 20, after: int = 0
) -> HistoryPage:
    """The entity's changes, oldest first, `limit` per page after version `after`."""
    changes, doc = [], None
    envelopes = await log.read_stream(kind.stream(entity_id))
    if not envelopes:
        raise NotFound(f"{kind.name} {entity_id!r} not found")
    for env in envelopes:
        before, doc = doc, _fold(kind, entity_id, doc, env)
        if env.version > after:
            changes.append(_change(env, before, doc))
    page = changes[:limit]
    return HistoryPage(count=len(envelopes), data=page, has_more=len(changes) > limit)


def _fold(kind: EntityKind, entity_id: str, doc: Doc | None, env: Envelope) -> Doc | None:
    projection = kind.projection
    if env.type not in projection.handles or projection.key(env) != entity_id:
        return doc
    return strip(projection.evolve(doc, env))


def _change(env: Envelope, before: Doc | None, after: Doc | None) -> Change:
    old, new = before or {}, after or {}
    changed = {k: v for k, v in new.items() if k not in old or old[k] != v}
    return Change(
        version=env.version,
        time=env.time,
        actor=env.actor,
        type=env.type,
        changed=masked(changed),
        removed=sorted(old.keys() - new.keys()) if after is not None else [],
        deleted=before is not None and after is None,
    )
