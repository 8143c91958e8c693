"""The one command path: each service says once which aggregate each of its commands acts on,
and `Kernel.execute` loads that entity, decides, appends with the expected version and brings
the read models level, so the caller's next read sees the write.

A service's `handlers` module ends with its table, as cosmicpython's `COMMAND_HANDLERS` does:

    COMMAND_HANDLERS = {
        c.CreateTraining: Handler(TRAININGS, create_training, "training_id"),
        ...
    }

and its `bootstrap` hands it to the kernel (`Service.commands`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from .aggregates import Aggregate
from .events import Event

S = TypeVar("S")


class Command(BaseModel):
    """Base of every command: an imperative request to change one entity, refused by its
    decision when it does not fit the entity's state."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Handler(Generic[S]):
    """Where a command goes: the kind of entity, its pure decision, the field naming the entity."""

    aggregate: Aggregate[S]
    decide: Callable[[S, Any], list[Event]]
    entity_field: str

    def entity(self, command: BaseModel) -> str:
        return str(getattr(command, self.entity_field))


CommandHandlers = Mapping[type, Handler[Any]]


def decider(handlers: CommandHandlers) -> Callable[[Any, Any], list[Event]]:
    """One `decide(state, command)` over a table, for callers that hold a state already."""

    def decide(state: Any, command: Any) -> list[Event]:
        return handlers[type(command)].decide(state, command)

    return decide
