"""Pure decisions of the logs service: state is a fold of a stream, a command becomes events.

Streams: `webhook:<subscription id>` (the subscription, its dead letters and their
redeliveries), `webhook-in:<space id>` (the space's inbound secret), and the stream of any
entity an inbound status update reports on (`<object>:<id>`: its first event names its space).
Nothing here does I/O; `mlplane.aggregates.execute` loads, decides and appends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlplane.aggregates import Aggregate, State, stamp
from mlplane.errors import Conflict, NotFound
from mlplane.events import Envelope, Event

from . import commands as c
from . import events as e

STATUS_ENTITIES = frozenset(
    {"space", "training", "datamodel", "connector", "cluster", "model", "server", "endpoint"}
)
"""Kinds of entity (stream prefixes) that accept status updates from outside."""


# ---------------------------------------------------------------- subscriptions


class DeadLetterState(State):
    event_id: str
    event_type: str
    stream_id: str
    position: int
    attempts: int
    error: str
    status: str = "dead"
    created_at: str
    updated_at: str


class SubscriptionState(State):
    id: str = ""
    space_id: str = ""
    url: str = ""
    event_types: list[str] = []
    secret: str | None = None
    start_position: int = 0
    paused: bool = False
    description: str = ""
    deleted: bool = False
    created_at: str = ""
    updated_at: str = ""
    dead: dict[str, DeadLetterState] = {}

    @property
    def live(self) -> bool:
        return bool(self.id) and not self.deleted

    def public(self) -> dict[str, Any]:
        """The subscription as its read model keeps it: never the secret."""
        return self.model_dump(mode="json", exclude={"secret", "dead", "deleted"})


def evolve_letter(letter: DeadLetterState | None, env: Envelope) -> DeadLetterState | None:
    """A dead letter's fold: parked, redelivery asked for, then arrived or parked again."""
    at = stamp(env)
    match env.data:
        case e.WebhookDeadLettered() as ev:
            return DeadLetterState(
                **ev.model_dump(exclude={"subscription_id"}), created_at=at, updated_at=at
            )
        case _ if letter is None:
            return None
        case e.WebhookRedeliveryRequested():
            return letter.model_copy(update={"status": "redelivering", "updated_at": at})
        case e.WebhookRedelivered(attempts=attempts):
            return letter.model_copy(
                update={
                    "status": "redelivered",
                    "attempts": letter.attempts + attempts,
                    "updated_at": at,
                }
            )
        case e.WebhookRedeliveryFailed(attempts=attempts, error=error):
            return letter.model_copy(
                update={
                    "status": "dead",
                    "attempts": letter.attempts + attempts,
                    "error": error,
                    "updated_at": at,
                }
            )
    return letter


def evolve_subscription(state: SubscriptionState, env: Envelope) -> SubscriptionState:
    at = stamp(env)
    match env.data:
        case e.WebhookSubscribed() as ev:
            return SubscriptionState(
                id=ev.subscription_id,
                space_id=ev.space_id,
                url=ev.url,
                event_types=ev.event_types,
                secret=ev.secret,
                start_position=ev.start_position,
                description=ev.description,
                created_at=at,
                updated_at=at,
            )
        case e.WebhookSubscriptionUpdated() as ev:
            changes = {
                k: v for k, v in ev.model_dump(exclude={"subscription_id"}).items() if v is not None
            }
            return state.model_copy(update={**changes, "updated_at": at})
        case e.WebhookUnsubscribed():
            return state.model_copy(update={"deleted": True, "secret": None, "updated_at": at})
        case (
            e.WebhookDeadLettered()
            | e.WebhookRedeliveryRequested()
            | e.WebhookRedelivered()
            | e.WebhookRedeliveryFailed()
        ) as ev:
            letter = evolve_letter(state.dead.get(ev.event_id), env)
            if letter is None:
                return state
            return state.model_copy(update={"dead": {**state.dead, ev.event_id: letter}})
    return state


def _live(state: SubscriptionState) -> SubscriptionState:
    if not state.live:
        raise NotFound(
            f"webhook subscription {state.id!r} not found"
            if state.id
            else "webhook subscription not found"
        )
    return state


def _letter(state: SubscriptionState, event_id: str) -> DeadLetterState:
    letter = state.dead.get(event_id)
    if letter is None:
        raise NotFound(f"no dead letter for event {event_id!r}")
    return letter


def subscribe(state: SubscriptionState, cmd: c.Subscribe) -> list[Event]:
    if state.id:
        raise Conflict(f"webhook subscription {cmd.subscription_id!r} already exists")
    return [e.WebhookSubscribed(**cmd.model_dump())]


