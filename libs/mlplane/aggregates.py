"""Running a command against one stream: load, fold, decide, append with the expected version.

The decision itself stays pure (`decide(state, command) -> events`); this is the only place that
does the I/O around it. When another writer got in first the stream is re-read and the command
decided again against the newer state, so concurrent requests neither lose updates nor fail
spuriously; a command whose invariant the newer state breaks raises that domain error instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from .errors import ConcurrencyError
from .eventlog import Context, EventLog
from .events import Envelope, Event

S = TypeVar("S")


class State(BaseModel):
    """Base of an aggregate's state: immutable, dumped as JSON for read models."""

    model_config = ConfigDict(frozen=True)

    def to_doc(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def stamp(env: Envelope) -> str:
    """An event's time as the ISO text states and read models carry."""
    return env.time.isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Aggregate(Generic[S]):
    """A kind of stream: its id prefix, its empty state and its pure fold."""

    prefix: str
    initial: S
    evolve: Callable[[S, Envelope], S]

    def stream(self, entity_id: str) -> str:
        return f"{self.prefix}:{entity_id}"

    def fold(self, envelopes: Sequence[Envelope], state: S | None = None) -> S:
        return reduce(self.evolve, envelopes, self.initial if state is None else state)


@dataclass(frozen=True)
class Outcome(Generic[S]):
    state: S
    events: list[Envelope]


async def load(log: EventLog, aggregate: Aggregate[S], entity_id: str) -> tuple[S, int]:
    """The current state of an entity and the stream version it reflects."""
    envelopes = await log.read_stream(aggregate.stream(entity_id))
    return aggregate.fold(envelopes), (envelopes[-1].version if envelopes else 0)


async def execute(
    log: EventLog,
    aggregate: Aggregate[S],
    entity_id: str,
    decide: Callable[[S, Any], list[Event]],
    command: Any,
    ctx: Context,
    *,
    attempts: int = 3,
) -> Outcome[S]:
    """Decide `command` on the entity's current state and append what it decided."""
    for attempt in range(1, attempts + 1):
        state, version = await load(log, aggregate, entity_id)
        events = decide(state, command)
        if not events:
            return Outcome(state, [])
        try:
            appended = await log.append(aggregate.stream(entity_id), events, version, ctx)
        except ConcurrencyError:
            if attempt == attempts:
                raise
            continue
        return Outcome(aggregate.fold(appended, state), appended)
    raise AssertionError("unreachable")
