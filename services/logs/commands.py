"""Commands the logs service decides on: imperative, validated, carrying everything a pure
decision needs (ids, fresh secrets, positions), so `handlers.decide` does no I/O."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    space_id: str
    delivery_id: str
    object: str
    id: str
    event: str = ""
    status: str = ""
    name: str = ""
    type: str = ""
    payload: dict[str, Any] = {}
    timestamp: str = ""
