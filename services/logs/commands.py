"""Commands the logs service decides on: imperative, validated, carrying everything a pure
decision needs (ids, fresh secrets, positions, what a route looked up), so the decisions in
`handlers` do no I/O. `handlers.COMMAND_HANDLERS` says which aggregate each acts on."""

from __future__ import annotations

from typing import Any

from mlplane.commands import Command


class Subscribe(Command):
    subscription_id: str
    space_id: str
    url: str
    event_types: list[str]
    secret: str
    start_position: int
    description: str = ""


class UpdateSubscription(Command):
    subscription_id: str
    url: str | None = None
    event_types: list[str] | None = None
    paused: bool | None = None
    description: str | None = None


class Unsubscribe(Command):
    subscription_id: str


class DeadLetter(Command):
    subscription_id: str
    event_id: str
    event_type: str
    stream_id: str
    position: int
    attempts: int
    error: str


class RequestRedelivery(Command):
    subscription_id: str
    event_id: str


class RecordRedelivery(Command):
    """The outcome of a redelivery: `error` is None when it arrived."""

    subscription_id: str
    event_id: str
    attempts: int
    error: str | None = None


class RotateInboundSecret(Command):
    space_id: str
    secret_id: str
    secret: str


class ReportStatus(Command):
    """A status update about entity `<object>:<id>`, recorded on the logs service's own stream
    `status-report:<object>:<id>`. `entity_space` is the space the entity's first event names,
    looked up by the route (None: no such entity), so the decision stays pure."""

    space_id: str
    delivery_id: str
    object: str
    id: str
    entity_space: str | None = None
    event: str = ""
    status: str = ""
    name: str = ""
    type: str = ""
    payload: dict[str, Any] = {}
    timestamp: str = ""

    @property
    def report_id(self) -> str:
        """The entity the update is about, as the id of its status-report stream."""
        return f"{self.object}:{self.id}"