def update_subscription(state: SubscriptionState, cmd: c.UpdateSubscription) -> list[Event]:
    _live(state)
    changes = {
        k: v
        for k, v in cmd.model_dump(exclude={"subscription_id"}).items()
        if v is not None and v != getattr(state, k)
    }
    return [e.WebhookSubscriptionUpdated(subscription_id=state.id, **changes)] if changes else []


def unsubscribe(state: SubscriptionState, cmd: c.Unsubscribe) -> list[Event]:
    return [e.WebhookUnsubscribed(subscription_id=_live(state).id)]


def dead_letter(state: SubscriptionState, cmd: c.DeadLetter) -> list[Event]:
    if cmd.event_id in state.dead or not state.id:
        return []
    return [e.WebhookDeadLettered(**cmd.model_dump())]


def request_redelivery(state: SubscriptionState, cmd: c.RequestRedelivery) -> list[Event]:
    letter = _letter(_live(state), cmd.event_id)
    if letter.status == "redelivered":
        raise Conflict(f"event {cmd.event_id!r} has been redelivered already")
    if letter.status == "redelivering":
        return []
    return [e.WebhookRedeliveryRequested(subscription_id=state.id, event_id=cmd.event_id)]


def record_redelivery(state: SubscriptionState, cmd: c.RecordRedelivery) -> list[Event]:
    if _letter(state, cmd.event_id).status != "redelivering":
        return []
    if cmd.error is None:
        return [
            e.WebhookRedelivered(
                subscription_id=state.id, event_id=cmd.event_id, attempts=cmd.attempts
            )
        ]
    return [
        e.WebhookRedeliveryFailed(
            subscription_id=state.id, event_id=cmd.event_id, attempts=cmd.attempts, error=cmd.error
        )
    ]


# ---------------------------------------------------------------- inbound secrets


class InboundState(State):
    space_id: str = ""
    secret_id: str = ""
    secret: str | None = None


def evolve_inbound(state: InboundState, env: Envelope) -> InboundState:
    match env.data:
        case e.InboundSecretRotated() as ev:
            return InboundState(space_id=ev.space_id, secret_id=ev.secret_id, secret=ev.secret)
    return state


def rotate_inbound_secret(state: InboundState, cmd: c.RotateInboundSecret) -> list[Event]:
    return [e.InboundSecretRotated(**cmd.model_dump())]


# ---------------------------------------------------------------- entities


class EntityState(State):
    """What a status update needs to know of an entity: that it exists, in which space, and
    which deliveries it has taken already."""

    exists: bool = False
    space_id: str | None = None
    deliveries: frozenset[str] = frozenset()


def evolve_entity(state: EntityState, env: Envelope) -> EntityState:
    if not state.exists:
        state = EntityState(exists=True, space_id=env.space)
    if isinstance(env.data, e.EntityStatusReported):
        return state.model_copy(update={"deliveries": state.deliveries | {env.data.delivery_id}})
    return state


def entity(kind: str) -> Aggregate[EntityState]:
    """The stream kind `kind` as an aggregate of status updates."""
    if kind not in STATUS_ENTITIES:
        raise NotFound(f"no {kind!r} entity takes status updates")
    return Aggregate(kind, EntityState(), evolve_entity)


def report_status(state: EntityState, cmd: c.ReportStatus) -> list[Event]:
    if not state.exists or state.space_id != cmd.space_id:
        raise NotFound(f"{cmd.object} {cmd.id!r} not found")
    if cmd.delivery_id in state.deliveries:
        return []
    return [e.EntityStatusReported(**cmd.model_dump(exclude={"space_id"}))]


# ---------------------------------------------------------------- dispatch

DECISIONS: dict[type[c.Command], Callable[[Any, Any], list[Event]]] = {
    c.Subscribe: subscribe,
    c.UpdateSubscription: update_subscription,
    c.Unsubscribe: unsubscribe,
    c.DeadLetter: dead_letter,
    c.RequestRedelivery: request_redelivery,
    c.RecordRedelivery: record_redelivery,
    c.RotateInboundSecret: rotate_inbound_secret,
    c.ReportStatus: report_status,
}


def decide(state: Any, command: c.Command) -> list[Event]:
    return DECISIONS[type(command)](state, command)


SUBSCRIPTIONS = Aggregate("webhook", SubscriptionState(), evolve_subscription)
INBOUND = Aggregate("webhook-in", InboundState(), evolve_inbound)
